"""Membership handshakes, resident side: joins-v1/v2.yaml, leaving-v1/v2.yaml, knocks.yaml,
invites-v2.yaml (server-server-api.md "Joining Rooms", "Knocking upon a room", "Inviting to a
room", "Leaving Rooms")."""
from __future__ import annotations

from ..handlers.membership import FederationMembershipHandler
from .common import event_id_param, origin_of, room_id_param

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def register_routes(hs, router) -> None:
    handler = hs.get(FederationMembershipHandler)

    def make(membership: str, default_versions):
        async def make_membership(request, roomId: str, userId: str):
            origin = await origin_of(hs, request)
            versions = request.args("ver") or default_versions
            return 200, await handler.make_membership(origin, room_id_param(roomId), userId, membership, versions)
        make_membership.__doc__ = (f"GET {V1}/make_{membership}/{{roomId}}/{{userId}}?ver=… → "
                                   "``{event, room_version}``; 403 when the auth rules refuse, 404 for "
                                   "unknown rooms, 400 M_INCOMPATIBLE_ROOM_VERSION.")
        return make_membership

    def send(membership: str, wrap_v1: bool):
        async def send_membership(request, roomId: str, eventId: str):
            origin = await origin_of(hs, request)
            omit = (request.arg("omit_members") or "").lower() == "true" and not wrap_v1
            body = await handler.send_membership(origin, room_id_param(roomId), event_id_param(eventId),
                                                 request.json(), membership, omit_members=omit)
            return 200, ([200, body] if wrap_v1 else body)
        version = "v1" if wrap_v1 else "v2"
        send_membership.__doc__ = (f"PUT /_matrix/federation/{version}/send_{membership}/{{roomId}}/{{eventId}}: "
                                   "the signed event; persisted, relayed to the room's servers and answered.")
        return send_membership

    async def invite_v2(request, roomId: str, eventId: str):
        """PUT /_matrix/federation/v2/invite/{roomId}/{eventId} ``{room_version, event,
        invite_room_state}`` → ``{event}`` signed by us too."""
        origin = await origin_of(hs, request)
        return 200, await handler.on_invite(origin, room_id_param(roomId), event_id_param(eventId), request.json())

    router.add("GET", f"{V1}/make_join/{{roomId}}/{{userId}}", make("join", ["1"]), "federation")
    router.add("GET", f"{V1}/make_leave/{{roomId}}/{{userId}}", make("leave", None), "federation")
    router.add("GET", f"{V1}/make_knock/{{roomId}}/{{userId}}", make("knock", ["1"]), "federation")
    router.add("PUT", f"{V1}/send_join/{{roomId}}/{{eventId}}", send("join", True), "federation")
    router.add("PUT", f"{V2}/send_join/{{roomId}}/{{eventId}}", send("join", False), "federation")
    router.add("PUT", f"{V1}/send_leave/{{roomId}}/{{eventId}}", send("leave", True), "federation")
    router.add("PUT", f"{V2}/send_leave/{{roomId}}/{{eventId}}", send("leave", False), "federation")
    router.add("PUT", f"{V1}/send_knock/{{roomId}}/{{eventId}}", send("knock", False), "federation")
    router.add("PUT", f"{V2}/invite/{{roomId}}/{{eventId}}", invite_v2, "federation")
