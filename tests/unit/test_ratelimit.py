"""The token-bucket rate limiter (homeserver/accounts/ratelimit.py) with a fake clock."""
from types import SimpleNamespace

import pytest

from config.schema import RatelimitingConfig, RatelimitSettings
from homeserver.accounts.ratelimit import Ratelimiter
from homeserver.http.errors import MatrixError


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def limiter(enabled=True, **rc):
    clock = Clock()
    config = SimpleNamespace(ratelimiting=RatelimitingConfig(enabled=enabled, **rc))
    return Ratelimiter(config=config, clock=clock), clock


def test_burst_is_allowed_then_refused_with_retry_after():
    rl, _ = limiter(rc_message=RatelimitSettings(per_second=0.5, burst_count=3))
    for _ in range(3):
        rl.check("rc_message", "@a:x")
    with pytest.raises(MatrixError) as e:
        rl.check("rc_message", "@a:x")
    assert (e.value.code, e.value.errcode, e.value.extra["retry_after_ms"]) == (429, "M_LIMIT_EXCEEDED", 2000)
    assert e.value.headers["Retry-After"] == "2"


def test_bucket_drains_over_time_and_keys_are_independent():
    rl, clock = limiter(rc_message=RatelimitSettings(per_second=1, burst_count=1))
    rl.check("rc_message", "@a:x")
    assert rl.can_do("rc_message", "@a:x") == (False, 1000)
    assert rl.can_do("rc_message", "@b:x") == (True, 0)
    clock.t += 1
    assert rl.can_do("rc_message", "@a:x") == (True, 0)


def test_nested_settings_by_dotted_name():
    rl, _ = limiter()
    assert rl.settings("rc_login.failed_attempts") == RatelimitSettings(0.17, 3)
    assert rl.settings("rc_nonexistent") is None
    assert rl.can_do("rc_nonexistent", "k") == (True, 0)


def test_update_false_only_looks_and_record_counts_past_the_limit():
    rl, _ = limiter()
    for _ in range(5):
        assert rl.can_do("rc_login.failed_attempts", "@a:x", update=False)[0]
    for _ in range(4):
        rl.record("rc_login.failed_attempts", "@a:x")
    allowed, retry = rl.can_do("rc_login.failed_attempts", "@a:x", update=False)
    assert not allowed and retry > 0


def test_disabled_limiter_allows_everything():
    rl, _ = limiter(enabled=False, rc_message=RatelimitSettings(per_second=0, burst_count=0))
    for _ in range(100):
        rl.check("rc_message", "@a:x")


def test_appservice_without_rate_limit_is_exempt():
    rl, _ = limiter(rc_message=RatelimitSettings(per_second=0, burst_count=0))
    exempt = SimpleNamespace(app_service=SimpleNamespace(rate_limited=False))
    rl.check("rc_message", "@bot:x", requester=exempt)
    with pytest.raises(MatrixError):
        rl.check("rc_message", "@bot:x", requester=SimpleNamespace(app_service=None))
