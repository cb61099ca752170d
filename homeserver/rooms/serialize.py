"""Serving events to clients: the one place that turns a stored PDU into the client event format.

Spec: client-server-api "Room event format" (definitions/client_event.yaml: ``unsigned.age``,
``prev_content``, ``replaces_state``, ``redacted_because``, ``transaction_id``, ``membership``),
"Redactions" (a redacted event is served in its redacted form with the redaction under
``unsigned.redacted_because``), "Transaction identifiers" (``transaction_id`` only for the device
that sent the event), "Stripped state".

* :func:`serialize_event` is pure: everything it shows is passed in.
* :class:`EventSerializer` gathers those extras for a batch of events (which redactions apply,
  the requester's transaction IDs, the previous content of state events) and calls it. /event,
  /state, /members, /messages, /context and /sync all go through it.

Transaction IDs are stored per (user, device) with the endpoint folded in (:func:`txn_key`), so
the same ``txnId`` on two endpoints or two rooms makes two requests (spec: "the path of the HTTP
request is the same").
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import get_named_level, get_user_power_level
from homeserver.protocol.redaction import redact
from homeserver.protocol.room_versions import EventFormat
from homeserver.storage.events_store import EventsStore
from homeserver.storage.room_extras_store import RoomExtrasStore
from homeserver.storage.state_store import StateStore

_TXN_SEP = "\x1f"
#: unsigned keys of a PDU that clients are shown (set by the inviting/knocking server).
_PASSTHROUGH_UNSIGNED = ("invite_room_state", "knock_room_state")


def txn_key(endpoint: str, room_id: str, detail: str, txn_id: str) -> str:
    """The stored transaction key of a client request (``send``/``redact``, the room, the event
    type or redacted event ID, and the client's ``txnId``)."""
    return _TXN_SEP.join((endpoint, room_id, detail, txn_id))


def client_txn_id(stored: str) -> str:
    """The client's ``txnId`` out of a stored transaction key."""
    parts = stored.split(_TXN_SEP, 3)
    return parts[3] if len(parts) == 4 else stored


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists and immutable scalars, as parsed from an event):
    what ``copy.deepcopy`` gives, several times faster (served events are copied so that no
    caller can change the cached PDU)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def serialize_event(event: Event, now_ms: int, *, redacted_because: Event | None = None,
                    transaction_id: str | None = None, prev_content: Mapping[str, Any] | None = None,
                    replaces_state: str | None = None, membership: str | None = None,
                    include_room_id: bool = True) -> dict:
    """``event`` in the client format (ClientEvent, or ClientEventWithoutRoomID when
    ``include_room_id`` is false).

    ``redacted_because``: the redaction that applies; the event is then shown redacted (room
    version's rules) with the redaction serialized under ``unsigned.redacted_because``.
    ``transaction_id``: the client's txnId, to pass only to the device that sent the event.
    ``prev_content``/``replaces_state``: the state event this one replaced. ``membership``: the
    requesting user's membership at the event (optional ``unsigned.membership``).
    """
    pdu = event.pdu
    rv = event.room_version
    if redacted_because is not None:
        pdu = redact(pdu, rv)
    content = pdu.get("content")
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": pdu.get("type"),
        "sender": pdu.get("sender"),
        "origin_server_ts": pdu.get("origin_server_ts"),
        "content": copy_json(content) if isinstance(content, dict) else {},
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if "state_key" in pdu:
        out["state_key"] = pdu["state_key"]
    if event.type == "m.room.redaction" and redacted_because is None:
        redacts = event.redacts
        if isinstance(redacts, str):
            # room_send.yaml: clients may find `redacts` at the top level (v1–v10) or in content
            # (v11+); serve both so either kind of client reads it.
            out["redacts"] = redacts
            if rv.redacts_in_content:
                out["content"].setdefault("redacts", redacts)
    unsigned: dict[str, Any] = {}
    ts = pdu.get("origin_server_ts")
    if isinstance(ts, int) and not isinstance(ts, bool):
        unsigned["age"] = max(0, now_ms - ts)
    pdu_unsigned = event.unsigned if isinstance(event.unsigned, dict) else {}
    for key in _PASSTHROUGH_UNSIGNED:
        if key in pdu_unsigned and redacted_because is None:
            unsigned[key] = copy_json(pdu_unsigned[key])
    if prev_content is not None:
        unsigned["prev_content"] = copy_json(dict(prev_content))
    if replaces_state is not None:
        unsigned["replaces_state"] = replaces_state
    if redacted_because is not None:
        unsigned["redacted_because"] = serialize_event(redacted_because, now_ms,
                                                       include_room_id=include_room_id)
    if transaction_id is not None:
        unsigned["transaction_id"] = transaction_id
    if membership is not None:
        unsigned["membership"] = membership
    if unsigned:
        out["unsigned"] = unsigned
    return out


def strip_event(event: Event) -> dict:
    """The stripped state form of a state event (client-server-api "Stripped state")."""
    return {"type": event.type, "state_key": event.state_key, "sender": event.sender,
            "content": copy_json(event.content) if isinstance(event.content, dict) else {}}


#: client-server-api "Stripped state": what invitees and knockers are shown of the room.
STRIPPED_STATE_TYPES = ("m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules",
                        "m.room.canonical_alias", "m.room.encryption")


