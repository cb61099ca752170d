"""Device management (client-server-api "Device management", device_management.yaml)."""
from __future__ import annotations

from homeserver.accounts import uia as uia_stages
from homeserver.accounts.auth import AuthService
from homeserver.accounts.devices import DeviceService
from homeserver.accounts.uia import UiaService
from homeserver.http.errors import bad_json, invalid_param, missing_param, not_found

PASSWORD_FLOWS = [[uia_stages.PASSWORD]]


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    uia = hs.get(UiaService)
    devices = hs.get(DeviceService)

    async def list_devices(request):
        """GET /_matrix/client/v3/devices: every device of the user."""
        requester = await auth.get_requester(request)
        return 200, {"devices": await devices.get_devices(requester.user_id)}

    async def get_device(request, deviceId):
        """GET /_matrix/client/v3/devices/{deviceId}: one device, 404 if the user has no such device."""
        requester = await auth.get_requester(request)
        device = await devices.get_device(requester.user_id, deviceId)
        if device is None:
            raise not_found("Device not found")
        return 200, device

    async def update_device(request, deviceId):
        """PUT /_matrix/client/v3/devices/{deviceId}: set display_name (absent: unchanged);
        404 for unknown devices, except that application services create them (201, v1.17)."""
        requester = await auth.get_requester(request)
        body = request.json()
        name = body.get("display_name")
        if name is not None and not isinstance(name, str):
            raise invalid_param("'display_name' must be a string")
        if await devices.get_device(requester.user_id, deviceId) is None:
            if requester.app_service is None:
                raise not_found("Device not found")
            await devices.ensure_device(requester.user_id, deviceId, name)
            return 201, {}
        if "display_name" in body:
            await devices.set_display_name(requester.user_id, deviceId, name)
        return 200, {}

    async def delete_device(request, deviceId):
        """DELETE /_matrix/client/v3/devices/{deviceId}: UIA (m.login.password, none for
        application services), then delete the device and its tokens; 200 if already gone."""
        requester = await auth.get_requester(request)
        body = request.json(allow_empty=True)
        await _authorise(request, body, requester)
        await devices.delete_devices(requester.user_id, [deviceId])
        return 200, {}

    async def delete_devices(request):
        """POST /_matrix/client/v3/delete_devices: as DELETE /devices/{deviceId} for a list."""
        requester = await auth.get_requester(request)
        body = request.json()
        device_ids = body.get("devices")
        if device_ids is None:
            raise missing_param("Missing 'devices'")
        if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
            raise bad_json("'devices' must be a list of strings")
        await _authorise(request, body, requester)
        await devices.delete_devices(requester.user_id, device_ids)
        return 200, {}

    async def _authorise(request, body, requester) -> None:
        if requester.app_service is not None:
            return  # device_management.yaml: no UIA for application services (v1.17)
        session = await uia.check(request, body, PASSWORD_FLOWS, requester=requester)
        uia.finish(session)

    router.add_client("GET", "/devices", list_devices)
    router.add_client("GET", "/devices/{deviceId}", get_device)
    router.add_client("PUT", "/devices/{deviceId}", update_device)
    router.add_client("DELETE", "/devices/{deviceId}", delete_device)
    router.add_client("POST", "/delete_devices", delete_devices)
