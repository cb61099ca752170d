"""End-to-end keys for other servers: user_devices.yaml (``GET /user/devices/{userId}``) and
user_keys.yaml (``POST /user/keys/query``, ``POST /user/keys/claim``)."""
from __future__ import annotations

from homeserver.e2ee.device_keys import DeviceKeysService
from homeserver.http.errors import bad_json, invalid_param
from homeserver.protocol import ids

from .common import origin_of

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    keys = hs.get(DeviceKeysService)

    def _local_user(user_id) -> str:
        if not isinstance(user_id, str) or not ids.is_valid_user_id(user_id) \
                or ids.get_domain(user_id) != hs.hostname:
            raise invalid_param(f"{user_id!r} is not a user of this server")
        return user_id

    async def user_devices(request, userId: str):
        """GET /_matrix/federation/v1/user/devices/{userId} → ``{user_id, stream_id, devices, master_key?,
        self_signing_key?}``."""
        await origin_of(hs, request)
        return 200, await keys.get_user_devices(_local_user(userId))

    async def keys_query(request):
        """POST /_matrix/federation/v1/user/keys/query ``{device_keys: {user: [device]}}``."""
        await origin_of(hs, request)
        query = request.json().get("device_keys")
        if not isinstance(query, dict) or not all(isinstance(v, list) for v in query.values()):
            raise bad_json("device_keys must map user IDs to lists of device IDs")
        local = {u: [d for d in v if isinstance(d, str)] for u, v in query.items()
                 if isinstance(u, str) and ids.is_valid_user_id(u) and ids.get_domain(u) == hs.hostname}
        return 200, await keys.query_local(None, local)

    async def keys_claim(request):
        """POST /_matrix/federation/v1/user/keys/claim ``{one_time_keys: {user: {device: algorithm}}}``."""
        await origin_of(hs, request)
        query = request.json().get("one_time_keys")
        if not isinstance(query, dict) or not all(isinstance(v, dict) and all(isinstance(a, str) for a in v.values())
                                                  for v in query.values()):
            raise bad_json("one_time_keys must map user IDs to objects of device ID to algorithm")
        local = {u: v for u, v in query.items()
                 if isinstance(u, str) and ids.is_valid_user_id(u) and ids.get_domain(u) == hs.hostname}
        return 200, {"one_time_keys": await keys.claim_local(local)}

    router.add("GET", f"{V1}/user/devices/{{userId}}", user_devices, "federation")
    router.add("POST", f"{V1}/user/keys/query", keys_query, "federation")
    router.add("POST", f"{V1}/user/keys/claim", keys_claim, "federation")
