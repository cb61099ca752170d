"""Typing notifications, in memory with timeouts (client-server-api "Typing Notifications",
typing.yaml, event m.typing).

A user is typing in a room until their timeout passes or they say they stopped. Every change bumps
the ``typing`` stream serial and records it for the room; /sync sends ``m.typing`` with the room's
whole current list when the room's serial is past the since-token. The serial restarts at 0 with
the server (sync tokens are clamped to it, homeserver/sync/tokens.py).

Seam for federation: ``on_local_change`` — ``fn(room_id, user_id, typing)`` when a local user
starts or stops; :meth:`TypingService.set_remote_typing` takes incoming ``m.typing`` EDUs.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from homeserver.http.errors import bad_json, forbidden, invalid_param
from homeserver.rooms.pipeline import RoomEventService
from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

STREAM = "typing"
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000  # as Synapse


def typing_edu(user_ids: Iterable[str]) -> dict:
    return {"type": "m.typing", "content": {"user_ids": sorted(user_ids)}}


class TypingService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self._typing: dict[str, dict[str, object]] = {}  # room -> user -> timer (DelayedCall)
        self._room_serial: dict[str, int] = {}
        self._serial = 0
        self.on_local_change: list[Callable[[str, str, bool], object]] = []

    def current_token(self) -> int:
        return self._serial

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, ()))

    def changed_rooms(self, room_ids: Iterable[str], since: int) -> dict[str, list[str]]:
        """``{room: current typing users}`` for the rooms whose typing list changed after ``since``
        (since 0: the rooms where someone is typing)."""
        out = {}
        for room_id in room_ids:
            serial = self._room_serial.get(room_id)
            if serial is None:
                continue
            if since == 0:
                if self._typing.get(room_id):
                    out[room_id] = self.typing_users(room_id)
            elif serial > since:
                out[room_id] = self.typing_users(room_id)
        return out

    async def set_typing(self, requester: str, room_id: str, user_id: str, body: dict) -> None:
        """PUT /rooms/{roomId}/typing/{userId}."""
        if requester != user_id:
            raise forbidden("Cannot set another user's typing state")
        typing = body.get("typing")
        if not isinstance(typing, bool):
            raise bad_json("'typing' must be a boolean")
        timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
        if typing:
            if isinstance(timeout, bool) or not isinstance(timeout, int):
                raise bad_json("'timeout' must be an integer")
            if timeout < 0:
                raise invalid_param("'timeout' must not be negative")
        if await self.events.get_membership(room_id, user_id) != "join":
            raise forbidden(f"User {user_id} not in room {room_id}")
        changed = self._set(room_id, user_id, typing, min(timeout, MAX_TIMEOUT_MS) if typing else 0)
        if changed:
            for hook in list(self.on_local_change):
                try:
                    hook(room_id, user_id, typing)
                except Exception:
                    logger.exception("typing hook failed")

    def set_remote_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self._set(room_id, user_id, typing, min(max(timeout_ms, 0), MAX_TIMEOUT_MS))

    def _set(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> bool:
        users = self._typing.setdefault(room_id, {})
        timer = users.pop(user_id, None)
        was_typing = timer is not None
        if timer is not None and timer.active():
            timer.cancel()
        if typing:
            users[user_id] = self.hs.reactor.callLater(timeout_ms / 1000.0, self._expire, room_id, user_id)
        elif not users:
            self._typing.pop(room_id, None)
        if typing or was_typing:
            self._bump(room_id)
        return typing != was_typing

    def _expire(self, room_id: str, user_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None or users.pop(user_id, None) is None:
            return
        if not users:
            self._typing.pop(room_id, None)
        self._bump(room_id)
        for hook in list(self.on_local_change):
            try:
                hook(room_id, user_id, False)
            except Exception:
                logger.exception("typing hook failed")

    def _bump(self, room_id: str) -> None:
        self._serial += 1
        self._room_serial[room_id] = self._serial
        self.hs.get(Notifier).notify(STREAM, self._serial, rooms=[room_id])
