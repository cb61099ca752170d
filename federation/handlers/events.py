"""Receiving PDUs from other servers and fetching the events they depend on.

server-server-api.md "Checks performed on receipt of a PDU" (steps 1–3 here, 4–6 in the one
pipeline, :meth:`RoomEventService.handle_remote_event`), "Validating hashes and signatures on
received events", "Backfilling and retrieving missing events" and "Retrieving events".

``hs.get(FederationEventHandler)``:

* ``check_pdu(pdu, room_version) -> Event`` — step 1 (format, homeserver/protocol/pdu.py) and
  step 2 (signatures of the servers that must sign, checked with the keyring; from v5 with keys
  valid at the event's ``origin_server_ts``). Raises :class:`PduRejected`. A content-hash mismatch
  (step 3) is handled by the pipeline, which processes the redacted form.
* ``receive_pdu(origin, event)`` — the whole processing of a PDU from ``/send``: when prev_events
  are unknown, pull them with ``POST /get_missing_events`` (up to :data:`MISSING_EVENTS_LIMIT`
  events); when gaps remain, fetch the state after each missing prev event with
  ``GET /state_ids`` (+ ``/event`` or ``/state`` for the events we lack), resolve and pass it as
  ``state_before``; unknown auth events are fetched and stored as outliers; then the pipeline.
* ``fetch_outliers(origin, room_id, room_version, event_ids)`` — fetch events and their auth
  chains, check them and store them as outliers (``handle_remote_outliers``).
"""
from __future__ import annotations

import logging
from typing import Iterable
from urllib.parse import quote

from twisted.internet import defer

from homeserver.protocol.events import Event
from homeserver.protocol.pdu import PduFormatError, parse_pdu, servers_that_must_sign
from homeserver.protocol.redaction import redact
from homeserver.protocol.room_versions import RoomVersion
from homeserver.protocol.signing import SignatureError
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.state import MissingEventsError, RoomStateService
from homeserver.storage.events_store import EventsStore

from ..keyring import Keyring

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"
MISSING_EVENTS_LIMIT = 10
#: More missing state events than this and ``/state`` is used instead of one ``/event`` each.
USE_STATE_ENDPOINT_ABOVE = 20
FETCH_CONCURRENCY = 10
MAX_AUTH_FETCH_ROUNDS = 30


class PduRejected(Exception):
    """A PDU failed the format or signature checks (it is dropped, not stored)."""


def path_id(value: str) -> str:
    return quote(value, safe="")


