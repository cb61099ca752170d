"""Logout (client-server-api "Login", logout.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.devices import DeviceService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    devices = hs.get(DeviceService)

    async def logout(request):
        """POST /_matrix/client/v3/logout: revoke the token and delete its device (with the
        device's other tokens and keys). Expired and locked sessions may log out."""
        requester = await auth.get_requester(request, allow_guest=True, allow_expired=True, allow_locked=True)
        if requester.device_id is not None:
            await devices.delete_devices(requester.user_id, [requester.device_id])
        elif requester.access_token_id is not None:
            await auth.revoke_token(requester.access_token_id)
        return 200, {}

    async def logout_all(request):
        """POST /_matrix/client/v3/logout/all: revoke every token and delete every device of the
        user, this one included. No UIA (logout.yaml explains why)."""
        requester = await auth.get_requester(request, allow_guest=True, allow_expired=True, allow_locked=True)
        await devices.delete_all_devices(requester.user_id)
        await auth.revoke_user_tokens(requester.user_id)
        return 200, {}

    router.add_client("POST", "/logout", logout)
    router.add_client("POST", "/logout/all", logout_all)
