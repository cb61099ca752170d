"""Property tests: state resolution is a function of the *set* of state maps, and the
chain-cover AuthChainIndex answers exactly what the plain auth-chain walk answers."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.protocol.auth_chain import AuthChainIndex, auth_chain, auth_chain_difference
from homeserver.protocol.event_auth import AuthError
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import get_room_version
from homeserver.protocol.state_res import resolve_state
from tests.unit.test_state_res import ALICE, BOB, CHARLIE, EVELYN, JR, MEMBER, PL, TOPIC, ZARA, Dag

USERS = [ALICE, BOB, CHARLIE, ZARA, EVELYN]

# One operation on a random room: (kind, actor, target, level, parents)
op = st.tuples(
    st.sampled_from(["topic", "pl", "join", "leave", "ban", "kick", "invite", "jr"]),
    st.sampled_from([0, 0, 0, 1, 1, 2, 3, 4]),   # actors: mostly Alice (100) and Bob
    st.integers(0, len(USERS) - 1),
    st.sampled_from([0, 50, 100]),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=2),
)


def _random_room(version: str, ops) -> Dag:
    """A room forked at random: each operation hangs off one or two earlier events; operations
    that would fail auth where they are created are skipped (the server would reject them)."""
    d = Dag(version).initial_room()
    names = ["START"]
    for i, (kind, a, t, level, parents) in enumerate(ops):
        actor, target = USERS[a], USERS[t]
        prevs = sorted({names[p % len(names)] for p in parents})
        name = f"E{i:02d}"
        try:
            if kind == "topic":
                d.add(name, actor, TOPIC, {"topic": name}, "", prevs)
            elif kind == "pl":
                d.add(name, actor, PL, d.pl_content({ALICE: 100, target: level}), "", prevs)
            elif kind == "jr":
                d.add(name, actor, JR, {"join_rule": ["public", "invite"][level % 2]}, "", prevs)
            elif kind in ("join", "leave"):
                d.member(name, actor, actor, kind, prevs)
            else:
                membership = {"kick": "leave"}.get(kind, kind)
                d.member(name, actor, target, membership, prevs)
        except AuthError:
            continue
        names.append(name)
    d.added = [d[n] for n in names]  # START and the operations that were accepted
    return d


def _shuffled(state: dict, rng: random.Random) -> dict:
    items = list(state.items())
    rng.shuffle(items)
    return dict(items)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(["1", "2", "11", "12"]),
       ops=st.lists(op, min_size=1, max_size=20),
       picks=st.lists(st.integers(0, 10_000), min_size=2, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_resolution_ignores_order_of_state_sets_and_of_their_entries(version, ops, picks, seed):
    d = _random_room(version, ops)
    ids = d.added
    sets = [d.state_after[ids[p % len(ids)]] for p in picks]
    rng = random.Random(seed)
    expected = d.resolve(sets)
    reordered = [_shuffled(s, rng) for s in sets]
    rng.shuffle(reordered)
    assert d.resolve(reordered) == expected
    assert d.resolve(reordered + reordered[:1]) == expected  # a repeated state set changes nothing


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(["2", "11", "12"]),
       ops=st.lists(op, min_size=1, max_size=20),
       picks=st.lists(st.integers(0, 10_000), min_size=2, max_size=3))
def test_resolution_with_the_index_difference_equals_the_walk_difference(version, ops, picks):
    d = _random_room(version, ops)
    index = AuthChainIndex()
    for eid, ev in sorted(d.events.items(), key=lambda kv: kv[1].depth):
        if ev.is_state():
            index.add(eid, ev.auth_event_ids, chain_key=ev.state_tuple)
    state_ids = d.added
    sets = [d.state_after[state_ids[p % len(state_ids)]] for p in picks]
    assert resolve_state(d.rv, sets, d.get_event, index.difference) == d.resolve(sets)


# --- AuthChainIndex against the plain walk on random DAGs -------------------------------------

RV = get_room_version("11")


@st.composite
def random_dag(draw):
    """A random auth DAG: event i cites a random subset of events before it; each event has a
    chain key from a small alphabet (or none), standing in for (type, state_key)."""
    n = draw(st.integers(1, 40))
    auth: list[list[int]] = []
    keys = []
    for i in range(n):
        if i == 0:
            auth.append([])
        else:
            k = draw(st.integers(0, min(i, 4)))
            auth.append(sorted(set(draw(st.lists(st.integers(0, i - 1), min_size=k, max_size=k)))))
        keys.append(draw(st.sampled_from([None, "a", "b", "c", ("m.room.member", "@x:y")])))
    sets = draw(st.lists(st.lists(st.integers(0, n - 1), max_size=6), min_size=1, max_size=4))
    return auth, keys, sets


def _events(auth: list[list[int]]) -> dict[str, Event]:
    out = {}
    for i, deps in enumerate(auth):
        eid = f"$e{i}"
        out[eid] = Event({"type": "t", "state_key": "", "sender": ALICE, "room_id": "!r:x",
                          "auth_events": [f"$e{j}" for j in deps]}, RV, event_id=eid)
    return out


@settings(max_examples=150, deadline=None)
@given(random_dag())
def test_auth_chain_index_agrees_with_the_walk(dag):
    auth, keys, raw_sets = dag
    events = _events(auth)
    index = AuthChainIndex()
    for i, deps in enumerate(auth):
        index.add(f"$e{i}", [f"$e{j}" for j in deps], chain_key=keys[i])
    sets = [{f"$e{j}" for j in s} for s in raw_sets]
    assert index.difference(sets) == auth_chain_difference(sets, events.get)
    for s in sets:
        assert index.auth_chain(s) == auth_chain(s, events.get)
    # Round trip through plain data answers the same.
    again = AuthChainIndex.from_dict(index.to_dict())
    assert again.difference(sets) == index.difference(sets)
    assert again.to_dict() == index.to_dict()


@settings(max_examples=60, deadline=None)
@given(random_dag())
def test_auth_chain_index_keeps_working_after_a_round_trip_and_more_adds(dag):
    auth, keys, raw_sets = dag
    events = _events(auth)
    half = len(auth) // 2
    index = AuthChainIndex()
    for i in range(half):
        index.add(f"$e{i}", [f"$e{j}" for j in auth[i]], chain_key=keys[i])
    index = AuthChainIndex.from_dict(index.to_dict())
    for i in range(half, len(auth)):
        index.add(f"$e{i}", [f"$e{j}" for j in auth[i]], chain_key=keys[i])
    sets = [{f"$e{j}" for j in s} for s in raw_sets]
    assert index.difference(sets) == auth_chain_difference(sets, events.get)


def test_auth_chain_walk_skips_unknown_events():
    events = _events([[], [0]])
    events["$e1"] = Event({"type": "t", "state_key": "", "sender": ALICE, "room_id": "!r:x",
                           "auth_events": ["$e0", "$missing"]}, RV, event_id="$e1")
    assert auth_chain({"$e1"}, events.get) == {"$e0"}


def test_index_refuses_an_event_whose_auth_event_is_unknown():
    index = AuthChainIndex()
    index.add("$a", [])
    try:
        index.add("$b", ["$a", "$nope"])
    except KeyError:
        pass
    else:
        raise AssertionError("expected KeyError")
    assert "$b" not in index


def test_index_chains_follow_the_chain_key():
    """A user's membership history forms one chain: later memberships extend it."""
    index = AuthChainIndex()
    index.add("$create", [])
    index.add("$join", ["$create"], chain_key=(MEMBER, BOB))
    index.add("$leave", ["$create", "$join"], chain_key=(MEMBER, BOB))
    index.add("$pl", ["$create"], chain_key=(PL, ""))
    assert index.position("$leave") == (index.position("$join")[0], 2)
    assert index.position("$pl")[0] != index.position("$join")[0]
