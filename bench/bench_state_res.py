"""Benchmark: state resolution and event auth on a large synthetic room.

    .venv/bin/python bench/bench_state_res.py [--members 2000] [--state 5000] [--messages 10000]

1. Builds a room (v1 for state res v1, v11 for v2, v12 for v2.1) with ``--members`` joined members and
   ``--state`` state events in total, then two forks of ~100 state changes each (kicks, bans,
   leaves, displayname changes, power levels, topics, custom state) and resolves the forks'
   states — with the plain auth-chain walk and with the chain-cover ``AuthChainIndex``.
2. Checks a chain of ``--messages`` events (messages with a state change every 20th event)
   against their auth events and against the current state.

Prints a table and then one JSON line with the same numbers. Pure Python, no I/O besides stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from homeserver.protocol import event_auth  # noqa: E402
from homeserver.protocol.auth_chain import AuthChainIndex, auth_chain_difference  # noqa: E402
from homeserver.protocol.events import Event  # noqa: E402
from homeserver.protocol.room_versions import get_room_version  # noqa: E402
from homeserver.protocol.state_res import resolve_state  # noqa: E402

ALICE = "@alice:bench.test"
CREATE = ("m.room.create", "")


class Room:
    """A synthetic room: events in a dict, forks as (state map, last event id) pairs."""

    def __init__(self, version: str):
        self.rv = get_room_version(version)
        self.events: dict[str, Event] = {}
        self.n = 0
        self.room_id = "!bench:bench.test"
        self.create_event: Event | None = None

    def add(self, fork: dict, type_: str, sender: str, content: dict, state_key: str | None = None) -> Event:
        """Append an event to ``fork`` ({"state": ..., "head": ...}); auth_events are selected
        from the fork's state."""
        self.n += 1
        eid = f"$ev{self.n:07d}"
        pdu = {"type": type_, "sender": sender, "content": content, "origin_server_ts": 1_000 + self.n,
               "depth": self.n, "prev_events": [fork["head"]] if fork["head"] else []}
        if state_key is not None:
            pdu["state_key"] = state_key
        if type_ == "m.room.create" and self.rv.room_id_from_create_event:
            self.room_id = "!" + eid[1:]
        else:
            pdu["room_id"] = self.room_id
        probe = Event(pdu, self.rv, event_id=eid)
        state = fork["state"]
        pdu["auth_events"] = [state[k] for k in sorted(event_auth.auth_types_for_event(self.rv, probe))
                              if k in state]
        ev = Event(pdu, self.rv, event_id=eid)
        self.events[eid] = ev
        if type_ == "m.room.create":
            self.create_event = ev
        if ev.is_state():
            state[ev.state_tuple] = eid
        fork["head"] = eid
        return ev

    def auth_state(self, state: dict) -> dict:
        return {k: self.events[v] for k, v in state.items()}


def user(i: int) -> str:
    return f"@u{i:05d}:bench.test"


def build_room(version: str, members: int, total_state: int):
    room = Room(version)
    main = {"state": {}, "head": None}
    content = {"room_version": version}
    if not room.rv.implicit_room_creator:
        content["creator"] = ALICE
    room.add(main, "m.room.create", ALICE, content, "")
    room.add(main, "m.room.member", ALICE, {"membership": "join"}, ALICE)
    mods = {user(i): 50 for i in range(0, 20)}
    pl_users = dict(mods) if room.rv.privileged_creators else {ALICE: 100, **mods}
    room.add(main, "m.room.power_levels", ALICE, {"users": pl_users}, "")
    room.add(main, "m.room.join_rules", ALICE, {"join_rule": "public"}, "")
    for i in range(members):
        room.add(main, "m.room.member", user(i), {"membership": "join"}, user(i))
    i = 0
    while sum(1 for e in room.events.values() if e.is_state()) < total_state:
        # Other state: profile changes of members and custom per-widget state.
        if i % 2:
            room.add(main, "m.room.member", user(i % members), {"membership": "join", "displayname": f"n{i}"},
                     user(i % members))
        else:
            room.add(main, "bench.widget", ALICE, {"i": i}, f"w{i}")
        i += 1
    return room, main


def fork_changes(room: Room, base: dict, which: int, members: int, n: int = 100) -> dict:
    fork = {"state": dict(base["state"]), "head": base["head"]}
    pl = room.events[fork["state"][("m.room.power_levels", "")]]
    for k in range(n):
        # Both forks touch overlapping members, so the same keys conflict with different kinds
        # of change (kick vs displayname change vs leave).
        target = user(100 + (k * 7 + which * 21) % min(300, members - 100))
        r = k % 5
        if r == 0:
            room.add(fork, "m.room.member", ALICE, {"membership": "ban" if which else "leave"}, target)
        elif r == 1:
            room.add(fork, "m.room.member", target, {"membership": "leave"}, target)
        elif r == 2:
            room.add(fork, "m.room.member", target, {"membership": "join", "displayname": f"f{which}-{k}"}, target)
        elif r == 3:
            room.add(fork, "m.room.topic", ALICE, {"topic": f"fork {which} #{k}"}, "")
        else:
            users = dict(pl.content["users"])
            users[user(30 + which)] = 50 + k % 7
            room.add(fork, "m.room.power_levels", ALICE, {"users": users}, "")
    return fork


