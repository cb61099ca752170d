"""The one event pipeline: build → auth → state → persist → notify, for local and remote events.

Local events (client API) go through :meth:`RoomEventService.create_and_send_event`; events from
other servers (federation) through :meth:`RoomEventService.handle_remote_event`. Both run under the
room's lock (sends within one room are serialised, rooms never wait for each other), share the state
computation and end in the events store's persist queue, which commits concurrent events in one
transaction (group commit).

The room lock covers only the in-memory part of a local send (build, sign, auth, state, persist
hooks): the event is queued and the lock released *before* its transaction commits, so the next
sender of the room builds on the room's *head* — the snapshot after the newest queued event, whose
prev_events may be events still being committed. The sender's 200 waits for the commit; the
room's committed snapshot (what readers see) moves only on commit, in queue order. If a write
fails, the events queued on top of it fail with it (the store never writes an event citing a
failed one) and the head is rebuilt from what was committed. Paths that read stored metadata of
prev events (remote events, explicit prev_events, more forward extremities than one event cites)
first wait until the room's queued events are committed.

Spec: server-server-api.md "Checks performed on receipt of a PDU", "Rejection", "Soft failure",
"Auth events selection", "Adding hashes and signatures to outgoing events"; client-server-api
"Transaction identifiers"; rooms/vN.md for the auth rules (homeserver/protocol/event_auth.py).
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from twisted.internet import defer
from twisted.python.failure import Failure

from homeserver.http.errors import MatrixError, forbidden
from homeserver.protocol import event_auth, ids
from homeserver.protocol.canonical_json import check_canonical_values
from homeserver.protocol.events import Event
from homeserver.protocol.hashing import check_content_hash
from homeserver.protocol.redaction import redact
from homeserver.protocol.room_versions import EventFormat, RoomVersion
from homeserver.protocol.signing import sign_new_event
from homeserver.storage.events_store import CurrentStateDelta, EventsStore, PersistItem
from homeserver.storage.lru import LruCache
from homeserver.storage.state_store import StateKey, StateStore
from homeserver.sync.notifier import Notifier

from .locks import RoomLocks
from .state import MissingEventsError, RoomSnapshot, RoomStateService, StateAt

logger = logging.getLogger(__name__)

CREATE = ("m.room.create", "")
#: Most prev_events a local event cites (the deepest forward extremities).
MAX_PREV_EVENTS = 10
#: More forward extremities than this and a dummy event is sent to merge them.
EXTREMITIES_MERGE_THRESHOLD = 10
#: server-server-api.md "Size limits": a PDU is at most 65536 bytes of canonical JSON.
MAX_PDU_SIZE = 65536
DUMMY_EVENT_TYPE = "org.matrix.dummy_event"

__all__ = ["RoomEventService", "MissingEventsError", "MAX_PREV_EVENTS", "EXTREMITIES_MERGE_THRESHOLD"]


class RoomEventService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(EventsStore)
        self.state_store = hs.get(StateStore)
        self.state = hs.get(RoomStateService)
        self.locks = hs.get(RoomLocks)
        self.notifier = hs.get(Notifier)
        self._inflight_txns: dict[tuple[str, str, str], list[defer.Deferred]] = {}
        #: ``async fn(event, state_after) -> fn(txn, item) | None`` run under the room lock before
        #: an event that enters the timeline is persisted; a returned function is run inside the
        #: persist transaction (homeserver/push/notification_counts.py writes push actions so).
        self.persist_hooks: list = []
        #: The same kind of hooks, run for backfilled events entering the timeline (history
        #: indexes: relations, search), where push, relaying and the like do not apply.
        self.history_hooks: list = []
        self._merging: set[str] = set()
        #: Rooms with queued, not yet committed events: what the next local event builds on.
        self._heads: dict[str, _RoomHead] = {}
        # Joined members per room and joined rooms per user, invalidated on membership changes.
        self._joined_members = _GenerationCache(20_000)
        self._joined_rooms = _GenerationCache(100_000)

    # =========================================================================================
    # Local events
    # =========================================================================================
    async def create_and_send_event(self, room_id: str, event_type: str, content: dict, sender: str,
                                    state_key: str | None = None, *, txn_id: str | None = None,
                                    device_id: str | None = None, prev_event_ids: list[str] | None = None,
                                    extra_pdu_fields: Mapping[str, Any] | None = None,
                                    before_persist=None) -> Event:
        """Build, sign, auth and persist a local event; return it.

        ``prev_events`` are the room's forward extremities (the deepest :data:`MAX_PREV_EVENTS`)
        unless ``prev_event_ids`` is given. The event must pass the auth rules against its auth
        events and against the current state, else MatrixError 403 M_FORBIDDEN with the rule's
        text. A repeated ``txn_id`` of the same (sender, device_id) returns the first event.

        ``before_persist`` (federation's remote invites): ``async fn(event) -> event`` called under
        the room lock once the event passed auth and before it is persisted; it may return the
        same event with more signatures (the invitee's server's) or raise to abort the send.
        """
        if not isinstance(content, dict):
            raise MatrixError(400, "M_BAD_JSON", "content must be an object")
        if not isinstance(event_type, str) or not event_type:
            raise MatrixError(400, "M_BAD_JSON", "event type must be a non-empty string")
        if state_key is not None and not isinstance(state_key, str):
            raise MatrixError(400, "M_BAD_JSON", "state_key must be a string")
        if txn_id is None:
            async with self.locks.lock(room_id):
                item, committed = await self._send_locked(room_id, event_type, content, sender, state_key,
                                                          prev_event_ids, extra_pdu_fields, None, before_persist)
            await committed
            self._maybe_merge_extremities(room_id)
            return item.event
        key = (sender, device_id or "", txn_id)
        waiting = self._inflight_txns.get(key)
        if waiting is not None:  # the same transaction is being sent right now
            d: defer.Deferred = defer.Deferred()
            waiting.append(d)
            return await d
        self._inflight_txns[key] = waiters = []
        try:
            existing = await self.store.get_event_id_for_txn(*key)
            event = await self.store.get_event(existing) if existing else None
            if event is None:
                async with self.locks.lock(room_id):
                    item, committed = await self._send_locked(room_id, event_type, content, sender, state_key,
                                                              prev_event_ids, extra_pdu_fields, key,
                                                              before_persist)
                await committed
                event = item.event
                self._maybe_merge_extremities(room_id)
        except BaseException as e:
            del self._inflight_txns[key]
            for d in waiters:
                d.errback(e)
            raise
        del self._inflight_txns[key]
        for d in waiters:
            d.callback(event)
        return event

    async def _send_locked(self, room_id: str, event_type: str, content: dict, sender: str,
                           state_key: str | None, prev_event_ids: list[str] | None,
                           extra_pdu_fields: Mapping[str, Any] | None,
                           txn_key: tuple[str, str, str] | None, before_persist=None
                           ) -> tuple[PersistItem, defer.Deferred]:
        """Build the event on the room's head and queue it (under the room lock); returns the
        item and a Deferred firing once it is committed (to be awaited after the lock)."""
        snap = await self._head_snapshot(room_id)
        if snap is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        item, new_snap = await self._build_local(snap, event_type, content, sender, state_key, prev_event_ids,
                                                 extra_pdu_fields, txn_key, before_persist)
        return item, self._queue(room_id, [(item, new_snap)])

    async def _build_local(self, snap: RoomSnapshot, event_type: str, content: dict, sender: str,
                           state_key: str | None, prev_event_ids: list[str] | None,
                           extra_pdu_fields: Mapping[str, Any] | None,
                           txn_key: tuple[str, str, str] | None, before_persist=None
                           ) -> tuple[PersistItem, RoomSnapshot | None]:
        """A local event built, signed and authed on ``snap`` (the room's head), with its persist
        item and the snapshot after it. Citing anything but all of the head's forward extremities
        reads stored state of the prev events: the room's queued events are committed first."""
        room_id = snap.room_id
        if prev_event_ids is not None or len(snap.extremities) > MAX_PREV_EVENTS:
            await self._settle(room_id)
            snap = await self.state.get_snapshot(room_id)
            if snap is None:
                raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        rv = snap.room_version
        if prev_event_ids is None:
            chosen = sorted(snap.extremities.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PREV_EVENTS]
            prev_ids = [e for e, _ in chosen]
            depths = [d for _, d in chosen]
        else:
            metas = await self.store.get_event_metas(prev_event_ids)
            missing = [e for e in prev_event_ids if e not in metas]
            if missing:
                raise MatrixError(400, "M_BAD_JSON", f"unknown prev_events {missing}")
            prev_ids = list(dict.fromkeys(prev_event_ids))
            depths = [metas[e].depth for e in prev_ids]
        depth = min(max(depths, default=0) + 1, 2**63 - 1)
        if set(prev_ids) == set(snap.extremities):
            before = StateAt(snap.state, snap.state_group, snap.delta_depth)
        else:
            before = await self.state.state_after_prevs(rv, room_id, prev_ids)

        pdu: dict[str, Any] = {
            "room_id": room_id, "type": event_type, "sender": sender, "content": content,
            "origin_server_ts": self.hs.clock_ms(), "depth": depth,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        if extra_pdu_fields:
            for k, v in extra_pdu_fields.items():
                if k == "origin_server_ts":  # application-service-api.md "Timestamp massaging"
                    pdu[k] = v
                else:
                    pdu.setdefault(k, v)
        draft = Event(dict(pdu, event_id="$draft", prev_events=[], auth_events=[]), rv, event_id="$draft")
        auth_keys = event_auth.auth_types_for_event(rv, draft)
        auth_ids = sorted(before.state[k] for k in auth_keys if k in before.state)
        refs = await self._event_refs(rv, prev_ids + auth_ids)
        pdu["prev_events"] = [refs[e] for e in prev_ids]
        pdu["auth_events"] = [refs[e] for e in auth_ids]
        event = self._sign(pdu, rv)

        auth_events = await self.store.get_events(auth_ids, allow_rejected=True)
        create_event = await self._create_event_of(event, list(auth_events.values()), before.state)
        try:
            event_auth.check_auth_events_list(event, [auth_events[e] for e in auth_ids], create_event)
            event_auth.check_auth_rules(
                event, event_auth.auth_state_from_events([auth_events[e] for e in auth_ids], create_event))
            if before.state is not snap.state:
                event_auth.check_auth_rules(event, await self.state.auth_state_for(event, snap.state))
        except event_auth.AuthError as e:
            raise forbidden(str(e)) from None
        if before_persist is not None:
            signed = await before_persist(event)
            if signed.event_id != event.event_id:
                raise MatrixError(500, "M_UNKNOWN", "before_persist changed the event")
            event = signed
        return await self._prepare_dag_item(snap, event, before, txn_key=txn_key)

    async def send_create_event(self, room_version: RoomVersion, creator: str, content: dict,
                                room_id: str | None = None, *, is_public: bool = False) -> Event:
        """Create a room: persist its ``m.room.create`` event (rooms/vN.md auth rule 1).

        ``room_id`` is required before v12 and ignored from v12 (the room ID is derived from the
        event, rooms/v12.md)."""
        return (await self.create_room_events(room_version, creator, content, room_id, is_public=is_public))[0]

    async def create_room_events(self, room_version: RoomVersion, creator: str, content: dict,
                                 room_id: str | None = None, *, is_public: bool = False,
                                 initial: Iterable[tuple[str, dict, str | None]] = ()) -> list[Event]:
        """Create a room: its ``m.room.create`` event and then the ``initial`` events
        ``(type, content, state_key)`` sent by ``creator``, each built on the one before and
        checked against the auth rules, all committed in one transaction (all or none: a refusal
        half-way creates no room). Returns the events, the create event first.

        ``room_id`` is required before v12 and ignored from v12 (the room ID is derived from the
        event, rooms/v12.md)."""
        pdu: dict[str, Any] = {
            "type": "m.room.create", "state_key": "", "sender": creator, "content": content,
            "origin_server_ts": self.hs.clock_ms(), "depth": 1, "prev_events": [], "auth_events": [],
        }
        if not room_version.room_id_from_create_event:
            if not room_id:
                raise ValueError("room_id is required before room version 12")
            pdu["room_id"] = room_id
        initial = list(initial)
        # From v12 the room ID is the create event's hash, so two rooms created by one user in the
        # same millisecond with the same content would collide: move the later one on by 1 ms.
        for _attempt in range(1000):
            event = self._sign(dict(pdu), room_version)
            async with self.locks.lock(event.room_id):
                if await self._head_snapshot(event.room_id) is not None:
                    if room_version.room_id_from_create_event:
                        pdu["origin_server_ts"] += 1
                        continue
                    raise MatrixError(400, "M_ROOM_IN_USE", "Room ID already exists")
                try:
                    event_auth.check_auth_rules(event, {})
                except event_auth.AuthError as e:
                    raise forbidden(str(e)) from None
                built = [await self._prepare_dag_item(None, event, StateAt({}, None, 0),
                                                      new_room=(creator, is_public))]
                try:
                    for event_type, body, state_key in initial:
                        self.store.stage([built[-1][0]])  # the next events read the ones before
                        built.append(await self._build_local(built[-1][1], event_type, body, creator,
                                                             state_key, None, None, None))
                finally:
                    self.store.unstage([item for item, _ in built])
                committed = self._queue(event.room_id, built)
            await committed
            return [item.event for item, _ in built]
        raise MatrixError(400, "M_ROOM_IN_USE", "Room ID already exists")

    async def _check_against_auth_events(self, event: Event) -> tuple[Event, Event | None, str | None]:
        """The first checks on receipt of a remote PDU (server-server-api "Checks performed on
        receipt of a PDU", checks 3–4): the redacted form when the content hash does not match,
        then auth against the event's own auth_events (MissingEventsError when some are not
        stored). Returns the event to keep, the room's create event and the rejection reason."""
        rv = event.room_version
        if not check_content_hash(event.pdu):
            event = Event(redact(event.pdu, rv), rv, event_id=event.event_id)
        auth_map = await self.store.get_events(event.auth_event_ids, allow_rejected=True)
        missing = [e for e in event.auth_event_ids if e not in auth_map]
        if missing:
            raise MissingEventsError("auth_events", missing)
        auth_events = [auth_map[e] for e in event.auth_event_ids]
        create_event = await self._create_event_of(event, auth_events)
        try:
            event_auth.check_against_auth_events(event, auth_events, create_event)
        except event_auth.AuthError as e:
            return event, create_event, f"auth_events: {e}"
        return event, create_event, None

    async def _check_against_state_before(self, rv: RoomVersion, room_id: str, event: Event,
                                          state_before: Mapping[StateKey, str] | None,
                                          create_event: Event | None,
                                          rejected: str | None) -> tuple[StateAt, str | None]:
        """The state before a remote event (given, or resolved from its prev_events) and the
        auth check against it (server-server-api "Checks performed on receipt of a PDU", check 5):
        returns that state and the rejection reason, if any."""
        if state_before is not None:
            state = dict(state_before)
            group = await self.state.new_group(room_id, None, None, state)
            before = StateAt(state, group.state_group, group.delta_depth, group)
        else:
            before = await self.state.state_after_prevs(rv, room_id, event.prev_event_ids)
        if rejected is None and event.type != "m.room.create":
            auth_state = await self.state.auth_state_for(event, before.state)
            if CREATE not in auth_state and create_event is not None:
                auth_state[CREATE] = create_event
            try:
                event_auth.check_auth_rules(event, auth_state)
            except event_auth.AuthError as e:
                rejected = f"state: {e}"
        return before, rejected

    def _sign(self, pdu: dict, rv: RoomVersion) -> Event:
        if rv.event_format == EventFormat.V1:
            pdu["event_id"] = ids.new_v1_event_id(self.hs.hostname)
        try:
            check_canonical_values(pdu, rv)
            signed, event_id, size = sign_new_event(pdu, rv, self.hs.hostname, self.hs.signing_key)
        except (ValueError, TypeError) as e:
            raise MatrixError(400, "M_BAD_JSON", f"Event is not valid canonical JSON: {e}") from None
        if size > MAX_PDU_SIZE:
            raise MatrixError(413, "M_TOO_LARGE", "Event is larger than 65536 bytes")
        return Event(signed, rv, event_id=event_id)

    async def _event_refs(self, rv: RoomVersion, event_ids: list[str]) -> dict[str, Any]:
        """How prev_events/auth_events cite events: IDs, or ``[id, {"sha256": hash}]`` in the v1
        event format (rooms/fragments/v1-event-format.md)."""
        if rv.event_format != EventFormat.V1:
            return {e: e for e in event_ids}
        events = await self.store.get_events(event_ids, allow_rejected=True)
        out = {}
        for e in event_ids:
            hashes = events[e].get("hashes") if e in events else None
            sha = hashes.get("sha256") if isinstance(hashes, dict) else None
            out[e] = [e, {"sha256": sha}] if sha else [e, {}]
        return out

    async def _create_event_of(self, event: Event, auth_events: list[Event],
                               state: Mapping[StateKey, str] | None = None) -> Event | None:
        """The room's create event as the auth rules need it: from the auth events (v1–v11) or
        by the room ID (v12, rooms/v12.md: the room ID is the create event's ID)."""
        if event.type == "m.room.create":
            return None
        for ae in auth_events:
            if ae.type == "m.room.create" and ae.state_key == "":
                return ae
        if event.room_version.room_id_from_create_event and isinstance(event.room_id, str):
            return await self.store.get_event("$" + event.room_id[1:], allow_rejected=True)
        if state and CREATE in state:
            return await self.store.get_event(state[CREATE], allow_rejected=True)
        return None

    # =========================================================================================
    # Remote events
    # =========================================================================================
    async def handle_remote_event(self, event: Event, *, state_before: Mapping[StateKey, str] | None = None,
                                  outlier: bool = False, soft_fail_check: bool = True) -> Event:
        """Process an event received over federation and return it as stored.

        The caller has checked its signatures (server-server-api.md "Checks performed on receipt
        of a PDU", steps 1–2). Here: a content hash mismatch means the redacted form is used (step
        3); the event must pass auth against its auth events (step 4) and, unless it is an outlier,
        against the state before it (step 5: ``state_before`` or the resolved states after its
        prev_events) — else it is stored *rejected*, outside state and timeline. An accepted event
        failing auth against the current state is *soft-failed* (step 6): stored with its state,
        not in the timeline nor the forward extremities nor the current state.

        ``soft_fail_check=False`` skips step 6: for the join this server made itself through a
        resident server's send_join, whose state is the truth when our copy of the room is stale.

        Raises MissingEventsError (kind "auth_events", "prev_events" or "state") when events it
        needs are not stored; federation fetches them and calls again.
        """
        room_id = event.room_id
        async with self.locks.lock(room_id):
            result = await self._handle_remote_locked(event, state_before, outlier, soft_fail_check)
        if not outlier:
            self._maybe_merge_extremities(room_id)
        return result

    async def _handle_remote_locked(self, event: Event, state_before: Mapping[StateKey, str] | None,
                                    outlier: bool, soft_fail_check: bool = True) -> Event:
        room_id = event.room_id
        rv = event.room_version
        await self._settle(room_id)  # the checks below read stored state of the room's events
        existing = (await self.store.get_event_metas([event.event_id])).get(event.event_id)
        if existing is not None and (outlier or not existing.outlier):
            return await self.store.get_event(event.event_id, allow_rejected=True)
        event, create_event, rejected = await self._check_against_auth_events(event)


        if outlier:
            return await self._persist_outlier(event, rejected)
        prev_metas = await self.store.get_event_metas(event.prev_event_ids)
        if any(m.room_id != room_id for m in prev_metas.values()):
            # Citing another room's events would import that room's state: never accepted.
            return await self._persist_outlier(event, "prev_events: an event from another room")

        before, rejected = await self._check_against_state_before(rv, room_id, event, state_before,
                                                                  create_event, rejected)

        snap = await self.state.get_snapshot(room_id)
        soft_failed = False
        if rejected is None and snap is not None and event.type != "m.room.create" and soft_fail_check:
            current = await self.state.auth_state_for(event, snap.state)
            try:
                event_auth.check_auth_rules(event, current)
            except event_auth.AuthError as e:
                logger.info("soft-failing %s: %s", event.event_id, e)
                soft_failed = True
        new_room = None
        if snap is None:
            creator = create_event.sender if create_event is not None else event.sender
            new_room = (creator, False)
        return await self._persist_dag_event(
            snap, event, before, rejected=rejected, soft_failed=soft_failed, new_room=new_room,
            existing_nid=existing.event_nid if existing is not None else None)

    async def handle_remote_outliers(self, events: Iterable[Event]) -> dict[str, Event]:
        """Store many events as outliers in one transaction (the state and auth chain of a
        send_join response, fetched auth events), each checked against its auth events
        (server-server-api.md "Checks performed on receipt of a PDU", steps 3–4).

        Auth events may be in the batch (any order: they are processed auth-first) or already
        stored; otherwise MissingEventsError("auth_events"). Events already stored are returned as
        stored. Returns every event of the batch by ID, rejected ones with ``rejected_reason``."""
        batch = {ev.event_id: ev for ev in events}
        metas = await self.store.get_event_metas(batch)
        out = await self.store.get_events([e for e in batch if e in metas], allow_rejected=True)
        new = {eid: ev for eid, ev in batch.items() if eid not in metas}
        referenced = {a for ev in new.values() for a in ev.auth_event_ids if a not in new}
        v12_creates = {"$" + ev.room_id[1:] for ev in new.values()
                       if ev.room_version.room_id_from_create_event and ev.type != "m.room.create"
                       and isinstance(ev.room_id, str)}
        known = await self.store.get_events((referenced | v12_creates) - set(new), allow_rejected=True)
        missing = referenced - set(known)
        if missing:
            raise MissingEventsError("auth_events", missing)
        items = []
        for ev in _auth_order(new):
            if not check_content_hash(ev.pdu):
                ev = Event(redact(ev.pdu, ev.room_version), ev.room_version, event_id=ev.event_id)
            auth_events = [known[a] for a in ev.auth_event_ids if a in known]
            rejected = None
            if len(auth_events) != len(ev.auth_event_ids):
                rejected = "auth_events: an auth event is part of an auth cycle"
            else:
                create = None
                if ev.type != "m.room.create":
                    create = next((a for a in auth_events if a.type == "m.room.create" and a.state_key == ""), None)
                    if create is None and isinstance(ev.room_id, str):
                        create = known.get("$" + ev.room_id[1:])
                try:
                    event_auth.check_against_auth_events(ev, auth_events, create)
                except event_auth.AuthError as e:
                    rejected = f"auth_events: {e}"
            if rejected is not None:
                ev = Event(ev.pdu, ev.room_version, event_id=ev.event_id, rejected_reason=rejected)
            known[ev.event_id] = ev
            items.append(PersistItem(ev, self.store.allocate_event_nid(), outlier=True, rejected_reason=rejected))
        if items:
            await self.store.persist(items)
        out.update({item.event.event_id: item.event for item in items})
        return out

    async def handle_backfilled_event(self, event: Event, *,
                                      state_before: Mapping[StateKey, str] | None = None) -> Event:
        """Store an event older than the room's known history (fetched with ``/backfill``) as
        history: checked like a pushed event against its auth events and the state before it
        (``state_before`` or the states after its prev_events, which must be stored), stored
        rejected when it fails; never soft-failed, never a forward extremity, never part of the
        current state, no persist hooks (no push, no relaying; only the history hooks: relations
        and search indexes) and no notification. Its stream
        ordering is negative (homeserver/storage/events_store.py) so /messages orders it before
        the events we had (server-server-api.md "Backfilling and retrieving missing events").

        An outlier copy (state from a send_join) joins the DAG. Raises MissingEventsError like
        :meth:`handle_remote_event`."""
        room_id = event.room_id
        rv = event.room_version
        async with self.locks.lock(room_id):
            await self._settle(room_id)
            existing = (await self.store.get_event_metas([event.event_id])).get(event.event_id)
            if existing is not None and not existing.outlier:
                return await self.store.get_event(event.event_id, allow_rejected=True)
            event, create_event, rejected = await self._check_against_auth_events(event)
            prev_metas = await self.store.get_event_metas(event.prev_event_ids)
            if any(m.room_id != room_id for m in prev_metas.values()):
                if existing is not None:
                    return await self.store.get_event(event.event_id, allow_rejected=True)
                return await self._persist_outlier(event, "prev_events: an event from another room")
            before, rejected = await self._check_against_state_before(rv, room_id, event, state_before,
                                                                      create_event, rejected)
            item, _ = await self._prepare_dag_item(
                None, event, before, rejected=rejected, backfilled=True,
                existing_nid=existing.event_nid if existing is not None else None)
            await self.store.persist([item])
            return item.event

    async def store_out_of_band_membership(self, event: Event) -> Event:
        """A membership event of a local user for a room this server is not in (an invite
        received over federation, our rejection of it, a knock), stored as an outlier *without*
        auth checks: its auth events are the room's, which we cannot have (server-server-api.md
        "Inviting to a room", "Leaving Rooms"). The caller checked its signatures."""
        async with self.locks.lock(event.room_id):
            existing = (await self.store.get_event_metas([event.event_id])).get(event.event_id)
            if existing is not None:
                return await self.store.get_event(event.event_id, allow_rejected=True)
            return await self._persist_outlier(event, None)

    async def _persist_outlier(self, event: Event, rejected: str | None) -> Event:
        out_of_band = False
        if rejected is None and event.type == "m.room.member" and isinstance(event.state_key, str) \
                and _is_local(event.state_key, self.hs.hostname):
            current = await self.store.get_membership(event.room_id, event.state_key)
            out_of_band = current is None or current[0] != "join" or current[1] == event.event_id
        item = PersistItem(event, self.store.allocate_event_nid(), outlier=True, rejected_reason=rejected,
                           out_of_band_membership=out_of_band)
        await self.store.persist([item])
        if out_of_band and item.stream_ordering is not None:
            self._joined_rooms.invalidate(event.state_key)
            self.notifier.notify("events", item.stream_ordering, users=[event.state_key])
        return item.event

    # =========================================================================================
    # Shared: state after, current state, extremities, persist, notify
    # =========================================================================================
    async def _persist_dag_event(self, snap: RoomSnapshot | None, event: Event, before: StateAt, *,
                                 rejected: str | None = None, soft_failed: bool = False,
                                 new_room: tuple[str | None, bool] | None = None,
                                 existing_nid: int | None = None) -> Event:
        """Prepare, queue and wait for the commit of one event (callers hold the room lock)."""
        item, new_snap = await self._prepare_dag_item(snap, event, before, rejected=rejected,
                                                      soft_failed=soft_failed, new_room=new_room,
                                                      existing_nid=existing_nid)
        await self._queue(event.room_id, [(item, new_snap)])
        return item.event

    async def _prepare_dag_item(self, snap: RoomSnapshot | None, event: Event, before: StateAt, *,
                                rejected: str | None = None, soft_failed: bool = False,
                                txn_key: tuple[str, str, str] | None = None,
                                new_room: tuple[str | None, bool] | None = None,
                                existing_nid: int | None = None,
                                backfilled: bool = False) -> tuple[PersistItem, RoomSnapshot | None]:
        """The persist item of an event (its state group, current-state delta, extremities and
        the persist hooks' writes) and the room's snapshot after it (None when it changes
        nothing: rejected, soft-failed and backfilled events)."""
        room_id = event.room_id
        rv = event.room_version
        nid = existing_nid if existing_nid is not None else self.store.allocate_event_nid()
        new_groups = [before.new_group] if before.new_group is not None else []

        # The state after the event (rejected and non-state events change nothing).
        if rejected is None and event.is_state():
            after_state = dict(before.state)
            after_state[event.state_tuple] = event.event_id
            group = await self.state.new_group(room_id, before.state_group, before.state, after_state,
                                               prev_depth=before.delta_depth, extra_nids={event.event_id: nid})
            new_groups.append(group)
            after = StateAt(after_state, group.state_group, group.delta_depth)
        else:
            after = StateAt(before.state, before.state_group, before.delta_depth)

        delta = None
        new_snap = None
        extremities = None
        if rejected is None and not soft_failed and not backfilled:
            old_ext = snap.extremities if snap is not None else {}
            prevs = set(event.prev_event_ids)
            new_ext = {e: d for e, d in old_ext.items() if e not in prevs}
            new_ext[event.event_id] = _depth(event)
            extremities = ([e for e in old_ext if e not in new_ext], [event.event_id])
            if len(new_ext) == 1:
                current = after
            else:
                current = await self._resolve_current(rv, room_id, event, nid, after,
                                                      [e for e in new_ext if e != event.event_id])
                if current.new_group is not None:
                    new_groups.append(current.new_group)
            old_state = snap.state if snap is not None else {}
            if current.state is not old_state or snap is None or current.state_group != snap.state_group:
                delta = await self._current_state_delta(room_id, old_state, current, event, nid)
            new_snap = RoomSnapshot(room_id, rv, current.state, current.state_group, current.delta_depth, new_ext)

        item = PersistItem(
            event, nid, rejected_reason=rejected, soft_failed=soft_failed,
            state_group_before=before.state_group, state_group=after.state_group, new_groups=new_groups,
            current_state=delta, extremities=extremities, txn_key=txn_key, new_room=new_room,
            de_outlier=existing_nid is not None, backfilled=backfilled)
        if item.in_timeline:
            hooks = self.history_hooks if backfilled else self.persist_hooks
            if hooks:
                await self._run_persist_hooks(hooks, item, after.state)
        return item, new_snap

    # --- the room head: queued events, committed in order -----------------------------------------
    async def _head_snapshot(self, room_id: str) -> RoomSnapshot | None:
        """What the room's next event builds on (call under the room lock): the snapshot after
        its newest queued event, or the committed one when nothing is queued (or a queued write
        failed: then once the queue of the room has drained)."""
        head = self._heads.get(room_id)
        if head is not None and head.snap is not None and not head.broken:
            return head.snap
        await self._settle(room_id)
        return await self.state.get_snapshot(room_id)

    async def _settle(self, room_id: str) -> None:
        """Wait until every queued event of the room is committed or failed."""
        while (head := self._heads.get(room_id)) is not None:
            d: defer.Deferred = defer.Deferred()
            head.idle.append(d)
            await d

    def _queue(self, room_id: str, built: list[tuple[PersistItem, RoomSnapshot | None]]) -> defer.Deferred:
        """Queue the items of one room as one group (call under the room lock) and move the room's
        head. Returns a Deferred firing once they are committed, after the committed snapshot,
        the member caches and the notifier have moved; cancelling it does not cancel the write."""
        head = self._heads.get(room_id)
        if head is None:
            head = self._heads[room_id] = _RoomHead(None)
        for _, snap in built:
            if snap is not None:
                head.snap = snap
        head.in_flight += 1
        written = self.store.persist([item for item, _ in built])
        written.addCallbacks(self._committed, self._write_failed, callbackArgs=(room_id, built),
                             errbackArgs=(room_id,))
        waiter: defer.Deferred = defer.Deferred()

        def forward(result):
            if not waiter.called:  # the waiter may have been cancelled (client went away)
                waiter.callback(result) if not isinstance(result, Failure) else waiter.errback(result)
            return None
        written.addBoth(forward)
        return waiter

    def _committed(self, result, room_id: str, built: list[tuple[PersistItem, RoomSnapshot | None]]):
        for item, snap in built:
            if snap is not None:
                self.state.set_snapshot(snap)
            delta = item.current_state
            if delta is not None and (delta.memberships or delta.memberships_removed):
                # The member caches take the change as it is (no reload of a big room per join).
                joined = {u for u, m, _, _ in delta.memberships if m == "join"}
                gone = {u for u, m, _, _ in delta.memberships if m != "join"} | set(delta.memberships_removed)
                self._joined_members.update(room_id, lambda members: _sorted_changed(members, joined, gone))
                for user in joined:
                    self._joined_rooms.update(user, lambda rooms: _sorted_changed(rooms, {room_id}, ()))
                for user in gone:
                    self._joined_rooms.update(user, lambda rooms: _sorted_changed(rooms, (), {room_id}))
            if item.in_timeline and item.stream_ordering is not None:
                users = [u for u, _, _, _ in delta.memberships] if delta is not None else []
                self.notifier.notify("events", item.stream_ordering, rooms=[room_id], users=users)
        self._release(room_id)
        return result

    def _write_failed(self, failure: Failure, room_id: str) -> Failure:
        logger.warning("persisting events of %s failed: %s", room_id, failure.getErrorMessage())
        head = self._heads.get(room_id)
        if head is not None:
            head.broken = True  # later events of the room rebuild from the committed snapshot
        self._release(room_id)
        return failure

    def _release(self, room_id: str) -> None:
        head = self._heads[room_id]
        head.in_flight -= 1
        if head.in_flight == 0:
            del self._heads[room_id]
            for d in head.idle:
                d.callback(None)

    async def _run_persist_hooks(self, hooks: list, item: PersistItem, state_after: Mapping[StateKey, str]) -> None:
        for hook in list(hooks):
            try:
                write = await hook(item.event, state_after)
            except Exception:
                logger.exception("persist hook %r failed for %s", hook, item.event.event_id)
                continue
            if write is not None:
                item.extra_writes.append(write)

    async def _resolve_current(self, rv: RoomVersion, room_id: str, event: Event, nid: int, after: StateAt,
                               other_extremities: list[str]) -> StateAt:
        """The current state when several forward extremities remain: the resolution of the
        states after each of them."""
        metas = await self.store.get_event_metas(other_extremities)
        maps = [after.state]
        groups = [after.state_group]
        for e in other_extremities:
            m = metas.get(e)
            if m is None or m.state_group is None:
                continue
            g = m.state_group
            if g not in groups:
                groups.append(g)
                maps.append(await self.state_store.get_state_group(g))
        if all(m == maps[0] for m in maps[1:]):
            return after
        resolved = await self.state.resolve(rv, maps, unstored={event.event_id: event})
        if resolved == after.state:
            return after
        for g, m in zip(groups[1:], maps[1:]):
            if m == resolved:
                return StateAt(m, g, self.state_store.group_delta_depth(g) or 0)
        group = await self.state.new_group(room_id, groups[1], maps[1], resolved,
                                           extra_nids={event.event_id: nid})
        return StateAt(resolved, group.state_group, group.delta_depth, group)

    async def _current_state_delta(self, room_id: str, old: Mapping[StateKey, str], current: StateAt,
                                   event: Event, nid: int) -> CurrentStateDelta:
        new = current.state
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        removed = [k for k in old if k not in new]
        key_nids = await self.state_store.intern_keys(list(changed) + removed)
        nids = await self.store.get_event_nids([e for e in changed.values() if e != event.event_id])
        if event.event_id in changed.values():
            nids[event.event_id] = nid
        member_ids = [e for (t, _), e in changed.items() if t == "m.room.member" and e != event.event_id]
        members = await self.store.get_events(member_ids, allow_rejected=True)
        members[event.event_id] = event
        memberships = []
        for (t, sk), e in changed.items():
            if t == "m.room.member" and e in members:
                m = members[e].membership
                memberships.append((sk, m if isinstance(m, str) else "leave", e, members[e].sender))
        return CurrentStateDelta(room_id, current.state_group,
                                 {key_nids[k]: nids[e] for k, e in changed.items() if e in nids},
                                 [key_nids[k] for k in removed], memberships,
                                 [sk for t, sk in removed if t == "m.room.member"])

    # =========================================================================================
    # Forward extremities
    # =========================================================================================
    def _maybe_merge_extremities(self, room_id: str) -> None:
        snap = self.state._snapshots.get(room_id)
        if snap is None or len(snap.extremities) <= EXTREMITIES_MERGE_THRESHOLD or room_id in self._merging:
            return
        self._merging.add(room_id)
        self.hs.reactor.callLater(0, lambda: defer.ensureDeferred(self._merge_extremities(room_id)))

    async def _merge_extremities(self, room_id: str) -> None:
        """Send ``org.matrix.dummy_event``s citing the forward extremities until at most
        :data:`EXTREMITIES_MERGE_THRESHOLD` remain (as Synapse does)."""
        try:
            for _ in range(100):
                snap = await self.state.get_snapshot(room_id)
                if snap is None or len(snap.extremities) <= EXTREMITIES_MERGE_THRESHOLD:
                    return
                sender = await self._local_joined_member(room_id)
                if sender is None:
                    return
                await self.create_and_send_event(room_id, DUMMY_EVENT_TYPE, {}, sender)
        except Exception:
            logger.exception("merging forward extremities of %s failed", room_id)
        finally:
            self._merging.discard(room_id)

    async def _local_joined_member(self, room_id: str) -> str | None:
        for user in await self.store.get_members(room_id, "join"):
            if _is_local(user, self.hs.hostname):
                return user
        return None

    # =========================================================================================
    # Reads
    # =========================================================================================
    def current_stream_token(self) -> int:
        """The events stream position sync may read up to."""
        return self.store.get_current_stream_token()

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        snap = self.state._snapshots.get(room_id)
        if snap is not None:
            return snap.room_version
        return await self.store.get_room_version(room_id)

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        """The room's current state as ``(type, state_key) -> event_id`` ({} for unknown rooms).
        The returned dict is shared: do not mutate it."""
        return await self.state.get_current_state_ids(room_id)

    async def get_current_state_event(self, room_id: str, event_type: str, state_key: str = "") -> Event | None:
        state = await self.state.get_current_state_ids(room_id)
        eid = state.get((event_type, state_key))
        return await self.store.get_event(eid) if eid is not None else None

    async def get_current_state_events(self, room_id: str,
                                       keys: Iterable[StateKey] | None = None) -> dict[StateKey, Event]:
        """Current state events (all, or only ``keys``) as ``(type, state_key) -> Event``."""
        state = await self.state.get_current_state_ids(room_id)
        wanted = state if keys is None else {k: state[k] for k in keys if k in state}
        events = await self.store.get_events(wanted.values())
        return {k: events[e] for k, e in wanted.items() if e in events}

    async def get_state_ids_at(self, event_id: str) -> dict[StateKey, str] | None:
        """The state *after* an event (including it, if it is an accepted state event); None for
        unknown events and outliers."""
        return await self.state.get_state_after(event_id)

    async def get_state_ids_before(self, event_id: str) -> dict[StateKey, str] | None:
        """The state *before* an event (what federation's /state_ids returns); None if unknown."""
        return await self.state.get_state_before(event_id)

    async def get_event(self, event_id: str, allow_none: bool = True, *,
                        allow_rejected: bool = False) -> Event | None:
        ev = await self.store.get_event(event_id, allow_rejected=allow_rejected)
        if ev is None and not allow_none:
            raise MatrixError(404, "M_NOT_FOUND", "Event not found")
        return ev

    async def get_events(self, event_ids: Iterable[str], *, allow_rejected: bool = False) -> dict[str, Event]:
        return await self.store.get_events(event_ids, allow_rejected=allow_rejected)

    async def get_membership(self, room_id: str, user_id: str) -> str | None:
        """The user's current membership ("join", "invite", "leave", "ban", "knock") or None."""
        snap = self.state._snapshots.get(room_id)
        if snap is not None:
            eid = snap.state.get(("m.room.member", user_id))
            if eid is not None:
                ev = await self.store.get_event(eid, allow_rejected=True)
                if ev is not None:
                    return ev.membership
        row = await self.store.get_membership(room_id, user_id)
        return row[0] if row else None

    async def get_joined_members(self, room_id: str) -> list[str]:
        """The users joined to the room, sorted (cached per room). Do not mutate the list."""
        return await self._joined_members.get(room_id, lambda: self.store.get_members(room_id, "join"))

    async def get_rooms_for_user(self, user_id: str, memberships: Iterable[str] = ("join",)) -> list[str]:
        """The rooms where the user's membership is one of ``memberships``, sorted (joined rooms
        are cached per user)."""
        memberships = tuple(memberships)
        if memberships == ("join",):
            async def load() -> list[str]:  # sorted here: the cache is kept sorted by Python's order
                return sorted(await self.store.get_rooms_for_user(user_id, memberships))
            return list(await self._joined_rooms.get(user_id, load))
        return await self.store.get_rooms_for_user(user_id, memberships)


@dataclass
class _RoomHead:
    """A room with queued events: the snapshot after the newest (None if none changes it), how
    many groups of its events are being written, whether one failed, and who waits for the queue
    to drain."""

    snap: RoomSnapshot | None
    in_flight: int = 0
    broken: bool = False
    idle: list[defer.Deferred] = field(default_factory=list)


class _GenerationCache:
    """An LRU of values loaded from the database, where a load that raced with a change of its
    key is not cached (the key's generation moved while it ran; generations are kept only for
    keys being loaded)."""

    def __init__(self, size: int):
        self._cache = LruCache(size)
        self._loading: dict[str, list[int]] = {}  # key -> [generation, loads in flight]

    async def get(self, key: str, load):
        value = self._cache.get(key)
        if value is None:
            entry = self._loading.get(key)
            if entry is None:
                entry = self._loading[key] = [0, 0]
            gen = entry[0]
            entry[1] += 1
            try:
                value = await load()
            finally:
                entry[1] -= 1
                if entry[1] == 0 and self._loading.get(key) is entry:
                    del self._loading[key]
            if entry[0] == gen:
                self._cache.set(key, value)
        return value

    def invalidate(self, key: str) -> None:
        entry = self._loading.get(key)
        if entry is not None:
            entry[0] += 1
        self._cache.pop(key)

    def update(self, key: str, change) -> None:
        """Apply a known change to the cached value (if any): ``change(old) -> new``."""
        entry = self._loading.get(key)
        if entry is not None:
            entry[0] += 1
        value = self._cache.get(key)
        if value is not None:
            self._cache.set(key, change(value))


def _sorted_changed(values: list[str], add, remove) -> list[str]:
    """A new sorted list: ``values`` (sorted) with ``add`` inserted and ``remove`` taken out."""
    out = list(values)
    for v in remove:
        i = bisect.bisect_left(out, v)
        if i < len(out) and out[i] == v:
            del out[i]
    for v in add:
        i = bisect.bisect_left(out, v)
        if i == len(out) or out[i] != v:
            out.insert(i, v)
    return out


def _is_local(user_id: str, hostname: str) -> bool:
    try:
        return ids.get_domain(user_id) == hostname
    except ValueError:
        return False


def _depth(event: Event) -> int:
    d = event.depth
    return d if isinstance(d, int) and not isinstance(d, bool) else 0


def _auth_order(events: Mapping[str, Event]) -> list[Event]:
    """``events`` with every event after its auth events that are in the batch (and, in v12, after
    its room's create event) (Kahn's algorithm; events on an auth cycle come last, in ID order)."""
    waiting = {eid: {a for a in ev.auth_event_ids if a in events and a != eid} for eid, ev in events.items()}
    for eid, ev in events.items():  # v12: the create event is not cited, yet every event needs it
        if ev.room_version.room_id_from_create_event and isinstance(ev.room_id, str):
            create_id = "$" + ev.room_id[1:]
            if create_id in events and create_id != eid:
                waiting[eid].add(create_id)
    dependents: dict[str, list[str]] = {eid: [] for eid in events}
    for eid, deps in waiting.items():
        for d in deps:
            dependents[d].append(eid)
    ready = sorted(eid for eid, deps in waiting.items() if not deps)
    out: list[Event] = []
    done: set[str] = set()
    while ready:
        eid = ready.pop()
        out.append(events[eid])
        done.add(eid)
        for child in dependents[eid]:
            waiting[child].discard(eid)
            if not waiting[child]:
                ready.append(child)
    out.extend(events[eid] for eid in sorted(events) if eid not in done)
    return out
