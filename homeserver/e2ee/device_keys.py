"""Device identity keys, one-time keys and fallback keys (end_to_end_encryption.md "Key
Distribution", "One-time and fallback keys", "Uploading keys"; keys.yaml ``/keys/upload``,
``/keys/query``, ``/keys/claim``).

Remote users who share a room with a local user are answered from their cached device lists
(:mod:`homeserver.e2ee.remote_device_lists`); other remote users through
:attr:`DeviceKeysService.federation`, a seam the federation side fills in: an object with ``async query_keys(destination, {user: [device]}, timeout_ms)``
returning the remote ``/user/keys/query`` body and ``async claim_keys(destination,
{user: {device: algorithm}}, timeout_ms)`` returning the remote ``/user/keys/claim`` body. Until
then remote servers are listed in ``failures``.
"""
from __future__ import annotations

import copy
import logging

from homeserver.http.errors import bad_json, invalid_param, missing_param
from homeserver.protocol.ids import get_domain, is_valid_user_id
from homeserver.storage.e2ee_store import E2eeStore

from . import keys_format as kf
from .cross_signing import CrossSigningService, merge_signatures
from .device_lists import DeviceListService
from .remote_device_lists import RemoteDeviceListService

logger = logging.getLogger(__name__)

DEFAULT_REMOTE_TIMEOUT_MS = 10_000


