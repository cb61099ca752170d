"""Benchmark: the auth difference of state resolution from the persisted chain-cover index vs the SQL
walk of the auth edges, on a room built through the real pipeline.

    .venv/bin/python bench/bench_auth_chain_db.py [--members 2000] [--renames 1000] [--fork 100]
                                                  [--version 12] [--engines sqlite,postgres] [--repeat 5]

On each engine, on a fresh database:

1. A public room; ``--members`` local users join it one after the other, then ``--renames`` of them
   change their display name (longer membership chains). The time of the joins is reported with
   the index written (``joins_s``), and with ``--persist-baseline`` also for a second room whose
   persist path skips the index (the cost of indexing at persist time).
2. Two branches from one fork point, ``--fork`` state events each, sent with explicit prev_events
   (so the pipeline resolves the two branches' states on every event of the second branch): branch
   A kicks members, changes power levels, topic and custom state; branch B renames other members
   and sets topic and custom state.
3. The auth difference of the states at the fork point and the branches' tips (three sets of
   ~``--members`` state events each), ``--repeat`` times, median reported:
   ``index_warm`` (AuthChainStore.auth_chain_difference, caches filled by the writer),
   ``index_cold`` (a restarted HomeServer: positions and chains read from the database),
   ``sql_walk`` (RoomStateService's fallback: recursive SQL over event_auth_edges),
   ``py_walk`` (homeserver.protocol.auth_chain.auth_chain_difference over events already in memory;
   reference only), and a whole ``resolve`` (RoomStateService.resolve) with the index and with the
   walk. The index and both walks must give the same set (checked).

PostgreSQL runs on a throwaway server from tests/pg_harness.py. Prints a table and one JSON line.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet import defer, reactor  # noqa: E402

from bench.bench_pipeline import ALICE, SERVER, build_hs  # noqa: E402
from homeserver.app import HomeServer  # noqa: E402
from homeserver.protocol import auth_chain  # noqa: E402
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS  # noqa: E402
from homeserver.rooms.creation import RoomCreationService  # noqa: E402
from homeserver.rooms.pipeline import RoomEventService  # noqa: E402
from homeserver.rooms.state import RoomStateService  # noqa: E402
from homeserver.storage.auth_chain_store import AuthChainStore  # noqa: E402
from homeserver.storage.events_store import EventsStore  # noqa: E402


def user(i: int) -> str:
    return f"@u{i:05d}:{SERVER}"


async def populate(hs, version: str, members: int, renames: int) -> tuple[str, float]:
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, room_version=version, preset="public_chat")
    t0 = time.perf_counter()
    for i in range(members):
        await svc.create_and_send_event(room_id, "m.room.member", {"membership": "join"}, user(i), user(i))
    joins_s = time.perf_counter() - t0
    for i in range(renames):
        u = user((i * 7) % members)
        await svc.create_and_send_event(room_id, "m.room.member", {"membership": "join", "displayname": f"n{i}"},
                                        u, u)
    return room_id, joins_s


async def build_forks(hs, room_id: str, members: int, fork: int) -> tuple[list[dict], float]:
    svc = hs.get(RoomEventService)
    snap = await hs.get(RoomStateService).get_snapshot(room_id)
    fork_point = max(snap.extremities)
    heads = {"A": fork_point, "B": fork_point}
    pl = dict((await svc.get_current_state_event(room_id, "m.room.power_levels")).content)

    async def send(branch, etype, content, sender, sk):
        ev = await svc.create_and_send_event(room_id, etype, content, sender, sk, prev_event_ids=[heads[branch]])
        heads[branch] = ev.event_id

    t0 = time.perf_counter()
    for i in range(fork):
        kind = i % 4
        if kind == 0:
            await send("A", "m.room.member", {"membership": "leave"}, ALICE, user(i))
        elif kind == 1:
            pl = dict(pl, users={**pl.get("users", {}), user(members // 2 + i): 10 + i % 40})
            await send("A", "m.room.power_levels", pl, ALICE, "")
        elif kind == 2:
            await send("A", "m.room.topic", {"topic": f"a{i}"}, ALICE, "")
        else:
            await send("A", "org.bench.a", {"i": i}, ALICE, f"k{i % 10}")
    for i in range(fork):
        kind = i % 3
        if kind == 0:
            u = user(members - 1 - i)
            await send("B", "m.room.member", {"membership": "join", "displayname": f"b{i}"}, u, u)
        elif kind == 1:
            await send("B", "m.room.topic", {"topic": f"b{i}"}, ALICE, "")
        else:
            await send("B", "org.bench.b", {"i": i}, ALICE, f"k{i % 10}")
    forks_s = time.perf_counter() - t0
    maps = [await svc.get_state_ids_at(e) for e in (fork_point, heads["A"], heads["B"])]
    return maps, forks_s


async def timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 2), result


def restarted(hs) -> HomeServer:
    fresh = HomeServer(hs.config, reactor)
    fresh.db = hs.db
    return fresh


async def run_engine(engine: str, args) -> dict:
    workdir = tempfile.mkdtemp(prefix="uzel-bench-ac-")
    try:
        hs = build_hs(engine, workdir)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(workdir, ignore_errors=True)
        return {"engine": engine, "skipped": str(e)}
    try:
        out: dict = {"engine": engine, "members": args.members, "renames": args.renames, "fork": args.fork,
                     "version": args.version}
        if args.persist_baseline:
            base_hs = restarted(hs)
            base_hs.get(AuthChainStore).index_events_txn = lambda *a, **kw: 0
            _, out["joins_s_no_index"] = await populate(base_hs, args.version, args.members, 0)
            out["joins_s_no_index"] = round(out["joins_s_no_index"], 2)
        room_id, joins_s = await populate(hs, args.version, args.members, args.renames)
        out["joins_s"] = round(joins_s, 2)
        maps, forks_s = await build_forks(hs, room_id, args.members, args.fork)
        out["forks_s"] = round(forks_s, 2)
        sets = [set(m.values()) for m in maps]
        out["set_sizes"] = [len(s) for s in sets]
        out["index_rows"] = await hs.db.run("count", lambda t: [
            t.scalar("SELECT COUNT(*) FROM event_auth_chains"),
            t.scalar("SELECT COUNT(DISTINCT chain_id) FROM event_auth_chains"),
            t.scalar("SELECT COUNT(*) FROM event_auth_chain_links")])

        state = hs.get(RoomStateService)
        common = set.intersection(*sets)
        specific = [s - common for s in sets]
        out["index_warm_ms"], by_index = await timed(
            lambda: hs.get(AuthChainStore).auth_chain_difference(sets), args.repeat)
        cold_times = []
        for _ in range(args.repeat):
            fresh = restarted(hs)
            t = time.perf_counter()
            await fresh.get(AuthChainStore).auth_chain_difference(sets)
            cold_times.append(time.perf_counter() - t)
        out["index_cold_ms"] = round(statistics.median(cold_times) * 1000, 2)
        out["sql_walk_ms"], (by_walk, _) = await timed(
            lambda: state._auth_difference_walk(common, specific, None), args.repeat)
        ids_ = await hs.db.run("ids", lambda t: [r[0] for r in t.execute(
            "SELECT event_id FROM events WHERE room_id = ? AND state_key IS NOT NULL", (room_id,)).fetchall()])
        events = await hs.get(EventsStore).get_events(ids_, allow_rejected=True)
        t = time.perf_counter()
        by_py = auth_chain.auth_chain_difference(sets, events.get)
        out["py_walk_ms"] = round((time.perf_counter() - t) * 1000, 2)
        if not (by_index == by_walk == by_py):
            raise AssertionError(f"differences disagree: index {len(by_index)}, sql {len(by_walk)}, py {len(by_py)}")
        out["difference_size"] = len(by_index)

        rv = KNOWN_ROOM_VERSIONS[args.version]
        out["resolve_index_ms"], with_index = await timed(lambda: state.resolve(rv, maps), args.repeat)
        real = state._auth_difference_from_index

        async def no_index(*_a):
            return None
        state._auth_difference_from_index = no_index
        try:
            out["resolve_walk_ms"], with_walk = await timed(lambda: state.resolve(rv, maps), args.repeat)
        finally:
            state._auth_difference_from_index = real
        if with_index != with_walk:
            raise AssertionError("resolution differs between index and walk")
        return out
    finally:
        hs.db.close()
        shutil.rmtree(workdir, ignore_errors=True)


COLS = ["engine", "joins_s", "joins_s_no_index", "forks_s", "difference_size", "index_warm_ms", "index_cold_ms",
        "sql_walk_ms", "py_walk_ms", "resolve_index_ms", "resolve_walk_ms"]


def print_table(results: list[dict]) -> None:
    print(" | ".join(f"{c:>16}" for c in COLS))
    print("-+-".join("-" * 16 for _ in COLS))
    for r in results:
        if "skipped" in r:
            print(f"{r['engine']:>16} | skipped: {r['skipped']}")
            continue
        print(" | ".join(f"{str(r.get(c, '')):>16}" for c in COLS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--renames", type=int, default=1000)
    parser.add_argument("--fork", type=int, default=100)
    parser.add_argument("--version", default="12")
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--persist-baseline", action="store_true",
                        help="also time the joins into a room whose persist path skips the index")
    args = parser.parse_args()
    out: list[dict] = []

    async def go():
        try:
            for engine in args.engines.split(","):
                out.append(await run_engine(engine.strip(), args))
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
    print(json.dumps({"benchmark": "auth_chain_db", "results": out}))


if __name__ == "__main__":
    main()
