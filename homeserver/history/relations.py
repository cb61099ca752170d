"""Relationships between events: child listings, threads and bundled aggregations.

Spec: client-server-api "Forming relationships between events", "Aggregations of child events",
relations.yaml (GET /relations), threads_list.yaml (GET /threads), modules/threading.md
"Server-side aggregation of m.thread relationships", modules/event_replacements.md
"Server-side aggregation of m.replace relationships", modules/reference_relations.md,
modules/event_annotations.md ("Avoiding duplicate annotations").

:meth:`RelationsService.bundle_aggregations` is what every endpoint serving events calls (through
:meth:`RelationsService.serialize_events`, or directly: /sync, /event): it returns, per parent
event, the value for ``unsigned["m.relations"]``:

* ``m.thread``: ``{"latest_event": <serialized, with its own bundle>, "count": n,
  "current_user_participated": bool}``;
* ``m.replace``: the most recent valid edit, serialized (v1.7+), unless the original is redacted;
* ``m.reference``: ``{"chunk": [{"event_id": ...}, ...]}``.

State events get none (spec warning under "Aggregations of child events"); children sent by users
the requester ignores are left out.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from homeserver.client.account_data import AccountDataService
from homeserver.http.errors import MatrixError, invalid_param, not_found
from homeserver.protocol.events import Event
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.visibility import VisibilityService
from homeserver.storage.events_store import EventsStore
from homeserver.storage.lru import LruCache
from homeserver.storage.relations_store import MAX_RECURSION_DEPTH, AggregationRows, RelationsStore
from homeserver.sync.tokens import RoomPosition

from .relation_rules import edit_order_key, latest_valid_edit, parse_relation

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"


class RelationsService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(RelationsStore)
        self.events = hs.get(EventsStore)
        self.serializer = hs.get(EventSerializer)
        self.visibility = hs.get(VisibilityService)
        self.account_data = hs.get(AccountDataService)
        # Ignore lists in memory: a user's entry is dropped after each of their account-data
        # writes (AccountDataService calls its listeners after the commit); a read that raced a
        # write (any user's) is not kept.
        self._ignored: LruCache[str, frozenset[str]] = LruCache(50_000)
        self._account_data_writes = 0
        self.account_data.listeners.append(self._on_account_data)

    def _on_account_data(self, stream_name: str, token: int, rooms: tuple, users: tuple) -> None:
        self._account_data_writes += 1
        for user_id in users:
            self._ignored.pop(user_id)

    async def ignored_users(self, user_id: str) -> set[str]:
        """The users ``user_id`` ignores (modules/ignore_users.md, ``m.ignored_user_list``)."""
        cached = self._ignored.get(user_id)
        if cached is not None:
            return set(cached)
        writes = self._account_data_writes
        content = await self.account_data.get_global(user_id, "m.ignored_user_list")
        ignored = content.get("ignored_users") if isinstance(content, dict) else None
        value = {u for u in ignored if isinstance(u, str)} if isinstance(ignored, dict) else set()
        if writes == self._account_data_writes:
            self._ignored.set(user_id, frozenset(value))
        return value

    # --- bundled aggregations -------------------------------------------------------------------
    async def bundle_aggregations(self, event_ids: Iterable[str], user_id: str, *,
                                  events: Mapping[str, Event] | None = None,
                                  ignored_users: Iterable[str] | None = None,
                                  redacted: Iterable[str] = (), device_id: str | None = None,
                                  aggregation_rows: AggregationRows | None = None,
                                  _nested: bool = False) -> dict[str, dict]:
        """``{event_id: unsigned["m.relations"] value}`` for the events among ``event_ids`` that
        have aggregations (see the module docstring). ``events`` may hold the already loaded
        parents; ``redacted``: parents known to be served redacted (their edits are not bundled);
        ``aggregation_rows``: RelationsStore.get_aggregation_rows of (a superset of) these parents
        for this user and ``ignored_users``, when already read."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        parents = dict(events or {})
        missing = [e for e in ids if e not in parents]
        if missing:
            parents.update(await self.events.get_events(missing))
        ids = [e for e in ids if e in parents and not parents[e].is_state()]
        if not ids:
            return {}
        ignored = set(ignored_users) if ignored_users is not None else await self.ignored_users(user_id)
        if aggregation_rows is not None:
            rows = aggregation_rows.restricted_to(ids)
        else:
            rows = await self.store.get_aggregation_rows({e: parents[e].room_id for e in ids}, user_id, ignored)
        if not (rows.threads or rows.edits or rows.references):
            return {}

        redacted = set(redacted)
        candidates: dict[str, list[str]] = {}
        for parent, rows_ in rows.edits.items():
            original = parents[parent]
            same = [r for r in rows_ if r[1] == original.sender and r[2] == original.type]
            if same:
                same.sort(key=lambda r: edit_order_key(r[3], r[0]), reverse=True)
                candidates[parent] = [r[0] for r in same]
        if candidates and not redacted:
            redacted = set(await self.serializer.applicable_redactions(parents[p] for p in candidates))
        latest_ids = [s.latest_event_id for s in rows.threads.values()]
        loaded = await self.events.get_events(latest_ids + [e for c in candidates.values() for e in c])

        edits: dict[str, Event] = {}
        for parent, cands in candidates.items():
            if parent in redacted:
                continue
            edit = latest_valid_edit(parents[parent], [loaded[e] for e in cands if e in loaded])
            if edit is not None:
                edits[parent] = edit
        shown = list({e.event_id: e for e in [*(loaded[i] for i in latest_ids if i in loaded),
                                              *edits.values()]}.values())
        serialized = dict(zip([e.event_id for e in shown], await self.serializer.serialize_events(
            shown, user_id=user_id, device_id=device_id)))
        if not _nested and latest_ids:
            nested = await self.bundle_aggregations([i for i in latest_ids if i in loaded], user_id, events=loaded,
                                                    ignored_users=ignored, device_id=device_id, _nested=True)
            for eid, bundle in nested.items():
                serialized[eid].setdefault("unsigned", {})["m.relations"] = bundle

        out: dict[str, dict] = {}
        for parent in ids:
            bundle: dict = {}
            summary = rows.threads.get(parent)
            if summary is not None and summary.latest_event_id in serialized:
                bundle[THREAD] = {
                    "latest_event": serialized[summary.latest_event_id],
                    "count": summary.count,
                    "current_user_participated": summary.participated or parents[parent].sender == user_id,
                }
            if parent in edits:
                bundle[REPLACE] = serialized[edits[parent].event_id]
            if parent in rows.references:
                bundle[REFERENCE] = {"chunk": [{"event_id": e} for e in rows.references[parent]]}
            if bundle:
                out[parent] = bundle
        return out

    async def serialize_events(self, events: Sequence[Event], user_id: str, *, device_id: str | None = None,
                               ignored_users: Iterable[str] | None = None,
                               aggregation_rows: AggregationRows | None = None, **kwargs) -> list[dict]:
        """Serialize through the one serializer (homeserver/rooms/serialize.py) and add the bundled
        aggregations under ``unsigned["m.relations"]`` (``aggregation_rows``: as
        :meth:`bundle_aggregations` takes them; other keywords go to the serializer)."""
        out = await self.serializer.serialize_events(events, user_id=user_id, device_id=device_id, **kwargs)
        redacted = {d["event_id"] for d in out if "redacted_because" in d.get("unsigned", {})}
        bundles = await self.bundle_aggregations([e.event_id for e in events], user_id,
                                                 events={e.event_id: e for e in events},
                                                 ignored_users=ignored_users, redacted=redacted,
                                                 device_id=device_id, aggregation_rows=aggregation_rows)
        for d in out:
            bundle = bundles.get(d["event_id"])
            if bundle is not None:
                d.setdefault("unsigned", {})["m.relations"] = bundle
        return out

    # --- GET /relations -------------------------------------------------------------------------
    async def get_relations(self, user_id: str, room_id: str, event_id: str, *, rel_type: str | None = None,
                            event_type: str | None = None, from_pos: RoomPosition | None = None,
                            to_pos: RoomPosition | None = None, backwards: bool = True, limit: int = 5,
                            recurse: bool | None = None, device_id: str | None = None) -> dict:
        """The child events of ``event_id`` a user may see (relations.yaml): ``chunk``,
        ``next_batch`` when more may follow, ``prev_batch`` when ``from`` was given and
        ``recursion_depth`` when ``recurse`` was. 403 when the user may not read the room, 404
        when the parent is unknown or not visible to them."""
        await self.visibility.room_access(user_id, room_id)
        parent = await self.events.get_event(event_id)
        if parent is None or parent.room_id != room_id or not await self.visibility.can_see_event(user_id, parent):
            raise not_found("Event not found.")
        rows = await self.store.get_children(event_id, rel_type=rel_type, event_type=event_type, from_pos=from_pos,
                                             to_pos=to_pos, backwards=backwards, limit=limit + 1,
                                             recurse=bool(recurse))
        more = len(rows) > limit
        rows = rows[:limit]
        loaded = await self.events.get_events(r.event_id for r in rows)
        children = [loaded[r.event_id] for r in rows if r.event_id in loaded and loaded[r.event_id].room_id == room_id]
        ignored = await self.ignored_users(user_id)
        visible = await self.visibility.filter_events_for_user(user_id, children, ignored_users=ignored)
        result: dict = {"chunk": await self.serialize_events(visible, user_id, device_id=device_id,
                                                             ignored_users=ignored)}
        if more and rows:
            last = rows[-1]
            pos = (RoomPosition.before_event(last.depth, last.stream_ordering) if backwards
                   else RoomPosition.after_event(last.depth, last.stream_ordering))
            result["next_batch"] = str(pos)
        if from_pos is not None:
            result["prev_batch"] = str(from_pos)
        if recurse is not None:
            result["recursion_depth"] = MAX_RECURSION_DEPTH if recurse else 1
        return result

    # --- GET /threads ---------------------------------------------------------------------------
    async def get_threads(self, user_id: str, room_id: str, *, participated_only: bool = False,
                          from_pos: RoomPosition | None = None, limit: int = 10,
                          device_id: str | None = None) -> dict:
        """Thread roots of the room, most recent activity first, with their bundled aggregations
        (threads_list.yaml): ``chunk`` and ``next_batch`` when more may follow."""
        await self.visibility.room_access(user_id, room_id)
        rows = await self.store.get_threads(room_id, participant=user_id if participated_only else None,
                                            before_stream=from_pos.stream if from_pos is not None else None,
                                            limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        loaded = await self.events.get_events(t for t, _ in rows)
        roots = [loaded[t] for t, _ in rows if t in loaded]
        ignored = await self.ignored_users(user_id)
        visible = await self.visibility.filter_events_for_user(user_id, roots, ignored_users=ignored)
        result: dict = {"chunk": await self.serialize_events(visible, user_id, device_id=device_id,
                                                             ignored_users=ignored)}
        if more and rows:
            result["next_batch"] = str(RoomPosition(None, rows[-1][1] - 1))
        return result

    # --- checks for the send path ---------------------------------------------------------------
    async def check_new_relation(self, room_id: str, sender: str, event_type: str, content: dict) -> None:
        """Refuse what the spec asks servers to refuse from clients (for the send endpoint):
        a thread whose root has a relation itself (modules/threading.md: 400 M_UNKNOWN) and a
        second identical annotation (modules/event_annotations.md: 400 M_DUPLICATE_ANNOTATION)."""
        rel = parse_relation(content)
        if rel is None:
            return
        if rel.rel_type == THREAD:
            root = await self.events.get_event(rel.parent_id)
            if root is not None and root.room_id == room_id and parse_relation(root.content) is not None:
                raise MatrixError(400, "M_UNKNOWN", "Cannot start a thread from an event with a relation")
        elif rel.rel_type == ANNOTATION:
            if rel.key is None:
                raise invalid_param("m.annotation relations need a string key")
            if await self.store.has_annotation(rel.parent_id, sender, event_type, rel.key):
                raise MatrixError(400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice")
