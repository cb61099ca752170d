"""End-to-end encryption key endpoints (end_to_end_encryption.md "Key management API",
"Cross-signing"; keys.yaml, cross_signing.yaml)."""
from __future__ import annotations

from homeserver.accounts import uia as uia_stages
from homeserver.accounts.auth import AuthService
from homeserver.accounts.uia import UiaService
from homeserver.e2ee.cross_signing import CrossSigningService
from homeserver.e2ee.device_keys import DeviceKeysService
from homeserver.e2ee.device_lists import DeviceListService
from homeserver.http.errors import invalid_param, missing_param

PASSWORD_FLOWS = [[uia_stages.PASSWORD]]


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    uia = hs.get(UiaService)
    keys = hs.get(DeviceKeysService)  # also builds DeviceListService, which hooks device changes
    device_lists = hs.get(DeviceListService)
    cross_signing = hs.get(CrossSigningService)

    async def upload(request):
        """POST /_matrix/client/v3/keys/upload: publish this device's identity, one-time and
        fallback keys; refuses keys of another user or device and bad signatures (nothing is
        stored then). Returns the device's one-time key counts."""
        requester = await auth.get_requester(request, allow_guest=True)
        if requester.device_id is None:
            raise invalid_param("Uploading keys requires an access token bound to a device")
        counts = await keys.upload(requester.user_id, requester.device_id, request.json())
        return 200, {"one_time_key_counts": counts}

    async def query(request):
        """POST /_matrix/client/v3/keys/query: device keys and cross-signing keys of users, with
        the signatures the requester may see; unreachable servers in ``failures``."""
        requester = await auth.get_requester(request, allow_guest=True)
        return 200, await keys.query(requester.user_id, request.json())

    async def claim(request):
        """POST /_matrix/client/v3/keys/claim: one one-time key per device (consumed), or the
        device's fallback key once they run out."""
        await auth.get_requester(request, allow_guest=True)
        return 200, await keys.claim(request.json())

    async def changes(request):
        """GET /_matrix/client/v3/keys/changes?from=&to=: users sharing a room with the requester
        whose device keys changed between two sync tokens, and users no longer sharing one."""
        requester = await auth.get_requester(request)
        from_token, to_token = request.arg("from"), request.arg("to")
        if from_token is None or to_token is None:
            raise missing_param("'from' and 'to' are required")
        from_dl, from_room = device_lists.parse_sync_token(from_token)
        to_dl, to_room = device_lists.parse_sync_token(to_token)
        changed, left = await device_lists.get_device_list_changes(
            requester.user_id, from_dl, to_dl, from_room_pos=from_room, to_room_pos=to_room)
        return 200, {"changed": sorted(changed), "left": sorted(left)}

    async def device_signing_upload(request):
        """POST /_matrix/client/v3/keys/device_signing/upload: publish cross-signing keys. UIA
        (m.login.password) unless there is no master key yet, the keys repeat the stored ones
        exactly, or the requester is an application service."""
        requester = await auth.get_requester(request)
        body = request.json()
        session = None
        if await cross_signing.upload_requires_uia(requester, body):
            session = await uia.check(request, body, PASSWORD_FLOWS, requester=requester)
            body = session.clientdict
        await cross_signing.upload_signing_keys(requester, body)
        if session is not None:
            uia.finish(session)
        return 200, {}

    async def signatures_upload(request):
        """POST /_matrix/client/v3/keys/signatures/upload: add signatures to the requester's
        devices and master key, or to other users' master keys (by the user-signing key);
        per-key failures are reported, the rest stored."""
        requester = await auth.get_requester(request)
        failures = await cross_signing.upload_signatures(requester, request.json())
        return 200, {"failures": failures}

    router.add_client("POST", "/keys/upload", upload)
    router.add_client("POST", "/keys/upload/{deviceId}", upload)  # r0 form; the path device is ignored
    router.add_client("POST", "/keys/query", query)
    router.add_client("POST", "/keys/claim", claim)
    router.add_client("GET", "/keys/changes", changes)
    router.add_client("POST", "/keys/device_signing/upload", device_signing_upload)
    router.add_client("POST", "/keys/signatures/upload", signatures_upload)
    router.add("POST", "/_matrix/client/unstable/keys/device_signing/upload", device_signing_upload)
    router.add("POST", "/_matrix/client/unstable/keys/signatures/upload", signatures_upload)
