"""Send-to-device messaging (client-server-api/modules/send_to_device.md, to_device.yaml).

Messages for local devices go into a per-device inbox at increasing stream IDs; /sync lists
them in order (:meth:`ToDeviceService.get_to_device`) and, when the client syncs again from the
returned token, deletes them (:meth:`ToDeviceService.delete_acknowledged`). Messages for remote
users are queued per destination in ``e2e_device_outbox`` for the federation sender
(``m.direct_to_device``), which is told through :attr:`ToDeviceService.on_remote_queued`.
"""
from __future__ import annotations

import logging
from typing import Callable

from homeserver.http.errors import bad_json, invalid_param
from homeserver.protocol.ids import get_domain, is_valid_user_id, random_string
from homeserver.storage.accounts_store import AccountsStore
from homeserver.storage.e2ee_store import E2eeStore

logger = logging.getLogger(__name__)

STREAM = "to_device"
DEFAULT_SYNC_LIMIT = 100  # send_to_device.md: "100 messages is recommended as a reasonable limit"


class ToDeviceService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(E2eeStore)
        # Seam for the federation sender: fn(destination) after messages for it were queued.
        self.on_remote_queued: list[Callable[[str], object]] = []
        self._unnotified: list[tuple[int, set[str]]] = []

    def current_position(self) -> int:
        """The to-device stream position every committed message is at or below."""
        return self.store.to_device_ids.current_token()

    async def send(self, sender: str, sender_device: str, event_type: str, txn_id: str, messages: object) -> None:
        """PUT /sendToDevice: deliver ``messages`` ({user: {device or "*": content}}) once per
        (sender, sender_device, txn_id). Unknown local devices are skipped; "*" means every
        device of the user."""
        if not isinstance(messages, dict):
            raise bad_json("'messages' must be an object")
        for user_id, by_device in messages.items():
            if not is_valid_user_id(user_id):
                raise invalid_param(f"{user_id!r} is not a user ID")
            if not isinstance(by_device, dict) or not all(isinstance(c, dict) for c in by_device.values()):
                raise bad_json("'messages' must map user IDs to objects of device ID to content objects")
        accounts = self.hs.get(AccountsStore)
        local: list[tuple[str, str, dict]] = []
        remote: dict[str, dict[str, dict]] = {}
        for user_id, by_device in messages.items():
            if get_domain(user_id) != self.hs.hostname:
                remote.setdefault(get_domain(user_id), {})[user_id] = by_device
                continue
            known = {d.device_id for d in await accounts.get_devices(user_id)}
            targets: dict[str, dict] = {}
            for device_id, content in by_device.items():
                if device_id == "*":
                    for d in known:
                        targets.setdefault(d, content)
                elif device_id in known:
                    targets[device_id] = content
            for device_id, content in sorted(targets.items()):
                local.append((user_id, device_id, {"type": event_type, "sender": sender, "content": content}))

        ids = self.store.to_device_ids.allocate(len(local) + len(remote))
        try:
            local_rows = [(u, d, sid, m) for (u, d, m), sid in zip(local, ids)]
            remote_rows = [(sid, dest, event_type, random_string(16), msgs)
                           for (dest, msgs), sid in zip(sorted(remote.items()), ids[len(local):])]
            stored = await self.store.add_to_device_messages(sender, sender_device, txn_id, local_rows, remote_rows,
                                                             self.hs.clock_ms())
        finally:
            self.store.to_device_ids.finish(ids)
        if stored and local:
            self._unnotified.append((max(ids), {u for u, _, _ in local}))
        self._notify_ready()
        if not stored:
            return  # a retried transaction
        for destination in sorted(remote):
            for hook in list(self.on_remote_queued):
                try:
                    hook(destination)
                except Exception:
                    logger.exception("to-device outbox hook failed for %s", destination)

    def _notify_ready(self) -> None:
        """Wake recipients at the current position. An earlier send still being written holds the
        position below later IDs; recipients of those wait in _unnotified until it passes them."""
        from homeserver.sync.notifier import Notifier
        token = self.current_position()
        users = {u for sid, us in self._unnotified if sid <= token for u in us}
        self._unnotified = [(sid, us) for sid, us in self._unnotified if sid > token]
        if users:
            self.hs.get(Notifier).notify(STREAM, token, users=sorted(users))

    async def get_to_device(self, user_id: str, device_id: str, since: int, limit: int = DEFAULT_SYNC_LIMIT,
                            to: int | None = None) -> tuple[list[dict], int]:
        """(messages, position) for /sync: the device's messages after ``since`` up to ``to``
        (default: now), oldest first, at most ``limit``. ``position`` is the token to resume from
        (the last message's when the limit cut the list, else ``to``)."""
        if to is None:
            to = self.current_position()
        rows = await self.store.get_to_device(user_id, device_id, since, to, limit)
        position = rows[-1][0] if len(rows) >= limit else max(to, since)
        return [m for _, m in rows], position

    async def delete_acknowledged(self, user_id: str, device_id: str, up_to: int) -> int:
        """The device synced from ``up_to``: its messages up to there were delivered
        (send_to_device.md "Server behaviour")."""
        return await self.store.delete_to_device(user_id, device_id, up_to)
