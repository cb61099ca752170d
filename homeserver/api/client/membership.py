"""Room membership endpoints (client-server-api "Room membership": joining.yaml, inviting.yaml,
leaving.yaml, kicking.yaml, banning.yaml, knocking.yaml, list_joined_rooms.yaml) and the member
lists of rooms.yaml."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.profile import ProfileService
from homeserver.http.body import optional_str
from homeserver.http.errors import MatrixError, invalid_param
from homeserver.rooms.client_rooms import ClientRoomService
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.serialize import EventSerializer

from .room_common import check_room_id, required_user_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    membership = hs.get(MembershipService)
    rooms = hs.get(ClientRoomService)
    events = hs.get(RoomEventService)
    serializer = hs.get(EventSerializer)
    hs.get(ProfileService).on_profile_changed.append(membership.on_profile_changed)

    def _aliases():
        from homeserver.directory.aliases import AliasService
        return hs.get(AliasService)

    async def _resolve(request, room_id_or_alias: str) -> tuple[str, list[str]]:
        # v1.14 (MSC4213) removed ``server_name`` for ``via``; old clients' server_name is still
        # honoured when they send no via (as Synapse does).
        servers = list(request.args("via")) or list(request.args("server_name"))
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await _aliases().resolve(room_id_or_alias)
            return room_id, list(dict.fromkeys(alias_servers + servers))
        if room_id_or_alias.startswith("!"):
            return check_room_id(room_id_or_alias), servers
        raise invalid_param(f"{room_id_or_alias!r} is not a room ID or alias")

    async def join_id_or_alias(request, roomIdOrAlias):
        """POST /_matrix/client/v3/join/{roomIdOrAlias}?via=…: join by ID or alias (aliases of
        other servers and rooms we are not in go through federation: 404 "No known servers"
        without it). → ``{"room_id"}``."""
        requester = await auth.get_requester(request, allow_guest=True)
        body = request.json(allow_empty=True)
        reason = optional_str(body, "reason")
        room_id, servers = await _resolve(request, roomIdOrAlias)
        await membership.update_membership(requester, requester.user_id, room_id, "join", reason=reason,
                                           servers=servers)
        return 200, {"room_id": room_id}

    async def join_room(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/join → ``{"room_id"}``; 403 when the join rules refuse."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        reason = optional_str(request.json(allow_empty=True), "reason")
        await membership.update_membership(requester, requester.user_id, roomId, "join", reason=reason)
        return 200, {"room_id": roomId}

    async def knock(request, roomIdOrAlias):
        """POST /_matrix/client/v3/knock/{roomIdOrAlias} → ``{"room_id"}``; 403 when the room does
        not allow knocking or the user is joined, invited or banned; 404 for unknown rooms."""
        requester = await auth.get_requester(request)
        reason = optional_str(request.json(allow_empty=True), "reason")
        room_id, servers = await _resolve(request, roomIdOrAlias)
        await membership.update_membership(requester, requester.user_id, room_id, "knock", reason=reason,
                                           servers=servers)
        return 200, {"room_id": room_id}

    async def invite(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/invite ``{user_id, reason?}`` → ``{}`` (also when
        already invited); 403 when not allowed or the user is joined/banned; third-party invites
        (id_server, medium, address) need an identity server: 400 M_SERVER_NOT_TRUSTED."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        body = request.json()
        if "user_id" not in body and all(k in body for k in ("id_server", "medium", "address")):
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED",
                              "Third-party invites need an identity server; this server trusts none")
        target = required_user_id(body)
        await membership.update_membership(requester, target, roomId, "invite",
                                           reason=optional_str(body, "reason"))
        return 200, {}

    def _moderation(action: str):
        async def handler(request, roomId):
            requester = await auth.get_requester(request)
            check_room_id(roomId)
            body = request.json()
            target = required_user_id(body)
            await membership.update_membership(requester, target, roomId, action,
                                               reason=optional_str(body, "reason"))
            return 200, {}
        handler.__doc__ = (f"POST /_matrix/client/v3/rooms/{{roomId}}/{action} ``{{user_id, reason?}}`` → ``{{}}``;"
                           " 403 without the power level (kicking.yaml, banning.yaml).")
        return handler

    async def leave(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/leave ``{reason?}`` → ``{}``: leave, reject an
        invite or retract a knock."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        reason = optional_str(request.json(allow_empty=True), "reason")
        await membership.update_membership(requester, requester.user_id, roomId, "leave", reason=reason)
        return 200, {}

    async def forget(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/forget → ``{}``; 400 M_UNKNOWN while still in the room."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        await membership.forget(requester, roomId)
        return 200, {}

    async def joined_rooms(request):
        """GET /_matrix/client/v3/joined_rooms → ``{"joined_rooms": [...]}``."""
        requester = await auth.get_requester(request, allow_guest=True)
        return 200, {"joined_rooms": await events.get_rooms_for_user(requester.user_id, ("join",))}

    async def members(request, roomId):
        """GET /_matrix/client/v3/rooms/{roomId}/members?at&membership&not_membership → ``{"chunk"}``;
        403 for users who never were members (rooms.yaml)."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        found = await rooms.get_members(requester, roomId, at=request.arg("at"),
                                        membership=request.arg("membership"),
                                        not_membership=request.arg("not_membership"))
        chunk = await serializer.serialize_events(found, user_id=requester.user_id, device_id=requester.device_id)
        return 200, {"chunk": chunk}

    async def joined_members(request, roomId):
        """GET /_matrix/client/v3/rooms/{roomId}/joined_members → ``{"joined": {user: {display_name,
        avatar_url}}}``; 403 unless joined."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        return 200, {"joined": await rooms.get_joined_members(requester, roomId)}

    router.add_client("POST", "/join/{roomIdOrAlias}", join_id_or_alias)
    router.add_client("POST", "/rooms/{roomId}/join", join_room)
    router.add_client("POST", "/knock/{roomIdOrAlias}", knock)
    router.add_client("POST", "/rooms/{roomId}/invite", invite)
    router.add_client("POST", "/rooms/{roomId}/leave", leave)
    router.add_client("POST", "/rooms/{roomId}/forget", forget)
    for action in ("kick", "ban", "unban"):
        router.add_client("POST", f"/rooms/{{roomId}}/{action}", _moderation(action))
    router.add_client("GET", "/joined_rooms", joined_rooms)
    router.add_client("GET", "/rooms/{roomId}/members", members)
    router.add_client("GET", "/rooms/{roomId}/joined_members", joined_members)