class FederationEventHandler:
    def __init__(self, hs):
        self.hs = hs
        self.keyring: Keyring = hs.get(Keyring)
        self.events: RoomEventService = hs.get(RoomEventService)
        self.store: EventsStore = hs.get(EventsStore)
        self.state: RoomStateService = hs.get(RoomStateService)

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    # --- steps 1-2 -------------------------------------------------------------------------------
    async def check_pdu(self, pdu, rv: RoomVersion, *, room_id: str | None = None) -> Event:
        """Format and signature checks; ``room_id`` (when given) must be the event's room."""
        try:
            event = parse_pdu(pdu, rv)
        except PduFormatError as e:
            raise PduRejected(f"invalid event: {e}") from None
        if room_id is not None and event.room_id != room_id:
            raise PduRejected(f"event {event.event_id} is not in room {room_id}")
        await self.check_signatures(event)
        return event

    async def check_signatures(self, event: Event) -> None:
        rv = event.room_version
        redacted = redact(event.pdu, rv)
        valid_at = event.origin_server_ts if rv.enforce_key_validity else None
        for server in sorted(servers_that_must_sign(event)):
            try:
                await self.keyring.verify_json_for_server(server, redacted, valid_at_ts=valid_at)
            except SignatureError as e:
                raise PduRejected(f"bad signature from {server} on {event.event_id}: {e}") from None

    # --- fetching --------------------------------------------------------------------------------
    async def fetch_event(self, destination: str, event_id: str, rv: RoomVersion, room_id: str) -> Event | None:
        """``GET /event/{eventId}`` from ``destination``, checked; None when unavailable or bad."""
        from ..client import FederationError, FederationUnreachable
        try:
            resp = await self.client.get_json(destination, f"{FED_V1}/event/{path_id(event_id)}")
        except (FederationError, FederationUnreachable) as e:
            logger.info("fetching %s from %s failed: %s", event_id, destination, e)
            return None
        pdus = resp.get("pdus")
        if not isinstance(pdus, list) or not pdus:
            return None
        try:
            event = await self.check_pdu(pdus[0], rv, room_id=room_id)
        except PduRejected as e:
            logger.info("%s sent a bad copy of %s: %s", destination, event_id, e)
            return None
        if event.event_id != event_id:
            logger.info("%s answered %s with %s", destination, event_id, event.event_id)
            return None
        return event

    async def _fetch_many(self, destination: str, event_ids: Iterable[str], rv: RoomVersion,
                          room_id: str) -> dict[str, Event]:
        ids_ = list(event_ids)
        out: dict[str, Event] = {}
        for start in range(0, len(ids_), FETCH_CONCURRENCY):
            chunk = ids_[start:start + FETCH_CONCURRENCY]
            results = await defer.gatherResults(
                [defer.ensureDeferred(self.fetch_event(destination, e, rv, room_id)) for e in chunk],
                consumeErrors=True)
            for ev in results:
                if ev is not None:
                    out[ev.event_id] = ev
        return out

    async def check_pdus(self, pdus: Iterable, rv: RoomVersion, room_id: str) -> dict[str, Event]:
        """Check many PDUs (a /state or send_join answer); bad ones are dropped with a log line."""
        out: dict[str, Event] = {}
        for pdu in pdus:
            try:
                ev = await self.check_pdu(pdu, rv, room_id=room_id)
            except PduRejected as e:
                logger.info("dropping a PDU: %s", e)
                continue
            out[ev.event_id] = ev
        return out

    async def store_outliers(self, destination: str, room_id: str, rv: RoomVersion,
                             events: dict[str, Event]) -> dict[str, Event]:
        """Store checked events as outliers, first fetching auth events neither stored nor given."""
        events = dict(events)
        for _ in range(MAX_AUTH_FETCH_ROUNDS):
            referenced = {a for ev in events.values() for a in ev.auth_event_ids} - set(events)
            known = await self.store.get_event_metas(referenced)
            missing = referenced - set(known)
            if not missing:
                break
            fetched = await self._fetch_many(destination, sorted(missing), rv, room_id)
            if not fetched:
                break
            events.update(fetched)
        try:
            return await self.events.handle_remote_outliers(events.values())
        except MissingEventsError as e:
            # Keep what can be kept: drop events whose auth events are nowhere to be found.
            logger.info("storing outliers from %s: %s", destination, e)
            missing = set(e.event_ids)
            keep = _without_dependents(events, missing)
            if not keep or len(keep) == len(events):
                return {}
            return await self.events.handle_remote_outliers(keep.values())

    async def fetch_outliers(self, destination: str, room_id: str, rv: RoomVersion,
                             event_ids: Iterable[str]) -> dict[str, Event]:
        """Fetch the events among ``event_ids`` we do not have (and their auth chains) from
        ``destination`` and store them as outliers. Returns every event of ``event_ids`` we now
        hold, stored ones included."""
        wanted = list(dict.fromkeys(event_ids))
        known = await self.store.get_event_metas(wanted)
        missing = [e for e in wanted if e not in known]
        if missing:
            fetched = await self._fetch_many(destination, missing, rv, room_id)
            if fetched:
                await self.store_outliers(destination, room_id, rv, fetched)
        return await self.store.get_events(wanted, allow_rejected=True)

    # --- /send ------------------------------------------------------------------------------------
    async def receive_pdu(self, origin: str, event: Event) -> Event:
        """Process a PDU pushed to us by ``origin`` (already checked with :meth:`check_pdu`)."""
        return await self._process(origin, event, pull_missing=True)

    async def _process(self, origin: str, event: Event, *, pull_missing: bool) -> Event:
        meta = (await self.store.get_event_metas([event.event_id])).get(event.event_id)
        if meta is not None and not meta.outlier:
            return await self.store.get_event(event.event_id, allow_rejected=True)
        missing = await self._prevs_without_state(event)
        if missing and pull_missing:
            await self._pull_missing_events(origin, event)
            missing = await self._prevs_without_state(event)
        state_before = None
        if missing:
            state_before = await self._state_before(origin, event, missing)
        return await self._handle(origin, event, state_before)

    async def _prevs_without_state(self, event: Event) -> list[str]:
        prevs = event.prev_event_ids
        metas = await self.store.get_event_metas(prevs)
        return [p for p in prevs if p not in metas or metas[p].state_group is None]

    async def _handle(self, origin: str, event: Event, state_before) -> Event:
        rv = event.room_version
        for _ in range(3):
            try:
                return await self.events.handle_remote_event(event, state_before=state_before)
            except MissingEventsError as e:
                if e.kind == "prev_events" and state_before is None:
                    state_before = await self._state_before(origin, event, e.event_ids)
                    continue
                fetched = await self.fetch_outliers(origin, event.room_id, rv, e.event_ids)
                if not set(e.event_ids) <= set(fetched):
                    raise PduRejected(f"could not fetch the {e.kind} of {event.event_id} from {origin}") from None
        raise PduRejected(f"could not complete the {event.event_id}'s missing events")

    async def _pull_missing_events(self, origin: str, event: Event) -> None:
        """``POST /get_missing_events``: the events between our forward extremities and
        ``event``, processed oldest first (each without pulling further)."""
        from ..client import FederationError, FederationUnreachable
        room_id, rv = event.room_id, event.room_version
        snap = await self.state.get_snapshot(room_id)
        earliest = sorted(snap.extremities) if snap is not None else []
        body = {"earliest_events": earliest, "latest_events": [event.event_id], "limit": MISSING_EVENTS_LIMIT,
                "min_depth": 0}
        try:
            resp = await self.client.post_json(origin, f"{FED_V1}/get_missing_events/{path_id(room_id)}", body)
        except (FederationError, FederationUnreachable) as e:
            logger.info("get_missing_events for %s from %s failed: %s", event.event_id, origin, e)
            return
        raw = resp.get("events")
        if not isinstance(raw, list):
            return
        pulled = await self.check_pdus(raw[:MISSING_EVENTS_LIMIT * 2], rv, room_id)
        pulled.pop(event.event_id, None)
        for ev in sorted(pulled.values(), key=lambda e: (e.depth, e.origin_server_ts, e.event_id)):
            try:
                await self._process(origin, ev, pull_missing=False)
            except (PduRejected, MissingEventsError) as e:
                logger.info("pulled event %s not processed: %s", ev.event_id, e)

    async def _state_before(self, origin: str, event: Event, missing: list[str]) -> dict:
        """The state before ``event`` when some prev events have no known state: the state after
        each prev event (asked from ``origin`` for the missing ones), resolved."""
        rv, room_id = event.room_version, event.room_id
        maps = []
        for prev in dict.fromkeys(event.prev_event_ids):
            if prev in missing:
                maps.append(await self.remote_state_after(origin, room_id, rv, prev))
            else:
                state = await self.events.get_state_ids_at(prev)
                if state is None:
                    maps.append(await self.remote_state_after(origin, room_id, rv, prev))
                else:
                    maps.append(state)
        if len(maps) == 1:
            return dict(maps[0])
        return await self.state.resolve(rv, maps)

    async def remote_state_after(self, origin: str, room_id: str, rv: RoomVersion, event_id: str) -> dict:
        """The state after ``event_id`` as ``origin`` sees it (``/state_ids`` is the state
        before it), with every event in it stored (as outliers where new)."""
        return await self._remote_state(origin, room_id, rv, event_id, after=True)

    async def remote_state_before(self, origin: str, room_id: str, rv: RoomVersion, event_id: str) -> dict:
        """The state before ``event_id`` as ``origin`` sees it (its ``/state_ids`` answer), with
        every event in it stored (as outliers where new)."""
        return await self._remote_state(origin, room_id, rv, event_id, after=False)

    async def _remote_state(self, origin: str, room_id: str, rv: RoomVersion, event_id: str, *,
                            after: bool) -> dict:
        from ..client import FederationError, FederationUnreachable
        try:
            resp = await self.client.get_json(origin, f"{FED_V1}/state_ids/{path_id(room_id)}",
                                              {"event_id": event_id})
        except (FederationError, FederationUnreachable) as e:
            raise PduRejected(f"cannot get the state at {event_id} from {origin}: {e}") from None
        pdu_ids = resp.get("pdu_ids")
        chain_ids = resp.get("auth_chain_ids")
        if not isinstance(pdu_ids, list) or not isinstance(chain_ids, list) \
                or not all(isinstance(x, str) for x in pdu_ids + chain_ids):
            raise PduRejected(f"{origin} sent a malformed /state_ids answer")
        wanted = list(dict.fromkeys(pdu_ids + chain_ids + ([event_id] if after else [])))
        known = await self.store.get_event_metas(wanted)
        missing = [e for e in wanted if e not in known]
        if len(missing) > USE_STATE_ENDPOINT_ABOVE:
            await self._fetch_state_bulk(origin, room_id, rv, event_id)
        events = await self.fetch_outliers(origin, room_id, rv, wanted)
        state: dict = {}
        for eid in pdu_ids:
            ev = events.get(eid)
            if ev is not None and ev.is_state() and ev.rejected_reason is None:
                state[ev.state_tuple] = eid
        if not after:
            return state
        ev = events.get(event_id)
        if ev is None:
            raise PduRejected(f"cannot get {event_id} from {origin}")
        if ev.is_state() and ev.rejected_reason is None:
            state[ev.state_tuple] = event_id
        return state

    async def _fetch_state_bulk(self, origin: str, room_id: str, rv: RoomVersion, event_id: str) -> None:
        from ..client import FederationError, FederationUnreachable
        try:
            resp = await self.client.get_json(origin, f"{FED_V1}/state/{path_id(room_id)}", {"event_id": event_id})
        except (FederationError, FederationUnreachable) as e:
            logger.info("/state at %s from %s failed: %s", event_id, origin, e)
            return
        pdus = resp.get("pdus") if isinstance(resp.get("pdus"), list) else []
        chain = resp.get("auth_chain") if isinstance(resp.get("auth_chain"), list) else []
        events = await self.check_pdus(list(chain) + list(pdus), rv, room_id)
        if events:
            await self.store_outliers(origin, room_id, rv, events)


def _without_dependents(events: dict[str, Event], missing: set[str]) -> dict[str, Event]:
    """``events`` minus those whose auth chain (within the batch) reaches a ``missing`` event."""
    bad = set(missing)
    changed = True
    while changed:
        changed = False
        for eid, ev in events.items():
            if eid not in bad and any(a in bad for a in ev.auth_event_ids):
                bad.add(eid)
                changed = True
    return {eid: ev for eid, ev in events.items() if eid not in bad}
