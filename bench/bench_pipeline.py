"""Benchmark: the event pipeline (build → auth → state → persist → notify) on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_pipeline.py [--events 2000] [--rooms 16] [--engines sqlite,postgres]

Scenarios, each on a fresh database:

* ``one room``: one sender sends ``--events`` messages into one room, one after the other.
* ``N rooms``: ``--rooms`` senders, one per room, each sending its share of ``--events`` one after
  the other, all senders at once (sends into different rooms run concurrently and are committed
  together by the persist queue).
* ``state``: ``--events / 4`` state events into one room (a new state group each).
* ``create room``: rooms created one after the other (8 events each).

PostgreSQL runs on a throwaway server from tests/pg_harness.py (fsync off), and is skipped when no
server can be started. Prints a table and then one JSON line with the same numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet import defer, reactor  # noqa: E402

from homeserver.app import HomeServer  # noqa: E402
from homeserver.protocol import signing  # noqa: E402
from homeserver.rooms.creation import RoomCreationService  # noqa: E402
from homeserver.rooms.pipeline import RoomEventService  # noqa: E402
from homeserver.storage.events_store import EventsStore  # noqa: E402
from homeserver.storage.migrations import prepare_database  # noqa: E402

SERVER = "bench.test"
ALICE = f"@alice:{SERVER}"


def build_hs(engine: str, workdir: str) -> HomeServer:
    key_path = os.path.join(workdir, "signing.key")
    signing.write_signing_key(key_path, signing.generate_signing_key("a_bench"))
    if engine == "sqlite":
        db = SimpleNamespace(engine="sqlite", path=os.path.join(workdir, "bench.db"), dsn=None, pool_max=1)
    else:
        from tests import pg_harness
        server = pg_harness.get_server()
        if not server.admin_dsn:
            raise RuntimeError(server.error or "PostgreSQL unavailable")
        db = SimpleNamespace(engine="postgres", path=None, dsn=server.create_database(), pool_max=5)
    config = SimpleNamespace(server_name=SERVER, default_room_version="12", signing_key_path=key_path, database=db)
    hs = HomeServer(config, reactor)
    prepare_database(hs.db)
    hs.db.start()
    return hs


async def timed_sends(svc: RoomEventService, room_id: str, n: int, latencies: list[float], *, state: bool = False):
    for i in range(n):
        t = time.perf_counter()
        if state:
            await svc.create_and_send_event(room_id, "org.bench.state", {"i": i}, ALICE, f"k{i % 50}")
        else:
            await svc.create_and_send_event(room_id, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"}, ALICE)
        latencies.append(time.perf_counter() - t)


def summary(name: str, events: int, seconds: float, latencies: list[float], batches: int | None) -> dict:
    lat = sorted(latencies)
    return {
        "scenario": name, "events": events, "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1) if seconds else None,
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2) if lat else None,
        "mean_ms": round(statistics.mean(lat) * 1000, 2) if lat else None,
        "transactions": batches,
    }


async def run_engine(engine: str, events: int, rooms: int) -> list[dict]:
    workdir = tempfile.mkdtemp(prefix="uzel-bench-")
    try:
        hs = build_hs(engine, workdir)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(workdir, ignore_errors=True)
        return [{"engine": engine, "skipped": str(e)}]
    try:
        svc = hs.get(RoomEventService)
        creator = hs.get(RoomCreationService)
        store = hs.get(EventsStore)
        results = []

        # create rooms
        lat: list[float] = []
        n_rooms = max(rooms, 10)
        t0 = time.perf_counter()
        room_ids = []
        for _ in range(n_rooms):
            t = time.perf_counter()
            room_ids.append(await creator.create_room(ALICE, name="bench"))
            lat.append(time.perf_counter() - t)
        r = summary("create room", n_rooms * 7, time.perf_counter() - t0, lat, None)
        r["rooms_per_s"] = round(n_rooms / (time.perf_counter() - t0), 1)
        results.append(r)

        # one room, sequential
        lat = []
        b0 = store.batches_committed
        t0 = time.perf_counter()
        await timed_sends(svc, room_ids[0], events, lat)
        results.append(summary("one room", events, time.perf_counter() - t0, lat, store.batches_committed - b0))

        # N rooms, one sequential sender each, all at once
        lat = []
        per_room = max(1, events // rooms)
        b0 = store.batches_committed
        t0 = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(timed_sends(svc, room_ids[i], per_room, lat))
                                   for i in range(rooms)])
        results.append(summary(f"{rooms} rooms", per_room * rooms, time.perf_counter() - t0, lat,
                               store.batches_committed - b0))

        # state events in one room
        lat = []
        n_state = max(1, events // 4)
        b0 = store.batches_committed
        t0 = time.perf_counter()
        await timed_sends(svc, room_ids[1], n_state, lat, state=True)
        results.append(summary("state", n_state, time.perf_counter() - t0, lat, store.batches_committed - b0))
        for r in results:
            r["engine"] = engine
        return results
    finally:
        hs.db.close()
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(results: list[dict]) -> None:
    cols = ["engine", "scenario", "events", "seconds", "events_per_s", "p50_ms", "p99_ms", "transactions"]
    print(" | ".join(f"{c:>12}" for c in cols))
    print("-+-".join("-" * 12 for _ in cols))
    for r in results:
        if "skipped" in r:
            print(f"{r['engine']:>12} | skipped: {r['skipped']}")
            continue
        print(" | ".join(f"{str(r.get(c, '')):>12}" for c in cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=16)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    out: list[dict] = []

    async def go():
        try:
            for engine in args.engines.split(","):
                out.extend(await run_engine(engine.strip(), args.events, args.rooms))
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(go()))
    reactor.run()
    try:
        from tests import pg_harness
        pg_harness.stop_server()
    except Exception:  # noqa: BLE001
        pass
    print_table(out)
    print(json.dumps({"benchmark": "pipeline", "results": out}))


if __name__ == "__main__":
    main()
