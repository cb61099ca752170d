"""Presence timeouts (modules/presence.md, "idle" / offline after no activity): a local user who
stopped syncing and a remote user with no updates go offline, each after their own delay."""
from types import SimpleNamespace

import pytest_twisted

from homeserver.client.presence import REMOTE_TIMEOUT_MS, SYNC_ONLINE_TIMEOUT_MS, PresenceService, PresenceState


def _service(now_ms: int, states: dict) -> tuple[PresenceService, list]:
    written = []
    svc = PresenceService.__new__(PresenceService)
    svc.hs = SimpleNamespace(clock_ms=lambda: now_ms)
    svc._last_sync, svc._remote_updates = {}, {}

    async def get_state(user_id):
        return states.get(user_id)

    async def write(state):
        written.append(state)
    svc._get_state, svc._write = get_state, write
    return svc, written


@pytest_twisted.ensureDeferred
async def test_users_go_offline_after_their_own_timeout_and_only_once():
    now = 10 * REMOTE_TIMEOUT_MS
    states = {u: PresenceState(u, "online", "hi", 5) for u in ("@a:here", "@b:here", "@c:there", "@d:there")}
    svc, written = _service(now, states)
    svc._last_sync.update({"@a:here": now - SYNC_ONLINE_TIMEOUT_MS, "@b:here": now - SYNC_ONLINE_TIMEOUT_MS + 1})
    svc._remote_updates.update({"@c:there": now - REMOTE_TIMEOUT_MS, "@d:there": now - SYNC_ONLINE_TIMEOUT_MS})
    await svc._check_timeouts()
    assert written == [PresenceState("@a:here", "offline", "hi", 5), PresenceState("@c:there", "offline", "hi", 5)]
    assert set(svc._last_sync) == {"@b:here"} and set(svc._remote_updates) == {"@d:there"}
    await svc._check_timeouts()
    assert len(written) == 2