def redaction_applies(redaction: Event, event: Event, redactor_level: int | float | None = None,
                      redact_level: int | None = None) -> bool:
    """Whether a stored redaction is applied to ``event`` when serving it (rooms/v3.md
    "Handling redactions": from v3 the auth rules no longer check the redacter, so servers apply
    a redaction only if its sender is on the original sender's server or had the ``redact``
    power level). ``redactor_level``/``redact_level``: at the redaction (None: unknown)."""
    if redaction.room_id != event.room_id:
        return False
    if event.type == "m.room.create":
        return False
    if event.room_version.event_format == EventFormat.V1:
        return True  # v1/v2: the auth rules already checked the redaction
    try:
        if ids.get_domain(redaction.sender) == ids.get_domain(event.sender):
            return True
    except ValueError:
        return False
    return redactor_level is not None and redact_level is not None and redactor_level >= redact_level


class EventSerializer:
    """Batch serialization with the extras looked up (see module docstring)."""

    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(EventsStore)
        self.state_store = hs.get(StateStore)
        self.extras = hs.get(RoomExtrasStore)

    async def serialize_events(self, events: Sequence[Event], *, user_id: str | None = None,
                               device_id: str | None = None, include_room_id: bool = True,
                               with_prev_content: bool = True,
                               memberships: Mapping[str, str] | None = None,
                               redaction_ids: Mapping[str, list[str]] | None = None,
                               txn_ids: Mapping[str, str] | None = None) -> list[dict]:
        """Serialize ``events`` (order kept) for the client ``user_id``/``device_id``:
        redactions applied, ``transaction_id`` for the events that device sent, ``prev_content``
        and ``replaces_state`` for state events (``with_prev_content``), ``membership`` from
        ``memberships`` (event ID → the user's membership at it) when given.

        ``redaction_ids`` / ``txn_ids``: what RoomExtrasStore.get_redaction_ids / get_txn_ids
        answer for (a superset of) these events and this device, when the caller already read
        it (/messages reads them with the page, homeserver/storage/history_store.py)."""
        now = self.hs.clock_ms()
        redactions = await self.applicable_redactions(events, redaction_ids=redaction_ids)
        txns: dict[str, str] = {}
        if user_id is not None:
            own = [e.event_id for e in events if e.sender == user_id]
            if own and txn_ids is not None:
                txns = {e: txn_ids[e] for e in own if e in txn_ids}
            elif own:
                txns = await self.extras.get_txn_ids(own, user_id, device_id or "")
        prev: dict[str, tuple[str, dict]] = {}
        if with_prev_content:
            prev = await self.previous_states([e for e in events if e.is_state()])
        out = []
        for e in events:
            replaced = prev.get(e.event_id)
            out.append(serialize_event(
                e, now, redacted_because=redactions.get(e.event_id),
                transaction_id=client_txn_id(txns[e.event_id]) if e.event_id in txns else None,
                prev_content=replaced[1] if replaced else None,
                replaces_state=replaced[0] if replaced else None,
                membership=memberships.get(e.event_id) if memberships else None,
                include_room_id=include_room_id))
        return out

    async def serialize_one(self, event: Event, **kwargs) -> dict:
        return (await self.serialize_events([event], **kwargs))[0]

    async def applicable_redactions(self, events: Iterable[Event], *,
                                    redaction_ids: Mapping[str, list[str]] | None = None) -> dict[str, Event]:
        """``{event_id: the redaction event}`` for events a stored redaction applies to
        (``redaction_ids``: the stored redactions of a superset of them, when already read)."""
        events = list(events)
        if redaction_ids is not None:
            by_target = {e.event_id: redaction_ids[e.event_id] for e in events if e.event_id in redaction_ids}
        else:
            by_target = await self.extras.get_redaction_ids(e.event_id for e in events)
        if not by_target:
            return {}
        redaction_events = await self.events.get_events(r for rs in by_target.values() for r in rs)
        out: dict[str, Event] = {}
        for e in events:
            for rid in by_target.get(e.event_id, ()):
                r = redaction_events.get(rid)
                if r is None:
                    continue
                level, needed = None, None
                if not redaction_applies(r, e):
                    level, needed = await self._levels_at(r)
                if redaction_applies(r, e, level, needed):
                    out[e.event_id] = r
                    break
        return out

    async def _levels_at(self, redaction: Event) -> tuple[int | float | None, int | None]:
        meta = (await self.events.get_event_metas([redaction.event_id])).get(redaction.event_id)
        if meta is None or meta.state_group_before is None:
            return None, None
        state = await self.state_store.get_state_group(meta.state_group_before)
        keys = [("m.room.create", ""), ("m.room.power_levels", "")]
        loaded = await self.events.get_events([state[k] for k in keys if k in state])
        state_events = {k: loaded[state[k]] for k in keys if k in state and state[k] in loaded}
        return get_user_power_level(redaction.sender, state_events), get_named_level(state_events, "redact", 50)

    async def previous_states(self, state_events: Sequence[Event]) -> dict[str, tuple[str, dict]]:
        """``{event_id: (replaced event id, its content)}`` for state events that replaced an
        earlier state event (from the state before each)."""
        if not state_events:
            return {}
        metas = await self.events.get_event_metas(e.event_id for e in state_events)
        replaced: dict[str, str] = {}
        for e in state_events:
            meta = metas.get(e.event_id)
            if meta is None or meta.state_group_before is None:
                continue
            before = await self.state_store.get_state_group(meta.state_group_before)
            prev_id = before.get(e.state_tuple)
            if prev_id is not None and prev_id != e.event_id:
                replaced[e.event_id] = prev_id
        loaded = await self.events.get_events(replaced.values())
        redactions = await self.applicable_redactions(loaded.values())
        out = {}
        for eid, pid in replaced.items():
            p = loaded.get(pid)
            if p is None:
                continue
            content = redact(p.pdu, p.room_version).get("content", {}) if pid in redactions else p.content
            out[eid] = (pid, content if isinstance(content, dict) else {})
        return out
