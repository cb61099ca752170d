"""Send-to-device messaging (client-server-api/modules/send_to_device.md, to_device.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.http.errors import missing_param


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    to_device = hs.get(ToDeviceService)

    async def send_to_device(request, eventType, txnId):
        """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}: queue one message per target
        device ("*": all of a user's devices); a repeated txnId from the same device is a no-op."""
        requester = await auth.get_requester(request, allow_guest=True)
        body = request.json()
        if "messages" not in body:
            raise missing_param("Missing 'messages'")
        sender_device = requester.device_id or requester.access_token_id or ""
        await to_device.send(requester.user_id, sender_device, eventType, txnId, body["messages"])
        return 200, {}

    router.add_client("PUT", "/sendToDevice/{eventType}/{txnId}", send_to_device)