def timed(fn, repeat: int) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def bench_resolution(version: str, members: int, total_state: int, repeat: int) -> dict:
    t0 = time.perf_counter()
    room, main = build_room(version, members, total_state)
    fa = fork_changes(room, main, 0, members)
    fb = fork_changes(room, main, 1, members)
    build_ms = (time.perf_counter() - t0) * 1000
    get = room.events.get
    sets = [fa["state"], fb["state"]]

    t0 = time.perf_counter()
    index = AuthChainIndex()
    for eid, ev in room.events.items():  # IDs are in creation (topological) order
        if ev.is_state():
            index.add(eid, ev.auth_event_ids, chain_key=ev.state_tuple)
    index_ms = (time.perf_counter() - t0) * 1000

    walk_ms, res_walk = timed(lambda: resolve_state(room.rv, sets, get), repeat)
    idx_ms, res_idx = timed(lambda: resolve_state(room.rv, sets, get, index.difference), repeat)
    assert res_walk == res_idx, "index and walk resolutions differ"
    diff_walk_ms, diff = timed(lambda: auth_chain_difference([set(s.values()) for s in sets], get), repeat)
    diff_idx_ms, diff2 = timed(lambda: index.difference([set(s.values()) for s in sets]), repeat)
    assert diff == diff2
    conflicted = sum(1 for k in set(fa["state"]) | set(fb["state"]) if fa["state"].get(k) != fb["state"].get(k))
    return {
        "room_version": version, "algorithm": room.rv.state_res.value,
        "events": len(room.events), "state_events": sum(1 for e in room.events.values() if e.is_state()),
        "state_size": len(fa["state"]), "conflicted_keys": conflicted, "auth_difference": len(diff),
        "build_ms": round(build_ms, 1), "index_build_ms": round(index_ms, 1),
        "index_chains": len(index.to_dict()["chains"]),
        "resolve_walk_ms": round(walk_ms, 2), "resolve_index_ms": round(idx_ms, 2),
        "difference_walk_ms": round(diff_walk_ms, 2), "difference_index_ms": round(diff_idx_ms, 2),
    }


def bench_auth_chain_of_messages(version: str, messages: int) -> dict:
    room, main = build_room(version, 200, 400)
    evs = []
    for i in range(messages):
        if i % 20 == 19:
            if i % 40 == 39:
                ev = room.add(main, "m.room.topic", ALICE, {"topic": f"t{i}"}, "")
            else:
                u = user(i % 200)
                ev = room.add(main, "m.room.member", u, {"membership": "join", "displayname": f"d{i}"}, u)
        else:
            ev = room.add(main, "m.room.message", user(i % 20), {"body": f"m{i}", "msgtype": "m.text"})
        evs.append(ev)
    # Replay the chain: per event, the auth-events check, then the check against the state before.
    state: dict = {}
    for eid, ev in room.events.items():
        if ev is evs[0]:
            break
        if ev.is_state():
            state[ev.state_tuple] = eid
    create = room.create_event
    t_auth = t_state = 0.0
    for ev in evs:
        auth = [room.events[a] for a in ev.auth_event_ids]
        t0 = time.perf_counter()
        event_auth.check_against_auth_events(ev, auth, create)
        t1 = time.perf_counter()
        needed = event_auth.auth_types_for_event(room.rv, ev) | {CREATE}
        event_auth.check_auth_rules(ev, {k: room.events[state[k]] for k in needed if k in state})
        t2 = time.perf_counter()
        t_auth += t1 - t0
        t_state += t2 - t1
        if ev.is_state():
            state[ev.state_tuple] = ev.event_id
    return {
        "room_version": version, "events": len(evs),
        "auth_events_check_us_per_event": round(t_auth / len(evs) * 1e6, 1),
        "state_check_us_per_event": round(t_state / len(evs) * 1e6, 1),
        "total_ms": round((t_auth + t_state) * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--state", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    res = [bench_resolution(v, args.members, args.state, args.repeat) for v in ("1", "11", "12")]
    chain = [bench_auth_chain_of_messages(v, args.messages) for v in ("11", "12")]

    print(f"State resolution: two forks of a room with {args.members} members / {args.state} state events")
    cols = ["room_version", "algorithm", "events", "state_size", "conflicted_keys", "auth_difference",
            "index_build_ms", "index_chains", "resolve_walk_ms", "resolve_index_ms",
            "difference_walk_ms", "difference_index_ms"]
    print("  ".join(f"{c:>16}" for c in cols))
    for r in res:
        print("  ".join(f"{str(r[c]):>16}" for c in cols))
    print()
    print(f"Auth checks: a chain of {args.messages} events (a state change every 20th)")
    cols2 = ["room_version", "events", "auth_events_check_us_per_event", "state_check_us_per_event", "total_ms"]
    print("  ".join(f"{c:>30}" for c in cols2))
    for r in chain:
        print("  ".join(f"{str(r[c]):>30}" for c in cols2))
    print()
    print(json.dumps({"resolution": res, "auth_chain": chain}))


if __name__ == "__main__":
    main()
