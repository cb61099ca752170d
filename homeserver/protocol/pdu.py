"""Received PDUs: format checks and which servers must have signed them (pure, no I/O).

Sources: server-server-api.md "Checks performed on receipt of a PDU" step 1 (a valid event of its
room version) and "Validating hashes and signatures on received events" (whose signatures are
required); rooms/fragments/v1-event-format.md, v3-event-format.md, v4-event-format.md and
rooms/v12.md for the event formats; server-server-api.md "Size limits" (65536 bytes).
"""
from __future__ import annotations

from typing import Any

from . import ids
from .canonical_json import check_canonical_values, encode_canonical_json
from .events import Event
from .room_versions import EventFormat, RoomVersion

MAX_PDU_SIZE = 65536
#: Synapse refuses events citing more than these many prev/auth events; so do we.
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


class PduFormatError(ValueError):
    """The PDU is not a valid event of its room version (it is dropped)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_refs(pdu: dict, key: str, rv: RoomVersion, limit: int) -> None:
    refs = pdu.get(key)
    if not isinstance(refs, list):
        raise PduFormatError(f"{key} must be a list")
    if len(refs) > limit:
        raise PduFormatError(f"{key} lists more than {limit} events")
    for ref in refs:
        if rv.event_format == EventFormat.V1:
            # rooms/fragments/v1-event-format.md: [event_id, {"sha256": hash}]
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)
                    and isinstance(ref[1], dict)):
                raise PduFormatError(f"{key} entries must be [event_id, hashes] pairs")
            eid = ref[0]
        else:
            if not isinstance(ref, str):
                raise PduFormatError(f"{key} entries must be event IDs")
            eid = ref
        if not ids.is_valid_event_id(eid):
            raise PduFormatError(f"{key} holds an invalid event ID {eid!r}")


def parse_pdu(pdu: Any, rv: RoomVersion) -> Event:
    """The :class:`Event` for a received PDU after the format checks of step 1.

    Checks: an object of at most 65536 bytes of canonical JSON (and valid canonical values from
    v6); ``type``, ``sender`` (a user ID), ``content`` (object), ``origin_server_ts`` and ``depth``
    (integers, depth ≥ 0), ``prev_events``/``auth_events`` (lists in the room version's reference
    format), ``hashes`` and ``signatures`` (objects), ``state_key`` a string when present;
    ``room_id`` a room ID, except on v12 create events (which have none); ``event_id`` present in
    the v1 format. Raises :class:`PduFormatError`.
    """
    if not isinstance(pdu, dict):
        raise PduFormatError("PDU is not an object")
    try:
        size = len(encode_canonical_json(pdu))
        check_canonical_values(pdu, rv)
    except (ValueError, TypeError, RecursionError) as e:
        raise PduFormatError(f"PDU is not valid canonical JSON: {e}") from None
    if size > MAX_PDU_SIZE:
        raise PduFormatError(f"PDU is larger than {MAX_PDU_SIZE} bytes")
    etype = pdu.get("type")
    if not isinstance(etype, str) or not etype:
        raise PduFormatError("type must be a non-empty string")
    sender = pdu.get("sender")
    if not isinstance(sender, str) or not ids.is_valid_user_id(sender):
        raise PduFormatError("sender must be a user ID")
    if not isinstance(pdu.get("content"), dict):
        raise PduFormatError("content must be an object")
    if not _is_int(pdu.get("origin_server_ts")):
        raise PduFormatError("origin_server_ts must be an integer")
    if not _is_int(pdu.get("depth")) or pdu["depth"] < 0:
        raise PduFormatError("depth must be a non-negative integer")
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        raise PduFormatError("state_key must be a string")
    if not isinstance(pdu.get("hashes"), dict):
        raise PduFormatError("hashes must be an object")
    if not isinstance(pdu.get("signatures"), dict):
        raise PduFormatError("signatures must be an object")
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        raise PduFormatError("unsigned must be an object")
    _check_refs(pdu, "prev_events", rv, MAX_PREV_EVENTS)
    _check_refs(pdu, "auth_events", rv, MAX_AUTH_EVENTS)
    is_create = etype == "m.room.create" and pdu.get("state_key") == ""
    if rv.room_id_from_create_event and is_create:
        if "room_id" in pdu:
            raise PduFormatError("a create event has no room_id in this room version")
    elif not isinstance(pdu.get("room_id"), str) or not ids.is_valid_room_id(pdu["room_id"]):
        raise PduFormatError("room_id must be a room ID")
    if rv.event_format == EventFormat.V1:
        if not isinstance(pdu.get("event_id"), str) or not ids.is_valid_event_id(pdu["event_id"]):
            raise PduFormatError("event_id must be an event ID in this room version")
    try:
        return Event(pdu, rv)
    except (ValueError, TypeError, KeyError) as e:
        raise PduFormatError(f"cannot derive the event ID: {e}") from None


class InviteStateError(ValueError):
    """A malformed ``invite_room_state`` (``errcode`` M_MISSING_PARAM or M_INVALID_PARAM)."""

    def __init__(self, errcode: str, msg: str):
        super().__init__(msg)
        self.errcode = errcode


def parse_invite_room_state(raw: Any, room_id: str, rv: RoomVersion) -> list[Event]:
    """The events of an invite's ``invite_room_state`` (invites-v2.yaml, spec v1.16): a list of
    state events formatted for the room version (full PDUs), all in the invite's room (v12 create
    events: their derived room ID), the ``m.room.create`` event among them. Their signatures are
    the caller's to check. Raises :class:`InviteStateError`."""
    if raw is None:
        raise InviteStateError("M_MISSING_PARAM", "invite_room_state is required")
    if not isinstance(raw, list):
        raise InviteStateError("M_INVALID_PARAM", "invite_room_state must be a list of events")
    events = []
    for i, entry in enumerate(raw):
        try:
            event = parse_pdu(entry, rv)
        except PduFormatError as e:
            raise InviteStateError("M_INVALID_PARAM", f"invite_room_state[{i}] is not a valid event: {e}") from None
        if event.room_id != room_id:
            raise InviteStateError("M_INVALID_PARAM", f"invite_room_state[{i}] is not in {room_id}")
        if not event.is_state():
            raise InviteStateError("M_INVALID_PARAM", f"invite_room_state[{i}] is not a state event")
        events.append(event)
    if not any(e.type == "m.room.create" and e.state_key == "" for e in events):
        raise InviteStateError("M_INVALID_PARAM", "invite_room_state must include the m.room.create event")
    return events


def is_invite_via_third_party(event: Event) -> bool:
    return (event.type == "m.room.member" and event.membership == "invite"
            and "third_party_invite" in event.content)


def servers_that_must_sign(event: Event) -> set[str]:
    """The servers whose signatures a received event needs ("Validating hashes and signatures
    on received events"): the sender's server (not for third-party invites, whose sender is
    vouched for by the invite's token); in v1/v2 also the server in the event ID; and for
    restricted joins (v8+) the server of ``join_authorised_via_users_server``
    (rooms/v8.md, auth rule 4.3.2)."""
    out: set[str] = set()
    if not is_invite_via_third_party(event):
        out.add(ids.get_domain(event.sender))
    if event.room_version.event_format == EventFormat.V1:
        try:
            out.add(ids.get_domain(event.event_id))
        except ValueError:
            pass
    if event.room_version.restricted_join_rule and event.type == "m.room.member" \
            and event.membership == "join":
        via = event.content.get("join_authorised_via_users_server")
        if isinstance(via, str) and ids.is_valid_user_id(via):
            out.add(ids.get_domain(via))
    return out

