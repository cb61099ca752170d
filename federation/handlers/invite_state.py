"""Checking the ``invite_room_state`` of an invite another server sends us (invites-v2.yaml,
spec v1.16 "m.room.create and format requirements"): in room versions whose record says
``strict_invite_room_state`` (v12+, where the spec says SHOULD) it must be full PDUs of the room,
including ``m.room.create``, each correctly signed — else 400 M_MISSING_PARAM (absent) or
M_INVALID_PARAM. Older room versions keep the lenient reading (entries that look like stripped
state are kept, others dropped: servers before v1.16 send stripped events).
"""
from __future__ import annotations

from typing import Any

from homeserver.http.errors import MatrixError
from homeserver.protocol.pdu import InviteStateError, parse_invite_room_state
from homeserver.protocol.room_versions import RoomVersion

from .events import FederationEventHandler, PduRejected


async def check_invite_room_state(fed_events: FederationEventHandler, rv: RoomVersion, room_id: str,
                                  raw: Any) -> None:
    """Raise 400 when ``raw`` fails the checks this room version asks for (module docstring)."""
    if not rv.strict_invite_room_state:
        return
    try:
        events = parse_invite_room_state(raw, room_id, rv)
    except InviteStateError as e:
        raise MatrixError(400, e.errcode, str(e)) from None
    for event in events:
        try:
            await fed_events.check_signatures(event)
        except PduRejected as e:
            raise MatrixError(400, "M_INVALID_PARAM", f"invite_room_state: {e}") from None
