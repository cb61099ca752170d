"""Third-party invites over federation (third_party_invite.yaml; server-server-api.md
"Third-party invites")."""
from __future__ import annotations

from ..handlers.third_party_invites import ThirdPartyInviteHandler
from .common import origin_of, room_id_param

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    handler = hs.get(ThirdPartyInviteHandler)

    async def exchange(request, roomId: str):
        """PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}: the invitee's server
        asks us to issue a third-party invite (partial m.room.member event) → ``{}``; 403 when the
        signed block fails the auth rules."""
        origin = await origin_of(hs, request)
        return 200, await handler.on_exchange(origin, room_id_param(roomId), request.json())

    async def onbind(request):
        """PUT /_matrix/federation/v1/3pid/onbind: an identity server reports a binding of one of
        our users with pending invites (unsigned, like Synapse: the signed blocks prove themselves)."""
        return 200, await handler.on_bind(request.json())

    router.add("PUT", f"{V1}/exchange_third_party_invite/{{roomId}}", exchange, "federation")
    router.add("PUT", f"{V1}/3pid/onbind", onbind, "federation")
