"""Rate limiting: one leaky token bucket per (action, key).

An action names a ``rc_*`` setting of the config (``"rc_login.address"``, ``"rc_message"``,
``"rc_joins.local"``); the key says whose bucket it is (a user ID, an IP address, a room ID).
Each bucket holds up to ``burst_count`` actions and drains at ``per_second``; an action that
does not fit raises ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` (client-server-api "Rate
limiting"). ``enable_ratelimiting: false`` turns every limiter off.

Usage::

    limiter = hs.get(Ratelimiter)
    limiter.check("rc_message", requester.user_id, requester=requester)   # raises 429
    ok, retry_ms = limiter.can_do("rc_login.failed_attempts", user_id, update=False)
"""
from __future__ import annotations

import time
from typing import Callable

from homeserver.http.errors import limit_exceeded

_PRUNE_EVERY = 1000  # checks between sweeps of drained buckets


class Ratelimiter:
    def __init__(self, hs=None, *, config=None, clock: Callable[[], float] | None = None):
        config = config if config is not None else hs.config
        self._rc = getattr(config, "ratelimiting", None)
        enabled = getattr(self._rc, "enabled", None)
        if enabled is None:
            enabled = getattr(config, "enable_ratelimiting", True)
        self.enabled: bool = bool(enabled)
        self._clock = clock or time.monotonic
        # (action, key) -> (actions counted, time of last update in seconds, drain rate per second)
        self._buckets: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._checks = 0

    def settings(self, action: str):
        """The RatelimitSettings named by ``action`` ("rc_login.address"), or None if unset."""
        obj = self._rc
        for part in action.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    def can_do(self, action: str, key: str, *, settings=None, n_actions: int = 1,
               update: bool = True) -> tuple[bool, int]:
        """(allowed, retry_after_ms); when allowed and ``update``, the actions are counted."""
        if not self.enabled:
            return True, 0
        settings = settings or self.settings(action)
        if settings is None:
            return True, 0
        rate, burst = float(settings.per_second), int(settings.burst_count)
        now = self._clock()
        self._maybe_prune(now)
        count, last, _ = self._buckets.get((action, key), (0.0, now, rate))
        count = max(0.0, count - (now - last) * rate)
        allowed = count + n_actions <= burst
        if allowed and update:
            count += n_actions
        self._buckets[(action, key)] = (count, now, rate)
        if allowed:
            return True, 0
        if rate <= 0:
            return False, 24 * 3600 * 1000
        return False, max(1, int((count + n_actions - burst) / rate * 1000))

    def check(self, action: str, key: str, *, settings=None, n_actions: int = 1, update: bool = True,
              requester=None) -> None:
        """Count the action, or raise M_LIMIT_EXCEEDED (429). Application services registered
        with ``rate_limited: false`` are exempt when passed as the requester, and a service's own
        sender always is (registration.yaml ``rate_limited``: "The sender is excluded")."""
        service = requester.app_service if requester is not None else None
        if service is not None and (not getattr(service, "rate_limited", True)
                                    or getattr(requester, "user_id", None) == getattr(service, "sender", None)):
            return
        allowed, retry_after_ms = self.can_do(action, key, settings=settings, n_actions=n_actions, update=update)
        if not allowed:
            raise limit_exceeded(retry_after_ms)

    def record(self, action: str, key: str, *, settings=None, n_actions: int = 1) -> None:
        """Count actions that already happened, even past the limit (failed logins)."""
        if not self.enabled:
            return
        settings = settings or self.settings(action)
        if settings is None:
            return
        now = self._clock()
        rate = float(settings.per_second)
        count, last, _ = self._buckets.get((action, key), (0.0, now, rate))
        count = max(0.0, count - (now - last) * rate)
        self._buckets[(action, key)] = (count + n_actions, now, rate)

    def reset(self, action: str, key: str) -> None:
        self._buckets.pop((action, key), None)

    def _maybe_prune(self, now: float) -> None:
        self._checks += 1
        if self._checks % _PRUNE_EVERY:
            return
        drained = [k for k, (count, last, rate) in self._buckets.items()
                   if rate > 0 and count - (now - last) * rate <= 0]
        for k in drained:
            del self._buckets[k]
