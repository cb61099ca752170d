"""Third-party invites: turning an identity server's signed binding into an invite event.

server-server-api.md "Third-party invites" (third_party_invite.yaml), client-server-api
"Third-party invites" (m.room.third_party_invite); the check of the ``signed`` block against the
public keys of the room's ``m.room.third_party_invite`` event is the member auth rule "invite 1"
(homeserver/protocol/event_auth.py ``_check_third_party_invite``), run by the pipeline.

``hs.get(ThirdPartyInviteHandler)``:

* ``on_exchange(origin, room_id, body)`` — resident side of ``PUT
  /exchange_third_party_invite/{roomId}``: the invitee's server asks us (in the room) to issue the
  invite. The partial ``m.room.member`` event is checked, given the ``display_name`` of the
  ``m.room.third_party_invite`` event and sent through the pipeline as its ``sender`` (who sent
  that event); failing the auth rules is 403; the invite goes to the invitee's server with
  invites v2 like any invite of a remote user.
* ``exchange(room_id, sender, target, signed)`` — invited side: issue the invite ourselves when
  we are in the room, else ask a server of the room (the sender's, then the room ID's).
* ``on_bind(body)`` — ``PUT /3pid/onbind``: an identity server tells us one of our users bound a
  third-party identifier with pending invites; each one is exchanged. uzel trusts no identity
  server by configuration: the signed blocks prove themselves through the auth rules.
"""
from __future__ import annotations

import logging
from typing import Any

from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param, not_found
from homeserver.protocol import ids
from homeserver.rooms.pipeline import RoomEventService

from .acl import ServerAclChecker
from .events import FED_V1, path_id

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
#: Invites handled in one /3pid/onbind call.
MAX_INVITES_PER_BIND = 100


