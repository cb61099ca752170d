"""Receipts and read markers (client-server-api "Receipts" incl. threaded and private read
receipts, "Fully read markers"; receipts.yaml, read_markers.yaml).

Receipts are persisted (ReceiptsStore) at positions of the ``receipts`` stream; /sync shows them as
``m.receipt`` ephemeral events (:func:`receipts_edu`). ``m.read.private`` receipts are only ever
shown to their owner. ``m.fully_read`` is room account data (``{"event_id": ...}``) written through
the account-data service; it only moves forwards. Read receipts clear the unread notification
counts up to their event (homeserver/push/notification_counts.py).

Seam for federation: ``on_local_receipt`` — ``fn(room_id, receipt_type, user_id, event_id, data)``
after a public receipt of a local user was stored.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from homeserver.client.account_data import AccountDataService
from homeserver.http.errors import bad_json, forbidden, invalid_param, not_found
from homeserver.protocol.ids import is_valid_room_id
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.receipts_store import MAIN_THREAD, UNTHREADED, ReceiptRow, ReceiptsStore
from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

STREAM = "receipts"
READ, READ_PRIVATE, FULLY_READ = "m.read", "m.read.private", "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ)


def receipts_edu(rows: Iterable[ReceiptRow], viewer: str) -> dict | None:
    """The ``m.receipt`` event (receipt.yaml) for ``rows`` of one room as ``viewer`` sees them
    (other users' ``m.read.private`` receipts left out), or None when nothing is left (pure)."""
    content: dict = {}
    for r in rows:
        if r.receipt_type == READ_PRIVATE and r.user_id != viewer:
            continue
        data = dict(r.data)
        if r.thread_id:
            data["thread_id"] = r.thread_id
        content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
    return {"type": "m.receipt", "content": content} if content else None


class ReceiptsService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(ReceiptsStore)
        self.events = hs.get(RoomEventService)
        self.account_data = hs.get(AccountDataService)
        self.on_local_receipt: list[Callable] = []
        #: ``fn(room_id, user_id)`` after a local m.read or m.read.private receipt changed (it may
        #: have cleared notifications: homeserver/push/pusher_pool.py sends badge updates).
        self.on_read_receipt: list[Callable] = []

    def current_token(self) -> int:
        return self.store.receipt_ids.current_token()

    async def _check_room(self, user_id: str, room_id: str) -> None:
        if not is_valid_room_id(room_id):
            raise invalid_param(f"{room_id!r} is not a room ID")
        if await self.events.get_membership(room_id, user_id) != "join":
            raise forbidden(f"User {user_id} not in room {room_id}")

    async def send_receipt(self, user_id: str, room_id: str, receipt_type: str, event_id: str,
                           thread_id: object = None) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}."""
        if receipt_type not in RECEIPT_TYPES:
            raise invalid_param(f"Receipt type must be one of {', '.join(RECEIPT_TYPES)}")
        if thread_id is not None:
            if not isinstance(thread_id, str) or not thread_id:
                raise invalid_param("thread_id field must be a non-empty string")
            if receipt_type == FULLY_READ:
                raise invalid_param(f"thread_id is not allowed for {FULLY_READ}")
            if thread_id != MAIN_THREAD and not thread_id.startswith("$"):
                raise invalid_param("thread_id must be 'main' or an event ID")
        if not isinstance(event_id, str) or not event_id.startswith("$"):
            raise invalid_param("Invalid event ID")
        await self._check_room(user_id, room_id)
        if receipt_type == FULLY_READ:
            await self.set_fully_read(user_id, room_id, event_id)
            return
        await self._store(user_id, room_id, receipt_type, event_id, thread_id or UNTHREADED)

    async def _store(self, user_id: str, room_id: str, receipt_type: str, event_id: str, thread_id: str) -> None:
        data = {"ts": self.hs.clock_ms()}
        ids = self.store.receipt_ids
        (stream_id,) = ids.allocate(1)
        try:
            changed = await self.store.upsert_receipt(room_id, receipt_type, user_id, thread_id, event_id, data,
                                                      stream_id)
        finally:
            ids.finish([stream_id])
        if not changed:
            return
        # The room's members see the receipt; the user's own syncs also see their counts change.
        self.hs.get(Notifier).notify(STREAM, self.current_token(), rooms=[room_id], users=[user_id])
        for read_hook in list(self.on_read_receipt):
            try:
                read_hook(room_id, user_id)
            except Exception:
                logger.exception("read receipt hook failed")
        if receipt_type == READ:
            full = dict(data, thread_id=thread_id) if thread_id else data
            for hook in list(self.on_local_receipt):
                try:
                    hook(room_id, receipt_type, user_id, event_id, full)
                except Exception:
                    logger.exception("receipt hook failed")

    async def set_read_markers(self, user_id: str, room_id: str, body: dict) -> None:
        """POST /rooms/{roomId}/read_markers: ``m.fully_read`` and/or ``m.read``/``m.read.private``."""
        for key in (FULLY_READ, READ, READ_PRIVATE):
            if key in body and not (isinstance(body[key], str) and body[key].startswith("$")):
                raise bad_json(f"'{key}' must be an event ID")
        await self._check_room(user_id, room_id)
        if FULLY_READ in body:
            await self.set_fully_read(user_id, room_id, body[FULLY_READ])
        for key in (READ, READ_PRIVATE):
            if key in body:
                await self._store(user_id, room_id, key, body[key], UNTHREADED)

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        """Move the ``m.fully_read`` marker (room account data) to ``event_id``, which must be an
        event of the room (read_markers.yaml); a marker never moves backwards (as Synapse)."""
        meta = (await self.events.store.get_event_metas([event_id])).get(event_id)
        if meta is None or meta.room_id != room_id:
            raise not_found("Event not found in this room")
        current = await self.account_data.get_room(user_id, room_id, FULLY_READ)
        old_id = current.get("event_id") if isinstance(current, dict) else None
        if old_id == event_id:
            return
        if isinstance(old_id, str):
            old = (await self.events.store.get_event_metas([old_id])).get(old_id)
            if old is not None and old.stream_ordering is not None and meta.stream_ordering is not None \
                    and meta.stream_ordering < old.stream_ordering:
                return
        await self.account_data.set_room(user_id, room_id, FULLY_READ, {"event_id": event_id})

    async def get_receipts(self, room_ids: Iterable[str], from_id: int, to_id: int) -> list[ReceiptRow]:
        return await self.store.get_receipts_for_rooms(room_ids, from_id, to_id)