class DeviceKeysService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(E2eeStore)
        self.device_lists = hs.get(DeviceListService)
        self.cross_signing = hs.get(CrossSigningService)
        self.remote_lists = hs.get(RemoteDeviceListService)
        self.federation = None  # seam, see the module docstring
        self._last_upload_id = 0

    # --- /keys/upload ------------------------------------------------------------------------------
    async def upload(self, user_id: str, device_id: str, body: dict) -> dict[str, int]:
        """Check everything in the body, then store it; returns ``one_time_key_counts``.

        Device keys must be this device's and self-signed; signed one-time and fallback keys must
        be signed by the device's ed25519 key (from this upload or stored). A one-time key ID
        already held with a different key is refused (M_INVALID_PARAM). Nothing is stored when
        any check fails."""
        device_keys = body.get("device_keys")
        if device_keys is not None:
            device_keys = kf.validate_device_keys(device_keys, user_id, device_id)
        signing_key = kf.device_signing_key(device_keys or await self.store.get_device_keys(user_id, device_id),
                                            device_id)
        otks = []
        if body.get("one_time_keys") is not None:
            otks = kf.validate_one_time_keys(body["one_time_keys"], "one_time_keys", user_id, device_id, signing_key)
        fallbacks = []
        if body.get("fallback_keys") is not None:
            fallbacks = kf.validate_one_time_keys(body["fallback_keys"], "fallback_keys", user_id, device_id,
                                                  signing_key, fallback=True)

        if otks:
            conflicts = await self.store.add_one_time_keys(user_id, device_id, otks, self._next_upload_id())
            if conflicts:
                raise invalid_param(f"One-time key {conflicts[0]} already exists with a different key")
        if device_keys is not None:
            with self.store.device_list_ids.get_next() as stream_id:
                changed = await self.store.set_device_keys(user_id, device_id, device_keys, self.hs.clock_ms(),
                                                           stream_id)
            if changed:
                await self.device_lists.changes_committed(stream_id, [(user_id, device_id, None)])
        if fallbacks:
            await self.store.set_fallback_keys(user_id, device_id, fallbacks)
        return await self.store.count_one_time_keys(user_id, device_id)

    def _next_upload_id(self) -> int:
        """Increasing per upload, so claims hand out keys in upload order."""
        self._last_upload_id = max(self._last_upload_id + 1, self.hs.clock_ms())
        return self._last_upload_id

    # --- /keys/query ----------------------------------------------------------------------------
    async def query(self, viewer: str, body: dict) -> dict:
        """The /keys/query response for ``viewer``."""
        wanted = body.get("device_keys")
        if wanted is None:
            raise missing_param("Missing 'device_keys'")
        if not isinstance(wanted, dict):
            raise bad_json("'device_keys' must be an object")
        for user_id, devices in wanted.items():
            if not is_valid_user_id(user_id):
                raise invalid_param(f"{user_id!r} is not a user ID")
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json("'device_keys' must map user IDs to lists of device IDs")
        timeout = _timeout(body)
        local = {u: d for u, d in wanted.items() if get_domain(u) == self.hs.hostname}
        result = await self.query_local(viewer, local)
        result["failures"] = {}
        rest = {u: d for u, d in wanted.items() if u not in local}
        if rest:  # tracked remote users from their cached lists, the others over federation
            cached, rest = await self.remote_lists.query_cached(rest, timeout)
            for field, values in cached.items():
                result.setdefault(field, {}).update(values)
        remote: dict[str, dict[str, list[str]]] = {}
        for u, d in rest.items():
            remote.setdefault(get_domain(u), {})[u] = d
        for destination, query in sorted(remote.items()):
            await self._query_remote(destination, query, timeout, result)
        return result

    async def query_local(self, viewer: str | None, query: dict[str, list[str]]) -> dict:
        """``device_keys``, ``master_keys``, ``self_signing_keys`` (and ``user_signing_keys`` for
        the viewer's own) of local users; also answers federation ``/user/keys/query``
        (viewer None: only what everyone may see)."""
        found = await self.store.query_device_keys(query)
        dev_sigs = await self.cross_signing.device_signatures(found.keys())
        device_keys: dict[str, dict] = {}
        for user_id, devices in found.items():
            out = device_keys[user_id] = {}
            for device_id, (keys, display_name) in devices.items():
                keys = merge_signatures(keys, dev_sigs.get((user_id, device_id), ()))
                keys = copy.copy(keys)
                keys["unsigned"] = {"device_display_name": display_name} if display_name is not None else {}
                out[device_id] = keys
        masters, ssks, usks = await self.cross_signing.keys_for_query(viewer or "", query.keys())
        result = {"device_keys": device_keys, "master_keys": masters, "self_signing_keys": ssks}
        if viewer is not None:
            result["user_signing_keys"] = usks
        return result

    async def get_user_devices(self, user_id: str) -> dict:
        """The federation ``GET /user/devices/{userId}`` body (server-server-api "Device
        Management", user_devices.yaml): devices with keys, display names, cross-signing keys
        and the user's device-list stream ID: the number of their last device update sent as
        m.device_list_update (E2eeStore.get_device_update_sequence), counted up to the position
        read *before* the devices, so every update it covers is in the answer (later ones may
        be too; receivers re-apply them)."""
        position = self.device_lists.current_position()
        answer = await self.query_local(None, {user_id: []})
        devices = []
        for device_id, keys in sorted(answer["device_keys"].get(user_id, {}).items()):
            entry = {"device_id": device_id, "keys": {k: v for k, v in keys.items() if k != "unsigned"}}
            name = keys.get("unsigned", {}).get("device_display_name")
            if name is not None:
                entry["device_display_name"] = name
            devices.append(entry)
        out = {"user_id": user_id, "stream_id": await self.store.count_device_updates(user_id, position),
               "devices": devices}
        if user_id in answer["master_keys"]:
            out["master_key"] = answer["master_keys"][user_id]
        if user_id in answer["self_signing_keys"]:
            out["self_signing_key"] = answer["self_signing_keys"][user_id]
        return out

    async def _query_remote(self, destination: str, query: dict, timeout_ms: int, result: dict) -> None:
        if self.federation is None:
            result["failures"][destination] = {"status": 503, "message": "Federation key queries are not available"}
            return
        try:
            remote = await self.federation.query_keys(destination, query, timeout_ms)
        except Exception as e:  # unreachable or broken server: spec "failures"
            logger.info("keys/query to %s failed: %s", destination, e)
            result["failures"][destination] = {"status": 503, "message": str(e) or type(e).__name__}
            return
        for field in ("device_keys", "master_keys", "self_signing_keys"):
            for user_id, value in (remote.get(field) or {}).items():
                if user_id in query and get_domain(user_id) == destination:
                    result.setdefault(field, {})[user_id] = value

    # --- /keys/claim ---------------------------------------------------------------------------
    async def claim(self, body: dict) -> dict:
        """The /keys/claim response: one key per requested device, a one-time key while any is
        left, else the device's fallback key (keys.yaml ``/keys/claim``)."""
        wanted = body.get("one_time_keys")
        if wanted is None:
            raise missing_param("Missing 'one_time_keys'")
        if not isinstance(wanted, dict):
            raise bad_json("'one_time_keys' must be an object")
        for user_id, devices in wanted.items():
            if not is_valid_user_id(user_id):
                raise invalid_param(f"{user_id!r} is not a user ID")
            if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
                raise bad_json("'one_time_keys' must map user IDs to objects of device ID to algorithm")
        timeout = _timeout(body)
        local = {u: d for u, d in wanted.items() if get_domain(u) == self.hs.hostname}
        result: dict = {"one_time_keys": await self.claim_local(local), "failures": {}}
        remote: dict[str, dict] = {}
        for u, d in wanted.items():
            if u not in local:
                remote.setdefault(get_domain(u), {})[u] = d
        for destination, query in sorted(remote.items()):
            if self.federation is None:
                result["failures"][destination] = {"status": 503, "message": "Federation key claims are not available"}
                continue
            try:
                answer = await self.federation.claim_keys(destination, query, timeout)
            except Exception as e:
                result["failures"][destination] = {"status": 503, "message": str(e) or type(e).__name__}
                continue
            for user_id, devices in (answer.get("one_time_keys") or {}).items():
                if user_id in query and get_domain(user_id) == destination:
                    result["one_time_keys"][user_id] = devices
        return result

    async def claim_local(self, query: dict[str, dict[str, str]]) -> dict:
        """Claim keys of local devices: ``{user: {device: {"alg:key_id": key}}}`` (also answers
        federation ``/user/keys/claim``)."""
        wanted = [(u, d, alg) for u, devices in query.items() for d, alg in devices.items()]
        out: dict[str, dict[str, dict]] = {}
        for user_id, device_id, name, key in await self.store.claim_keys(wanted):
            out.setdefault(user_id, {}).setdefault(device_id, {})[name] = key
        return out


def _timeout(body: dict) -> int:
    timeout = body.get("timeout", DEFAULT_REMOTE_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise bad_json("'timeout' must be a non-negative integer")
    return min(timeout, 60_000)
