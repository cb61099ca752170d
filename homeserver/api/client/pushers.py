"""Pushers (client-server-api/modules/push.md "Client behaviour", pusher.yaml). Delivery to push
gateways is homeserver/push/pusher_pool.py."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.devices import DeviceService
from homeserver.client.push_service import PusherService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    pushers = hs.get(PusherService)
    hs.get(DeviceService).on_device_deleted.append(pushers.delete_pushers_of_devices)

    async def get_pushers(request):
        """GET /_matrix/client/v3/pushers: the user's pushers."""
        requester = await auth.get_requester(request)
        return 200, {"pushers": await pushers.get_pushers(requester.user_id)}

    async def set_pusher(request):
        """POST /_matrix/client/v3/pushers/set: create or update a pusher, or delete it with
        ``kind: null``; 400 M_MISSING_PARAM naming missing fields, M_INVALID_PARAM for bad values."""
        requester = await auth.get_requester(request)
        body = request.json()
        await pushers.set_pusher(requester.user_id, requester.device_id, body)
        return 200, {}

    router.add_client("GET", "/pushers", get_pushers)
    router.add_client("POST", "/pushers/set", set_pusher)
