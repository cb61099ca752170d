"""Wakes /sync long-polls when something relevant to them is written.

Writers call :meth:`Notifier.notify` (``"events"`` with the new stream ordering and the room, plus
the users whose membership changed; other streams — typing, receipts, to-device, account data,
presence — with their own tokens and the rooms/users they concern). A long-poll calls
:meth:`Notifier.wait_for` with the user, the rooms it is in and the stream tokens it has seen; it
returns True as soon as any of those streams has moved past the given token for that user or one of
those rooms (immediately if that already happened), or False at the timeout.

Everything is in memory: no database access, and cancelling a waiting call (client disconnected)
simply removes its waiter.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from twisted.internet import defer

_ALL = ("all", "")


class _Waiter:
    __slots__ = ("deferred", "keys", "since")

    def __init__(self, keys: list[tuple[str, str]], since: Mapping[str, int]):
        self.deferred: defer.Deferred = defer.Deferred()
        self.keys = keys
        self.since = since


class Notifier:
    def __init__(self, hs):
        self.hs = hs
        self._reactor = hs.reactor
        # (kind, id) -> stream -> latest token notified for it; kind is "room", "user" or "all".
        self._latest: dict[tuple[str, str], dict[str, int]] = {}
        self._waiters: dict[tuple[str, str], set[_Waiter]] = {}
        self._current: dict[str, int] = {}
        #: ``fn(stream_name, token, rooms, users)`` called on every notify (application services'
        #: pusher); must be fast and must not raise.
        self.listeners: list = []

    def current_token(self, stream_name: str) -> int:
        """The highest token notified for a stream (0 if none yet)."""
        return self._current.get(stream_name, 0)

    def latest(self, kind: str, key: str, stream_name: str) -> int:
        """The latest token notified for ``stream_name`` to one room (``kind`` "room") or user
        ("user") since the process started (0 if none)."""
        return self._latest.get((kind, key), {}).get(stream_name, 0)

    def notify(self, stream_name: str, token: int, rooms: Iterable[str] = (),
               users: Iterable[str] = ()) -> None:
        """Record that ``stream_name`` reached ``token`` for these rooms and users (for everyone when
        both are empty) and wake the long-polls waiting on any of them."""
        rooms, users = tuple(rooms), tuple(users)
        if token > self._current.get(stream_name, 0):
            self._current[stream_name] = token
        keys = [("room", r) for r in rooms] + [("user", u) for u in users]
        if not keys:
            keys = [_ALL]
        woken: set[_Waiter] = set()
        for key in keys:
            streams = self._latest.setdefault(key, {})
            if token > streams.get(stream_name, 0):
                streams[stream_name] = token
            waiters = self._waiters.get(key)
            if waiters:
                woken.update(w for w in waiters if token > w.since.get(stream_name, 0))
        for w in woken:
            self._remove(w)
            if not w.deferred.called:
                w.deferred.callback(True)
        for listener in self.listeners:
            listener(stream_name, token, rooms, users)

    def has_new_data(self, user_id: str, rooms: Iterable[str], since_tokens: Mapping[str, int]) -> bool:
        for key in self._keys(user_id, rooms):
            for stream, token in self._latest.get(key, {}).items():
                if token > since_tokens.get(stream, 0):
                    return True
        return False

    async def wait_for(self, user_id: str, rooms: Iterable[str], since_tokens: Mapping[str, int],
                       timeout_ms: int) -> bool:
        """Wait until a stream moves past ``since_tokens[stream]`` for this user, one of ``rooms``, or
        everyone; True when that happened (or had already happened), False after ``timeout_ms``.

        A stream missing from ``since_tokens`` counts as 0. Cancel-safe."""
        keys = self._keys(user_id, rooms)
        if self.has_new_data(user_id, rooms, since_tokens):
            return True
        if timeout_ms <= 0:
            return False
        waiter = _Waiter(keys, dict(since_tokens))
        for key in keys:
            self._waiters.setdefault(key, set()).add(waiter)
        timer = self._reactor.callLater(timeout_ms / 1000.0, self._timeout, waiter)
        try:
            return await waiter.deferred
        finally:
            if timer.active():
                timer.cancel()
            self._remove(waiter)

    def _timeout(self, waiter: _Waiter) -> None:
        self._remove(waiter)
        if not waiter.deferred.called:
            waiter.deferred.callback(False)

    def _remove(self, waiter: _Waiter) -> None:
        for key in waiter.keys:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]

    @staticmethod
    def _keys(user_id: str, rooms: Iterable[str]) -> list[tuple[str, str]]:
        return [("user", user_id), _ALL] + [("room", r) for r in rooms]

    def waiter_count(self) -> int:
        return len({id(w) for ws in self._waiters.values() for w in ws})
