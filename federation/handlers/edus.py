"""EDUs in and out: typing, receipts, device-list and signing-key updates, send-to-device; and the
remote end-to-end key queries of the e2ee service.

server-server-api.md "Typing Notifications", "Receipts", "Device Management", "End-to-End
Encryption", "Send-to-device messaging"; user_keys.yaml, user_devices.yaml.

``hs.get(FederationEduHandler).register()`` (federation/api/seams.py) connects:

* inbound, through :meth:`TransactionHandler.register_edu_handler`: ``m.typing`` →
  ``TypingService.set_remote_typing``; ``m.receipt`` → the receipts store (read receipts only,
  users of the sending server who are joined); ``m.device_list_update`` and
  ``m.signing_key_update`` → the user's cached device list (homeserver/e2ee/remote_device_lists.py:
  applied, or resynced through ``GET /user/devices``; local users sharing a room see the change
  in /sync and their re-query is answered from the cache); ``m.direct_to_device`` → the
  local devices' inboxes (``ToDeviceService.send``, idempotent by message_id);
* outbound: ``TypingService.on_local_change`` (in memory), ``ReceiptsService.on_local_receipt``,
  ``DeviceListService.on_change`` (to every server sharing a room with the user; each user's
  device updates are numbered 1, 2, ... with ``prev_id`` the previous number, and ``GET
  /user/devices`` answers the last number, so receivers apply updates in order and resync on a
  gap) and
  ``ToDeviceService.on_remote_queued`` (the sender reads the e2ee outbox);
* ``DeviceKeysService.federation``: ``query_keys`` and ``claim_keys`` over ``/user/keys/*``;
  ``RemoteDeviceListService.federation``: ``get_user_devices`` over ``/user/devices/{userId}``.

Presence (server-server-api.md "Presence", ``m.presence`` with ``{"push": [...]}``): inbound
updates of the origin's users who share a room with this server go to
``PresenceService.set_remote_state``; outbound, ``PresenceService.on_local_change`` sends a
local user's new presence to every server sharing a room with them (kept in memory only, like
typing: presence is best effort); on joins, federation/handlers/presence_joins.py sends what
servers newly sharing a room have not seen.
"""
from __future__ import annotations

import logging
from typing import Sequence
from urllib.parse import quote

from twisted.internet import defer

from homeserver.protocol import ids

from ..sender import FederationSender
from .transactions import TransactionHandler

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"


def _domain(user_id) -> str | None:
    try:
        return ids.get_domain(user_id) if isinstance(user_id, str) else None
    except ValueError:
        return None


