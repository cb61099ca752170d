"""Server-side search: POST /search, category ``room_events``.

Spec: client-server-api modules/search.md and search.yaml. The user's rooms are the ones they are
in or have left or been banned from (forgotten ones excluded); every hit passes the request's
RoomEventFilter and the history visibility rules (so nothing after a departure is found) and
redacted events are never returned. ``count`` is the index's estimate before those checks;
``highlights`` are the words searched for (each matched as a word prefix).

``next_batch`` (query parameter and response field) is ``rank:<offset>`` or
``recent:<stream ordering>``; group-level pagination is not offered (search.md allows that).
"""
from __future__ import annotations

from typing import Any

from homeserver.client.filtering import RoomEventFilter
from homeserver.http.errors import MatrixError, bad_json, invalid_param
from homeserver.protocol.events import Event
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.visibility import VisibilityService
from homeserver.storage.events_store import EventsStore
from homeserver.storage.room_extras_store import RoomExtrasStore
from homeserver.storage.search_store import KEY_TYPES, SearchStore, query_words
from homeserver.sync.tokens import RoomPosition

from .messages import MessagesService, _filter_view
from .params import parse_filter_obj
from .relations import RelationsService

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 50
_MAX_ROUNDS = 5


def _int_field(obj: dict, key: str, default: int, maximum: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json(f"{key} must be an integer")
    if value < 0:
        raise invalid_param(f"{key} must not be negative")
    return min(value, maximum)


class SearchRequest:
    """A validated ``room_events`` criteria object (search.yaml)."""

    def __init__(self, criteria: Any):
        if not isinstance(criteria, dict):
            raise bad_json("search_categories.room_events must be an object")
        term = criteria.get("search_term")
        if not isinstance(term, str):
            raise bad_json("room_events.search_term must be a string")
        self.words = query_words(term)
        keys = criteria.get("keys", list(KEY_TYPES))
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise bad_json("room_events.keys must be an array of strings")
        unknown = [k for k in keys if k not in KEY_TYPES]
        if unknown:
            raise invalid_param(f"Unsupported search keys: {', '.join(unknown)}")
        self.keys = list(dict.fromkeys(keys))
        self.filter: RoomEventFilter = parse_filter_obj(criteria.get("filter") or {})
        self.order_by = criteria.get("order_by", "rank")
        if self.order_by not in ("rank", "recent"):
            raise invalid_param("room_events.order_by must be 'rank' or 'recent'")
        context = criteria.get("event_context")
        self.context: dict | None = None
        if context is not None:
            if not isinstance(context, dict):
                raise bad_json("room_events.event_context must be an object")
            include_profile = context.get("include_profile", False)
            if not isinstance(include_profile, bool):
                raise bad_json("event_context.include_profile must be a boolean")
            self.context = {"before": _int_field(context, "before_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
                            "after": _int_field(context, "after_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
                            "profile": include_profile}
        self.include_state = criteria.get("include_state", False)
        if not isinstance(self.include_state, bool):
            raise bad_json("room_events.include_state must be a boolean")
        self.group_by: list[str] = []
        groupings = criteria.get("groupings")
        if groupings is not None:
            group_by = groupings.get("group_by", []) if isinstance(groupings, dict) else None
            if not isinstance(group_by, list) or not all(isinstance(g, dict) for g in group_by):
                raise bad_json("room_events.groupings.group_by must be an array of objects")
            for g in group_by:
                if g.get("key") not in ("room_id", "sender"):
                    raise invalid_param("groupings keys must be 'room_id' or 'sender'")
                self.group_by.append(g["key"])
        self.limit = min(self.filter.limit or DEFAULT_LIMIT, MAX_LIMIT)

    def parse_batch(self, token: str | None) -> int | None:
        """The offset (rank) or stream ordering (recent) a ``next_batch`` names."""
        if token is None:
            return None
        kind, _, value = token.partition(":")
        if kind != self.order_by or not value.isascii() or not value.isdigit() or len(value) > 19:
            raise invalid_param("Invalid next_batch token")
        return min(int(value), 2**63 - 1)


class SearchService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(SearchStore)
        self.events = hs.get(EventsStore)
        self.pipeline = hs.get(RoomEventService)
        self.visibility = hs.get(VisibilityService)
        self.relations = hs.get(RelationsService)
        self.messages = hs.get(MessagesService)
        self.extras = hs.get(RoomExtrasStore)

    async def search(self, user_id: str, body: Any, next_batch: str | None, device_id: str | None = None) -> dict:
        """POST /search (search.yaml)."""
        if not isinstance(body, dict) or not isinstance(body.get("search_categories"), dict):
            raise bad_json("search_categories must be an object")
        criteria = body["search_categories"].get("room_events")
        if criteria is None:
            return {"search_categories": {}}
        req = SearchRequest(criteria)
        cursor = req.parse_batch(next_batch)
        return {"search_categories": {"room_events": await self._room_events(user_id, device_id, req, cursor)}}

    async def _room_ids(self, user_id: str, req: SearchRequest) -> list[str]:
        rooms = await self.pipeline.get_rooms_for_user(user_id, ("join", "leave", "ban"))
        forgotten = await self.extras.get_forgotten_rooms(user_id)
        return [r for r in rooms if r not in forgotten and req.filter.room_allowed(r)]

    async def _room_events(self, user_id: str, device_id: str | None, req: SearchRequest,
                           cursor: int | None) -> dict:
        empty = {"results": [], "count": 0, "highlights": req.words}
        room_ids = await self._room_ids(user_id, req)
        if not req.words or not room_ids:
            return empty
        f = req.filter
        ignored = await self.relations.ignored_users(user_id)
        offset = cursor or 0
        before_stream = cursor if req.order_by == "recent" else None
        hits: list[tuple[float, Event]] = []
        count = 0
        exhausted = False
        for _ in range(_MAX_ROUNDS):
            want = req.limit - len(hits)
            batch, total = await self.store.search(
                req.words, room_ids, keys=req.keys, senders=sorted(f.senders) if f.senders is not None else None,
                not_senders=sorted(set(f.not_senders) | ignored), order_by=req.order_by, limit=want,
                offset=offset, before_stream=before_stream)
            count = count or total
            if req.order_by == "recent" and batch:
                before_stream = batch[-1].stream_ordering
            offset += len(batch)
            loaded = await self.events.get_events(h.event_id for h in batch)
            candidates = [loaded[h.event_id] for h in batch if h.event_id in loaded]
            candidates = [e for e in candidates if f.matches(_filter_view(e))]
            redacted = await self.relations.serializer.applicable_redactions(candidates)
            candidates = [e for e in candidates if e.event_id not in redacted]
            # An erased sender's event served as a redacted copy no longer holds the words found.
            visible = {e.event_id for e in await self.visibility.filter_events_for_user(
                user_id, candidates, ignored_users=ignored) if e is loaded.get(e.event_id)}
            hits += [(h.rank, loaded[h.event_id]) for h in batch if h.event_id in visible]
            if len(batch) < want:
                exhausted = True
                break
            if len(hits) >= req.limit:
                break

        events = [e for _, e in hits]
        serialized = await self.relations.serialize_events(events, user_id, device_id=device_id,
                                                           ignored_users=ignored)
        results = []
        for (rank, event), ser in zip(hits, serialized):
            item: dict = {"rank": rank, "result": ser}
            if req.context is not None:
                item["context"] = await self._context(user_id, device_id, event, req, ignored)
            results.append(item)
        out: dict = {"results": results, "count": count, "highlights": req.words}
        if not exhausted:
            out["next_batch"] = f"rank:{offset}" if req.order_by == "rank" else f"recent:{before_stream}"
        if req.group_by:
            out["groups"] = _groups(req.group_by, events)
        if req.include_state:
            out["state"] = await self._state(user_id, device_id, {e.room_id for e in events})
        return out

    async def _context(self, user_id: str, device_id: str | None, event: Event, req: SearchRequest,
                       ignored: set[str]) -> dict:
        meta = (await self.events.get_event_metas([event.event_id]))[event.event_id]
        here_before = RoomPosition.before_event(meta.depth, meta.stream_ordering)
        here_after = RoomPosition.after_event(meta.depth, meta.stream_ordering)
        before = await self.messages.scan(user_id, event.room_id, here_before, None, backwards=True,
                                          limit=req.context["before"], event_filter=None, ignored_users=ignored)
        after = await self.messages.scan(user_id, event.room_id, here_after, None, backwards=False,
                                         limit=req.context["after"], event_filter=None, ignored_users=ignored)
        ser = await self.relations.serialize_events([*before.events, *after.events], user_id,
                                                    device_id=device_id, ignored_users=ignored)
        ctx: dict = {
            "events_before": ser[:len(before.events)],
            "events_after": ser[len(before.events):],
            "start": str(before.rows[-1].before if before.rows else here_before),
            "end": str(after.rows[-1].after if after.rows else here_after),
        }
        if req.context["profile"]:
            ctx["profile_info"] = await self._profiles(event, {e.sender for e in [event, *before.events,
                                                                                   *after.events]})
        return ctx

    async def _profiles(self, event: Event, senders: set[str]) -> dict:
        """Display names and avatars of ``senders`` from their member events in the state after
        the result event."""
        state = await self.pipeline.get_state_ids_at(event.event_id) or {}
        ids = {s: state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state}
        loaded = await self.events.get_events(ids.values())
        out = {}
        for sender, eid in ids.items():
            member = loaded.get(eid)
            if member is None:
                continue
            info = {}
            for key in ("displayname", "avatar_url"):
                if isinstance(member.content.get(key), str):
                    info[key] = member.content[key]
            out[sender] = info
        return out

    async def _state(self, user_id: str, device_id: str | None, room_ids: set[str]) -> dict:
        out = {}
        for room_id in sorted(room_ids):
            try:
                access = await self.visibility.room_access(user_id, room_id)
            except MatrixError:
                continue
            loaded = await self.events.get_events(access.state.values())
            out[room_id] = await self.relations.serializer.serialize_events(
                [loaded[e] for e in access.state.values() if e in loaded], user_id=user_id, device_id=device_id)
        return out


def _groups(group_by: list[str], events: list[Event]) -> dict:
    groups: dict[str, dict] = {}
    for key in group_by:
        by_value: dict[str, dict] = {}
        for e in events:
            value = e.room_id if key == "room_id" else e.sender
            group = by_value.get(value)
            if group is None:
                group = by_value[value] = {"results": [], "order": len(by_value) + 1}
            group["results"].append(e.event_id)
        groups[key] = by_value
    return groups
