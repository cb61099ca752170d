"""Telling /sync that a per-user stream moved.

After each committed write the services call :func:`notify_stream`: it wakes long-polls through
``homeserver.sync.notifier.Notifier`` when that module exists, and calls the service's own
``listeners`` (plain callables ``fn(stream_name, token, rooms, users)``) so sync code can also
subscribe directly.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

logger = logging.getLogger(__name__)

StreamListener = Callable[[str, int, tuple, tuple], None]


def notify_stream(hs, listeners: list[StreamListener], stream_name: str, token: int,
                  rooms: Iterable[str] = (), users: Iterable[str] = ()) -> None:
    rooms, users = tuple(rooms), tuple(users)
    try:
        from homeserver.sync.notifier import Notifier
    except ImportError:
        Notifier = None
    if Notifier is not None:
        try:
            hs.get(Notifier).notify(stream_name, token, rooms=rooms, users=users)
        except Exception:
            logger.exception("notifier failed for %s@%d", stream_name, token)
    for listener in list(listeners):
        try:
            listener(stream_name, token, rooms, users)
        except Exception:
            logger.exception("stream listener failed for %s@%d", stream_name, token)
