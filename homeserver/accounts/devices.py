"""Devices (client-server-api "Device management", "Relationship between access tokens and devices").

Other services follow device changes through hook lists, each entry ``fn(user_id, device_ids)``
returning None or an awaitable, run after the change committed, in order; a failing hook is
logged and does not fail the request:

* ``on_device_created`` — a login or registration made a new device (device-list updates);
* ``on_device_updated`` — its display name changed;
* ``on_device_deleted`` — devices and their tokens are gone (delete device keys, to-device
  messages; logout.yaml: "Device keys for the device are deleted alongside the device").
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from homeserver.http.errors import invalid_param
from homeserver.storage.accounts_store import AccountsStore, DeviceRecord

from . import tokens
from .auth import AuthService

logger = logging.getLogger(__name__)

MAX_DEVICE_ID_LENGTH = 255
DeviceHook = Callable[[str, list[str]], Any]


class DeviceService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AccountsStore)
        self.on_device_created: list[DeviceHook] = []
        self.on_device_updated: list[DeviceHook] = []
        self.on_device_deleted: list[DeviceHook] = []

    async def ensure_device(self, user_id: str, device_id: str | None, display_name: str | None) -> str:
        """The given device (created if new; the display name only names a new device) or a new
        device with a generated ID."""
        if device_id is not None and (not device_id or len(device_id) > MAX_DEVICE_ID_LENGTH):
            raise invalid_param(f"'device_id' must be 1 to {MAX_DEVICE_ID_LENGTH} characters")
        now = self.hs.clock_ms()
        if device_id is None:
            for _ in range(10):
                device_id = tokens.new_device_id()
                if await self.store.add_device(user_id, device_id, display_name, now):
                    break
            else:
                raise RuntimeError("could not allocate a device ID")
        elif not await self.store.add_device(user_id, device_id, display_name, now):
            return device_id
        await self._run_hooks(self.on_device_created, user_id, [device_id])
        return device_id

    async def get_devices(self, user_id: str) -> list[dict]:
        """GET /devices entries (definitions/client_device.yaml)."""
        return [self._to_client(d) for d in await self.store.get_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict | None:
        record = await self.store.get_device(user_id, device_id)
        return self._to_client(record) if record else None

    async def set_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """False if the user has no such device."""
        if not await self.store.set_device_display_name(user_id, device_id, display_name):
            return False
        await self._run_hooks(self.on_device_updated, user_id, [device_id])
        return True

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices, revoking their access and refresh tokens; unknown IDs are ignored."""
        existed, revoked = await self.store.delete_devices(user_id, device_ids)
        self.hs.get(AuthService).invalidate_tokens(revoked)
        if existed:
            await self._run_hooks(self.on_device_deleted, user_id, existed)

    async def delete_all_devices(self, user_id: str, *, except_device_id: str | None = None) -> None:
        devices = [d.device_id for d in await self.store.get_devices(user_id) if d.device_id != except_device_id]
        await self.delete_devices(user_id, devices)

    def _to_client(self, d: DeviceRecord) -> dict:
        out: dict = {"device_id": d.device_id}
        if d.display_name is not None:
            out["display_name"] = d.display_name
        ts, ip = d.last_seen_ts, d.last_seen_ip
        pending = self.hs.get(AuthService).pending_last_seen.get((d.user_id, d.device_id))
        if pending is not None:
            ts, ip = pending[0], pending[1]
        if ts is not None:
            out["last_seen_ts"] = ts
        if ip is not None:
            out["last_seen_ip"] = ip
        return out

    async def _run_hooks(self, hooks: list[DeviceHook], user_id: str, device_ids: list[str]) -> None:
        for hook in list(hooks):
            try:
                result = hook(user_id, device_ids)
                if hasattr(result, "__await__"):
                    await result
            except Exception:
                logger.exception("device hook %r failed for %s %s", hook, user_id, device_ids)