class ThirdPartyInviteHandler:
    def __init__(self, hs):
        self.hs = hs
        self.events: RoomEventService = hs.get(RoomEventService)

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    def _is_mine(self, user_id: str) -> bool:
        try:
            return ids.get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    # --- resident side -----------------------------------------------------------------------------
    async def on_exchange(self, origin: str, room_id: str, body: Any) -> dict:
        """third_party_invite.yaml PUT /exchange_third_party_invite/{roomId}: 400 for a malformed
        partial event, 404 when we are not in the room, 403 when ``origin`` is not the invitee's
        server, is denied by the room's ACL, or the invite fails the auth rules."""
        sender, target, signed = parse_partial_invite(body, room_id)
        if _domain(target) != origin:
            raise forbidden("Only the invitee's server may exchange a third-party invite")
        await self._check_in_room(room_id)
        await self.hs.get(ServerAclChecker).check(origin, room_id)
        await self.issue(room_id, sender, target, signed)
        return {}

    async def _check_in_room(self, room_id: str) -> None:
        if await self.events.get_room_version(room_id) is None:
            raise not_found("Unknown room")
        members = await self.events.get_joined_members(room_id)
        if not any(self._is_mine(m) for m in members):
            raise not_found("This server is not in the room")

    async def issue(self, room_id: str, sender: str, target: str, signed: dict) -> None:
        """Send the invite of ``target`` as ``sender`` with ``signed`` (we are in the room)."""
        token = signed.get("token")
        invite_event = await self.events.get_current_state_event(room_id, THIRD_PARTY_INVITE, token)
        if invite_event is None:
            raise forbidden("No m.room.third_party_invite event for this token")
        display_name = invite_event.content.get("display_name")
        content = {"membership": "invite",
                   "third_party_invite": {"display_name": display_name if isinstance(display_name, str) else "",
                                          "signed": signed}}
        before_persist = None
        if not self._is_mine(target):
            from .membership import FederationMembershipHandler
            before_persist = self.hs.get(FederationMembershipHandler).remote_invite
        await self.events.create_and_send_event(room_id, MEMBER, content, sender, target,
                                                before_persist=before_persist)

    # --- invited side ------------------------------------------------------------------------------
    async def exchange(self, room_id: str, sender: str, target: str, signed: dict) -> None:
        """Have the invite of our user ``target`` issued: by us when we are in the room, else by
        a server of the room (the invite's sender's, then the room ID's)."""
        members = await self.events.get_joined_members(room_id) \
            if await self.events.get_room_version(room_id) is not None else []
        if any(self._is_mine(m) for m in members):
            await self.issue(room_id, sender, target, signed)
            return
        from ..client import FederationError, FederationUnreachable
        servers = [s for s in dict.fromkeys([_domain(sender), _domain(room_id)]) if s and s != self.hs.hostname]
        body = {"type": MEMBER, "room_id": room_id, "sender": sender, "state_key": target,
                "content": {"membership": "invite", "third_party_invite": {"display_name": "", "signed": signed}}}
        last: MatrixError | None = None
        for server in servers:
            try:
                await self.client.put_json(server, f"{FED_V1}/exchange_third_party_invite/{path_id(room_id)}", body)
                return
            except FederationError as e:
                code = e.code if 400 <= e.code < 500 else 502
                last = MatrixError(code, e.errcode or "M_UNKNOWN", e.msg or "The room's server refused the invite")
            except FederationUnreachable as e:
                last = MatrixError(502, "M_UNKNOWN", f"{server} is unreachable: {e.reason}")
        raise last or not_found("No server of the room is known")

    async def on_bind(self, body: Any) -> dict:
        """third_party_invite.yaml PUT /3pid/onbind: exchange each pending invite of ``mxid``
        (one of our users); the first refusal is the answer."""
        if not isinstance(body, dict):
            raise bad_json("The body must be an object")
        mxid, invites = body.get("mxid"), body.get("invites")
        if not isinstance(mxid, str) or not ids.is_valid_user_id(mxid):
            raise missing_param("mxid must be a user ID")
        if not self._is_mine(mxid):
            raise invalid_param("mxid is not a user of this server")
        if not isinstance(invites, list):
            raise missing_param("invites must be a list")
        for invite in invites[:MAX_INVITES_PER_BIND]:
            if not isinstance(invite, dict):
                raise bad_json("each invite must be an object")
            room_id, sender, signed = invite.get("room_id"), invite.get("sender"), invite.get("signed")
            if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id) \
                    or not isinstance(sender, str) or not ids.is_valid_user_id(sender) or not isinstance(signed, dict):
                raise bad_json("each invite needs room_id, sender and signed")
            if signed.get("mxid") != mxid:
                raise invalid_param("signed.mxid must be the bound user")
            await self.exchange(room_id, sender, mxid, signed)
        return {}


def parse_partial_invite(body: Any, room_id: str) -> tuple[str, str, dict]:
    """``(sender, state_key, signed)`` of an exchange_third_party_invite body (third_party_invite.yaml);
    400 M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM otherwise."""
    if not isinstance(body, dict):
        raise bad_json("The body must be an object")
    for key in ("type", "room_id", "sender", "state_key", "content"):
        if key not in body:
            raise missing_param(f"Missing {key!r}")
    if body["type"] != MEMBER:
        raise invalid_param("type must be m.room.member")
    if body["room_id"] != room_id:
        raise invalid_param("room_id does not match the path")
    sender, target, content = body["sender"], body["state_key"], body["content"]
    if not isinstance(sender, str) or not ids.is_valid_user_id(sender):
        raise invalid_param("sender must be a user ID")
    if not isinstance(target, str) or not ids.is_valid_user_id(target):
        raise invalid_param("state_key must be a user ID")
    if not isinstance(content, dict) or content.get("membership") != "invite":
        raise invalid_param("content.membership must be invite")
    tpi = content.get("third_party_invite")
    if not isinstance(tpi, dict) or not isinstance(tpi.get("signed"), dict):
        raise missing_param("content.third_party_invite.signed is required")
    signed = tpi["signed"]
    if not isinstance(signed.get("token"), str) or not isinstance(signed.get("mxid"), str) \
            or not isinstance(signed.get("signatures"), dict):
        raise invalid_param("signed needs mxid, token and signatures")
    if signed["mxid"] != target:
        raise invalid_param("signed.mxid must be the state_key")
    return sender, target, signed


def _domain(value: str | None) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return ids.get_domain(value)
    except ValueError:
        return None
