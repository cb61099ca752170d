"""The device-list stream: whose devices or cross-signing keys changed, and who must hear of it.

end_to_end_encryption.md "Tracking the device list for a user" and "Extensions to /sync": a
user appears in another's ``device_lists.changed`` when their device identity keys or
cross-signing keys changed, or when the two newly share a room; in ``left`` when they no longer
share any room. keys.yaml ``/keys/changes`` answers the same question between two sync tokens.

Every change is a row in ``e2e_device_list_stream`` at a stream ID; after the commit the
notifier's ``"device_lists"`` stream wakes the changed user and the rooms they are in.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence

from homeserver.http.errors import invalid_param
from homeserver.storage.e2ee_store import E2eeStore

logger = logging.getLogger(__name__)

STREAM = "device_lists"

# (user_id, device_id or None for a cross-signing change, only_for or None)
Change = tuple[str, "str | None", "str | None"]


class DeviceListService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(E2eeStore)
        # Overrides how /keys/changes reads sync tokens: token -> (device-list position,
        # events position or None). Default: homeserver.sync.tokens.SyncToken.
        self.sync_token_parser: Callable[[str], tuple[int, int | None]] | None = None
        # Seam for federation: called with the stream ID of each public change batch.
        self.on_change: list[Callable[[int, Sequence[Change]], object]] = []
        self._unnotified: list[tuple[int, list[Change]]] = []
        from homeserver.accounts.devices import DeviceService
        devices = hs.get(DeviceService)
        devices.on_device_updated.append(self._device_updated)
        devices.on_device_deleted.append(self._devices_deleted)

    # --- positions ----------------------------------------------------------------------------
    def current_position(self) -> int:
        """The device-list stream position every committed change is at or below."""
        return self.store.device_list_ids.current_token()

    def parse_sync_token(self, token: str) -> tuple[int, int | None]:
        """(device-list position, events position) of a /sync ``next_batch`` token
        (homeserver/sync/tokens.py)."""
        from homeserver.sync.tokens import SyncToken, TokenError
        if self.sync_token_parser is not None:
            try:
                return self.sync_token_parser(token)
            except ValueError as e:
                raise invalid_param(f"Invalid sync token {token!r}: {e}") from None
        try:
            parsed = SyncToken.parse(token)
        except TokenError as e:
            raise invalid_param(f"Invalid sync token {token!r}: {e}") from None
        return parsed.device_lists, parsed.events

    # --- who shares a room with whom ------------------------------------------------------------
    async def users_sharing_room_with(self, user_id: str) -> set[str]:
        """Users currently joined to a room the user is joined to (the user included).

        Reads room_memberships directly (E2eeStore.get_users_sharing_room); switch to the room
        service's membership query if one appears with caching."""
        shared = await self.store.get_users_sharing_room(user_id)
        shared.add(user_id)
        return shared

    # --- recording changes ------------------------------------------------------------------------
    async def record_changes(self, changes: Sequence[Change]) -> int:
        """Write device-list rows, then wake whoever must hear of them; returns the stream ID."""
        with self.store.device_list_ids.get_next() as stream_id:
            await self.store.add_device_list_changes(changes, stream_id)
        await self.changes_committed(stream_id, changes)
        return stream_id

    async def changes_committed(self, stream_id: int, changes: Iterable[Change]) -> None:
        """Notify /sync (and the federation seam) of changes already written at stream_id."""
        changes = list(changes)
        from homeserver.sync.notifier import Notifier
        notifier = self.hs.get(Notifier)
        # Notify at the current position, which an earlier change still being written holds
        # below stream_id: such changes wait here until the position passes them.
        self._unnotified.append((stream_id, changes))
        token = self.current_position()
        batches = sorted((b for b in self._unnotified if b[0] <= token), key=lambda b: b[0])
        self._unnotified = [(sid, cs) for sid, cs in self._unnotified if sid > token]
        ready = [c for _, cs in batches for c in cs]
        for user_id in sorted({c[0] for c in ready if c[2] is None}):
            rooms = await self.store.get_joined_rooms(user_id)
            notifier.notify(STREAM, token, rooms=rooms, users=[user_id])
        for only_for in sorted({c[2] for c in ready if c[2] is not None}):
            notifier.notify(STREAM, token, users=[only_for])
        # The federation seam hears of a batch once every change below it is committed, in
        # stream order (it numbers each user's device updates for other servers).
        for sid, cs in batches:
            public = [c for c in cs if c[2] is None]
            if not public:
                continue
            for hook in list(self.on_change):
                try:
                    result = hook(sid, public)
                    if hasattr(result, "__await__"):
                        await result
                except Exception:
                    logger.exception("device-list hook %r failed", hook)

    async def _device_updated(self, user_id: str, device_ids: list[str]) -> None:
        """DeviceService hook: a renamed device changes ``unsigned.device_display_name``."""
        await self.record_changes([(user_id, d, None) for d in device_ids])

    async def _devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """DeviceService hook: logout.yaml "Device keys for the device are deleted alongside the
        device"; its one-time keys, fallback keys and to-device inbox go too."""
        with self.store.device_list_ids.get_next() as stream_id:
            await self.store.delete_devices_e2e(user_id, device_ids, stream_id)
        await self.changes_committed(stream_id, [(user_id, d, None) for d in device_ids])

    # --- reading changes --------------------------------------------------------------------------
    async def get_device_list_changes(self, user_id: str, from_pos: int, to_pos: int | None = None, *,
                                      from_room_pos: int | None = None,
                                      to_room_pos: int | None = None) -> tuple[set[str], set[str]]:
        """(changed, left) for ``user_id`` between device-list positions (from_pos, to_pos]
        (to_pos defaults to now), and — when events-stream positions are given — membership
        changes between them ("Extensions to /sync" DeviceLists):

        * changed: users sharing a room with the user (or the user) whose devices or
          cross-signing keys changed; users whose master key the user's user-signing key signed;
          users who newly share a room with the user;
        * left: users who shared a room with the user and share none now.
        """
        if to_pos is None:
            to_pos = self.current_position()
        public, private = await self.store.get_device_list_changes(from_pos, to_pos, user_id)
        shared = await self.users_sharing_room_with(user_id)
        changed = (public & shared) | private
        left: set[str] = set()
        if from_room_pos is not None and to_room_pos is not None:
            joined, departed = await self.store.get_membership_changes(user_id, from_room_pos, to_room_pos)
            joined.discard(user_id)
            changed |= joined & shared
            left = {u for u in departed if u not in shared}
            changed -= left
        return changed, left