class FederationEduHandler:
    def __init__(self, hs):
        self.hs = hs
        self.sender: FederationSender = hs.get(FederationSender)

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    def register(self) -> None:
        from homeserver.e2ee.device_keys import DeviceKeysService
        from homeserver.e2ee.device_lists import DeviceListService
        from homeserver.e2ee.to_device import ToDeviceService
        from homeserver.ephemeral.receipts import ReceiptsService
        from homeserver.ephemeral.typing import TypingService
        txns = self.hs.get(TransactionHandler)
        txns.register_edu_handler("m.typing", self.on_typing)
        txns.register_edu_handler("m.receipt", self.on_receipt)
        txns.register_edu_handler("m.device_list_update", self.on_device_list_update)
        txns.register_edu_handler("m.signing_key_update", self.on_signing_key_update)
        txns.register_edu_handler("m.direct_to_device", self.on_to_device)
        txns.register_edu_handler("m.presence", self.on_presence)
        self.hs.get(TypingService).on_local_change.append(self.typing_changed)
        self.hs.get(ReceiptsService).on_local_receipt.append(self.receipt_sent)
        self.hs.get(DeviceListService).on_change.append(self.device_lists_changed)
        self.hs.get(ToDeviceService).on_remote_queued.append(self.sender.wake)
        from homeserver.client.presence import PresenceService
        self.hs.get(PresenceService).on_local_change.append(self.presence_changed)
        from .presence_joins import PresenceOnJoin
        self.hs.get(PresenceOnJoin)  # presence to servers that newly share a room
        self.hs.get(DeviceKeysService).federation = self
        from homeserver.e2ee.remote_device_lists import RemoteDeviceListService
        remote_lists = self.hs.get(RemoteDeviceListService)
        remote_lists.federation = self
        self.hs.on_start(remote_lists.start)

    def _is_mine(self, user_id) -> bool:
        return _domain(user_id) == self.hs.hostname

    async def _joined(self, room_id: str, user_id: str) -> bool:
        from homeserver.rooms.pipeline import RoomEventService
        return await self.hs.get(RoomEventService).get_membership(room_id, user_id) == "join"

    async def _acl_allows(self, origin: str, room_id: str) -> bool:
        from .acl import ServerAclChecker
        return await self.hs.get(ServerAclChecker).is_allowed(origin, room_id)

    # --- inbound ---------------------------------------------------------------------------------
    async def on_typing(self, origin: str, content: dict) -> None:
        from homeserver.ephemeral.typing import TypingService
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not isinstance(room_id, str) or _domain(user_id) != origin or not isinstance(typing, bool):
            return
        if not await self._joined(room_id, user_id) or not await self._acl_allows(origin, room_id):
            return
        timeout = content.get("timeout", 30_000)
        timeout = timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else 30_000
        self.hs.get(TypingService).set_remote_typing(room_id, user_id, typing, timeout)

    async def on_receipt(self, origin: str, content: dict) -> None:
        from homeserver.ephemeral.receipts import ReceiptsService
        from homeserver.storage.receipts_store import UNTHREADED
        from homeserver.sync.notifier import Notifier
        service = self.hs.get(ReceiptsService)
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict) or not await self._acl_allows(origin, room_id):
                continue
            for receipt_type, by_user in by_type.items():
                if receipt_type != "m.read" or not isinstance(by_user, dict):
                    continue
                for user_id, receipt in by_user.items():
                    if _domain(user_id) != origin or not isinstance(receipt, dict):
                        continue
                    event_ids = receipt.get("event_ids")
                    data = receipt.get("data") if isinstance(receipt.get("data"), dict) else {}
                    if not isinstance(event_ids, list) or not event_ids or not isinstance(event_ids[-1], str):
                        continue
                    if not await self._joined(room_id, user_id):
                        continue
                    thread = data.get("thread_id") if isinstance(data.get("thread_id"), str) else UNTHREADED
                    stored = {k: v for k, v in data.items() if k != "thread_id"}
                    (sid,) = service.store.receipt_ids.allocate(1)
                    try:
                        changed = await service.store.upsert_receipt(room_id, receipt_type, user_id, thread,
                                                                     event_ids[-1], stored, sid)
                    finally:
                        service.store.receipt_ids.finish([sid])
                    if changed:
                        self.hs.get(Notifier).notify("receipts", service.current_token(), rooms=[room_id])

    async def on_presence(self, origin: str, content: dict) -> None:
        """``{"push": [{user_id, presence, last_active_ago, status_msg?, currently_active?}]}``:
        each update of one of ``origin``'s users joined to a room here is stored."""
        from homeserver.client.presence import PresenceService
        from homeserver.rooms.pipeline import RoomEventService
        push = content.get("push")
        if not isinstance(push, list):
            return
        presence = self.hs.get(PresenceService)
        now = self.hs.clock_ms()
        for update in push[:1000]:
            if not isinstance(update, dict):
                continue
            user_id, state = update.get("user_id"), update.get("presence")
            ago, status_msg = update.get("last_active_ago", 0), update.get("status_msg")
            if _domain(user_id) != origin or not isinstance(state, str):
                continue
            if not isinstance(ago, int) or isinstance(ago, bool) or ago < 0:
                ago = 0
            if not isinstance(status_msg, str):
                status_msg = None
            if not await self.hs.get(RoomEventService).get_rooms_for_user(user_id):
                continue  # nobody here shares a room with them
            await presence.set_remote_state(user_id, state, status_msg, now - ago)

    async def on_device_list_update(self, origin: str, content: dict) -> None:
        from homeserver.e2ee.remote_device_lists import RemoteDeviceListService
        await self.hs.get(RemoteDeviceListService).on_device_list_update(origin, content)

    async def on_signing_key_update(self, origin: str, content: dict) -> None:
        from homeserver.e2ee.remote_device_lists import RemoteDeviceListService
        await self.hs.get(RemoteDeviceListService).on_signing_key_update(origin, content)

    async def on_to_device(self, origin: str, content: dict) -> None:
        from homeserver.e2ee.to_device import ToDeviceService
        sender, etype, message_id = content.get("sender"), content.get("type"), content.get("message_id")
        messages = content.get("messages")
        if _domain(sender) != origin or not isinstance(etype, str) or not isinstance(message_id, str) \
                or not isinstance(messages, dict):
            return
        local = {u: d for u, d in messages.items() if self._is_mine(u) and isinstance(d, dict)}
        if local:
            await self.hs.get(ToDeviceService).send(sender, f"federation:{origin}", etype, message_id, local)

    # --- outbound ----------------------------------------------------------------------------------
    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        async def send():
            for dest in await self.sender.servers_in_room(room_id):
                self.sender.send_ephemeral_edu(dest, "m.typing", {"room_id": room_id, "user_id": user_id,
                                                                  "typing": typing}, key=(room_id, user_id))
        defer.ensureDeferred(send()).addErrback(lambda f: logger.error("typing EDU failed: %s", f.value))

    def receipt_sent(self, room_id: str, receipt_type: str, user_id: str, event_id: str, data: dict):
        async def send():
            content = {room_id: {receipt_type: {user_id: {"event_ids": [event_id], "data": data}}}}
            thread = data.get("thread_id", "")
            for dest in await self.sender.servers_in_room(room_id):
                await self.sender.queue_edu(dest, "m.receipt", content,
                                            key=f"receipt {room_id} {receipt_type} {user_id} {thread}")
        return defer.ensureDeferred(send()).addErrback(lambda f: logger.error("receipt EDU failed: %s", f.value))

    def presence_changed(self, state) -> None:
        async def send():
            from homeserver.client.presence import federation_update
            update = federation_update(state, self.hs.clock_ms())
            for dest in sorted(await self._servers_sharing_rooms(state.user_id)):
                self.sender.send_ephemeral_edu(dest, "m.presence", {"push": [update]}, key=state.user_id)
        defer.ensureDeferred(send()).addErrback(lambda f: logger.error("presence EDU failed: %s", f.value))

    async def _servers_sharing_rooms(self, user_id: str) -> set[str]:
        from homeserver.rooms.pipeline import RoomEventService
        out: set[str] = set()
        for room_id in await self.hs.get(RoomEventService).get_rooms_for_user(user_id):
            out |= await self.sender.servers_in_room(room_id)
        return out

    async def device_lists_changed(self, stream_id: int, changes: Sequence) -> None:
        """DeviceListService.on_change (called in stream order, once every change up to stream_id
        is committed): m.signing_key_update for a cross-signing change, else one
        m.device_list_update per device row, numbered per user (E2eeStore.get_device_update_sequence)
        with ``prev_id`` the number before, so receivers apply them in sequence and notice a gap."""
        from homeserver.storage.e2ee_store import E2eeStore
        store = self.hs.get(E2eeStore)
        for user_id in sorted({c[0] for c in changes if self._is_mine(c[0])}):
            dests = await self._servers_sharing_rooms(user_id)
            if not dests:
                continue
            if any(device_id is None for u, device_id, _ in changes if u == user_id):
                content = await self._signing_key_update(user_id)
                for dest in sorted(dests):
                    await self.sender.queue_edu(dest, "m.signing_key_update", content, key=f"signing {user_id}")
            before, device_ids = await store.get_device_update_sequence(user_id, stream_id)
            for n, content in enumerate(await self._device_list_updates(user_id, device_ids), start=before + 1):
                content.update({"stream_id": n, "prev_id": [n - 1] if n > 1 else []})
                for dest in sorted(dests):  # not keyed: a replaced EDU would break the sequence
                    await self.sender.queue_edu(dest, "m.device_list_update", content)

    async def _device_list_updates(self, user_id: str, device_ids: list[str]) -> list[dict]:
        """The m.device_list_update contents (without the numbering) of these devices as they are
        now: ``deleted`` when the device is gone, else its keys and display name."""
        from homeserver.e2ee.device_keys import DeviceKeysService
        from homeserver.storage.e2ee_store import E2eeStore
        existing = await self.hs.get(E2eeStore).get_existing_devices(user_id, sorted(set(device_ids)))
        keys = (await self.hs.get(DeviceKeysService).query_local(None, {user_id: sorted(existing)})
                )["device_keys"].get(user_id, {}) if existing else {}
        out = []
        for device_id in device_ids:
            content: dict = {"user_id": user_id, "device_id": device_id}
            if device_id not in existing:
                content["deleted"] = True
            else:
                if existing[device_id] is not None:
                    content["device_display_name"] = existing[device_id]
                if device_id in keys:
                    content["keys"] = {k: v for k, v in keys[device_id].items() if k != "unsigned"}
            out.append(content)
        return out

    async def _signing_key_update(self, user_id: str) -> dict:
        from homeserver.e2ee.device_keys import DeviceKeysService
        answer = await self.hs.get(DeviceKeysService).query_local(None, {user_id: []})
        content = {"user_id": user_id}
        if user_id in answer.get("master_keys", {}):
            content["master_key"] = answer["master_keys"][user_id]
        if user_id in answer.get("self_signing_keys", {}):
            content["self_signing_key"] = answer["self_signing_keys"][user_id]
        return content

    # --- DeviceKeysService.federation ----------------------------------------------------------------
    async def query_keys(self, destination: str, query: dict, timeout_ms: int) -> dict:
        return await self.client.post_json(destination, f"{FED_V1}/user/keys/query", {"device_keys": query},
                                           timeout_s=max(1.0, timeout_ms / 1000))

    # --- RemoteDeviceListService.federation ------------------------------------------------------------
    async def get_user_devices(self, destination: str, user_id: str, timeout_ms: int) -> dict:
        return await self.client.get_json(destination, f"{FED_V1}/user/devices/{quote(user_id, safe='')}",
                                          timeout_s=max(1.0, timeout_ms / 1000))

    async def claim_keys(self, destination: str, query: dict, timeout_ms: int) -> dict:
        return await self.client.post_json(destination, f"{FED_V1}/user/keys/claim", {"one_time_keys": query},
                                           timeout_s=max(1.0, timeout_ms / 1000))
