"""Per-room serialisation: one writer at a time inside a room, rooms never block each other."""
from __future__ import annotations

import contextlib
from typing import AsyncIterator

from twisted.internet import defer


class RoomLocks:
    """``async with locks.lock(room_id): ...`` holds the room's lock; waiting is FIFO and
    cancel-safe (a cancelled waiter leaves the queue). Idle rooms hold no lock object."""

    def __init__(self, hs=None):
        self._locks: dict[str, defer.DeferredLock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def lock(self, room_id: str) -> AsyncIterator[None]:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = defer.DeferredLock()
        self._users[room_id] = self._users.get(room_id, 0) + 1
        try:
            await lock.acquire()
            try:
                yield
            finally:
                lock.release()
        finally:
            n = self._users[room_id] - 1
            if n:
                self._users[room_id] = n
            else:
                del self._users[room_id]
                del self._locks[room_id]
