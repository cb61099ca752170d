"""The benchmark's measuring rules (bench/load.py, bench/run.py): no network, no servers."""
from __future__ import annotations

import asyncio
import time

import pytest

from bench.load import ApiError, EndpointMissing, HttpClient, Matrix, Response, Stats, percentile, run_load
from bench.run import cell, ratio
from bench.scenarios import ALL_SCENARIOS, SCALES, Row


class CannedClient(HttpClient):
    """Answers every request with the next canned (status, body)."""

    def __init__(self, answers):
        super().__init__("http://test")
        self.answers = list(answers)
        self.requests = []

    async def request(self, method, path, *, token=None, json_body=None, params=None, timeout=60):
        self.requests.append((method, path, params))
        status, body = self.answers.pop(0)
        raw = b"" if body is None else (body if isinstance(body, bytes) else str(body).encode())
        return Response(status, body if isinstance(body, dict) else None, raw, 0.001)


def run(coro):
    return asyncio.run(coro)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_failed_operations_are_errors_never_successes():
    async def op(i):
        if i % 3 == 0:
            raise ApiError("boom")

    stats = run(run_load(op, count=9, concurrency=2, time_limit=10))
    s = stats.summary()
    assert s["count"] == 6 and s["errors"] == 3
    assert s["error_kinds"] == {"boom": 3}


def test_run_load_stops_at_count_and_at_time_limit():
    calls = []

    async def fast(i):
        calls.append(i)

    run(run_load(fast, count=25, concurrency=4, time_limit=10))
    assert sorted(calls) == list(range(25))

    async def slow(i):
        await asyncio.sleep(0.05)

    start = time.perf_counter()
    stats = run(run_load(slow, count=10_000, concurrency=2, time_limit=0.2))
    assert time.perf_counter() - start < 1.0
    assert 0 < stats.summary()["count"] < 100


def test_missing_route_ends_the_run_with_endpoint_missing():
    m = Matrix(CannedClient([(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})] * 4))

    async def op(i):
        await m.create_room(type("U", (), {"token": "t"})())

    with pytest.raises(EndpointMissing) as info:
        run(run_load(op, count=4, concurrency=1, time_limit=10))
    assert info.value.path == "/_matrix/client/v3/createRoom"


def test_not_found_room_is_an_error_not_a_missing_route():
    user = type("U", (), {"token": "t"})()
    m = Matrix(CannedClient([(404, {"errcode": "M_NOT_FOUND", "error": "no room"})]))
    with pytest.raises(ApiError) as info:
        run(m.join(user, "!r:x"))
    assert info.value.kind == "HTTP 404 M_NOT_FOUND"


def test_success_status_without_the_expected_key_is_an_error():
    user = type("U", (), {"token": "t"})()
    m = Matrix(CannedClient([(200, {"no_event_id": 1})]))
    with pytest.raises(ApiError):
        run(m.send_message(user, "!r:x", "hi"))


def test_room_ids_are_percent_encoded_in_paths():
    user = type("U", (), {"token": "t"})()
    client = CannedClient([(200, {"event_id": "$e"})])
    run(Matrix(client).send_message(user, "!abc:example.org", "hi"))
    assert client.requests[0][1].startswith("/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/")


def test_ratio_means_how_many_times_better_uzel_is():
    ok = lambda **kw: {"status": "ok", **kw}  # noqa: E731
    assert ratio(Row("sends", "ops_s"), ok(ops_s=300.0), ok(ops_s=30.0)) == 10
    assert ratio(Row("sync", "p50_ms"), ok(p50_ms=5.0), ok(p50_ms=50.0)) == 10
    assert ratio(Row("rss", "mb"), ok(mb=50.0), ok(mb=100.0)) == 2
    assert ratio(Row("sends", "ops_s"), {"status": "n/a (404)"}, ok(ops_s=30.0)) is None


def test_cells_show_missing_routes_and_error_counts():
    assert cell(Row("sends", "ops_s"), {"status": "n/a (404)"}) == "n/a (404)"
    text = cell(Row("sends", "ops_s"), {"status": "ok", "ops_s": 12.0, "p50_ms": 8.0, "errors": 2})
    assert "12.0/s" in text and "[2 err]" in text


def test_every_scenario_names_its_rows_for_both_scales():
    for scale in SCALES.values():
        names = [r.name for s in ALL_SCENARIOS for r in s.rows(scale)]
        assert len(names) == len(set(names))
        assert all(r.metric in ("ops_s", "p50_ms", "mb") for s in ALL_SCENARIOS for r in s.rows(scale))


def test_stats_summary_of_nothing_has_no_throughput():
    s = Stats()
    s.begin()
    s.end()
    assert s.summary()["count"] == 0 and s.summary()["ops_s"] == 0.0
