"""State resolution scenarios (rooms/v1.md, rooms/fragments/v2-state-res.md, rooms/v12.md).

Each test builds a small room DAG with :class:`Dag`: every event's state-before is the resolution
of the states after its prev_events (exactly as the spec defines S(E)), and its auth_events are
picked from that state by the auth events selection. The scenarios are the classic ones public
implementations test (ban vs power levels, join-rule evasion, …), written here from their
descriptions; the two room v12 "state reset" problems come from rooms/v12.md / MSC4297.
"""
from __future__ import annotations

from typing import Iterable

import pytest

from homeserver.protocol import event_auth
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import get_room_version
from homeserver.protocol.state_res import (
    conflicted_state_subgraph,
    is_power_event,
    lexicographical_topological_sort,
    mainline_sort,
    resolve_state,
    reverse_topological_power_sort,
)

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"

MEMBER = "m.room.member"
PL = "m.room.power_levels"
JR = "m.room.join_rules"
TOPIC = "m.room.topic"
MESSAGE = "m.room.message"


class Dag:
    """A room DAG built event by event through the real resolution and auth selection."""

    def __init__(self, version: str, creator: str = ALICE):
        self.rv = get_room_version(version)
        self.creator = creator
        self.events: dict[str, Event] = {}
        self.ids: dict[str, str] = {}            # short name -> event ID
        self.state_after: dict[str, dict] = {}   # event ID -> state map after it
        self.ts = 0
        self.room_id = "!room:example.com"

    def eid(self, name: str) -> str:
        if self.rv.event_id_has_server:
            return f"${name}:example.com"
        return f"${name}"

    def __getitem__(self, name: str) -> str:
        return self.ids[name]

    def get_event(self, event_id: str) -> Event | None:
        return self.events.get(event_id)

    def pl_content(self, users: dict[str, int], **extra) -> dict:
        """Power levels content; room creators are left out of ``users`` in v12 (auth rule 10.4)."""
        if self.rv.privileged_creators:
            users = {u: v for u, v in users.items() if u != self.creator}
        return {"users": users, **extra}

    def resolve(self, state_sets: list[dict]) -> dict:
        return resolve_state(self.rv, state_sets, self.get_event)

    def state_before(self, prevs: Iterable[str]) -> dict:
        sets = [self.state_after[self.ids[p]] for p in prevs]
        if not sets:
            return {}
        if len(sets) == 1:
            return dict(sets[0])
        return self.resolve(sets)

    def add(self, name: str, sender: str, type_: str, content: dict, state_key: str | None = None,
            prevs: Iterable[str] = (), auth_from: dict | None = None, ts: int | None = None, check: bool = True) -> str:
        """Create event ``name`` after ``prevs``; auth_events come from the state before it (or
        from ``auth_from`` when a test needs to force them)."""
        prevs = list(prevs)
        before = self.state_before(prevs)
        event_id = self.eid(name)
        pdu = {
            "type": type_, "sender": sender, "content": content,
            "prev_events": [self.ids[p] for p in prevs],
            "depth": 1 + max((self.events[self.ids[p]].depth for p in prevs), default=0),
            "origin_server_ts": self.ts if ts is None else ts,
        }
        self.ts += 1
        if state_key is not None:
            pdu["state_key"] = state_key
        if type_ == "m.room.create" and self.rv.room_id_from_create_event:
            self.room_id = "!" + event_id[1:]
        else:
            pdu["room_id"] = self.room_id
        if self.rv.event_id_has_server:
            pdu["event_id"] = event_id
        probe = Event(pdu, self.rv, event_id=event_id)
        source = before if auth_from is None else auth_from
        auth_ids = [source[k] for k in sorted(event_auth.auth_types_for_event(self.rv, probe))
                    if k in source]
        pdu["auth_events"] = auth_ids
        ev = Event(pdu, self.rv, event_id=event_id)
        # Every scenario event must be valid where it was created (server-server-api, "Checks
        # performed on receipt of a PDU", check 5: auth against the state before the event).
        check_state = {k: self.events[v] for k, v in before.items()}
        if self.rv.room_id_from_create_event and type_ != "m.room.create":
            check_state.setdefault(("m.room.create", ""), self.events["$" + self.room_id[1:]])
        if check:
            event_auth.check_auth_rules(ev, check_state)
        self.events[event_id] = ev
        self.ids[name] = event_id
        after = dict(before)
        if ev.is_state():
            after[ev.state_tuple] = event_id
        self.state_after[event_id] = after
        return event_id

    def member(self, name, sender, target, membership, prevs, **kw):
        return self.add(name, sender, MEMBER, {"membership": membership}, target, prevs, **kw)

    def initial_room(self) -> "Dag":
        """create, Alice joins, power levels (Alice 100), public join rules, Bob, Charlie and Zara
        join, and a message START — a single chain."""
        create_content = {"room_version": self.rv.identifier}
        if not self.rv.implicit_room_creator:
            create_content["creator"] = ALICE
        self.add("CREATE", ALICE, "m.room.create", create_content, "")
        self.member("IMA", ALICE, ALICE, "join", ["CREATE"])
        self.add("IPOWER", ALICE, PL, self.pl_content({ALICE: 100}), "", ["IMA"])
        self.add("IJR", ALICE, JR, {"join_rule": "public"}, "", ["IPOWER"])
        self.member("IMB", BOB, BOB, "join", ["IJR"])
        self.member("IMC", CHARLIE, CHARLIE, "join", ["IMB"])
        self.member("IMZ", ZARA, ZARA, "join", ["IMC"])
        self.add("START", ZARA, MESSAGE, {"body": "start"}, None, ["IMZ"])
        return self

    def state_at_end(self, prevs: list[str]) -> dict:
        """The state before a message END whose prev_events are ``prevs``."""
        self.add("END", ZARA, MESSAGE, {"body": "end"}, None, prevs)
        return self.state_after[self["END"]]

    def expected(self, *names: str) -> dict:
        """The state at START with the given events' keys replaced by them."""
        state = dict(self.state_after[self["START"]])
        for n in names:
            state[self.events[self[n]].state_tuple] = self[n]
        return state


SCENARIO_VERSIONS = ["2", "6", "10", "11", "12"]


@pytest.fixture(params=SCENARIO_VERSIONS)
def dag(request) -> Dag:
    return Dag(request.param).initial_room()


# --- the classic v2 scenarios -----------------------------------------------------------------

def test_ban_beats_a_concurrent_power_levels_change_by_the_banned_user(dag: Dag):
    """Alice bans Bob while Bob (concurrently) re-sends power levels: the ban (higher-powered
    sender) is ordered first, so Bob's power levels event no longer passes auth."""
    pa = dag.pl_content({ALICE: 100, BOB: 50})
    dag.add("PA", ALICE, PL, pa, "", ["START"])
    dag.member("MA", ALICE, ALICE, "join", ["PA"])
    dag.member("MB", ALICE, BOB, "ban", ["MA"])
    dag.add("PB", BOB, PL, dict(pa), "", ["PA"])
    assert dag.state_at_end(["MB", "PB"]) == dag.expected("PA", "MA", "MB")


def test_join_rule_change_stops_a_concurrent_join(dag: Dag):
    """Join-rule evasion: Evelyn joins while Alice concurrently makes the room invite-only; the
    join rules are resolved first and Evelyn's join then fails."""
    dag.add("JR", ALICE, JR, {"join_rule": "invite"}, "", ["START"])
    dag.member("ME", EVELYN, EVELYN, "join", ["START"])
    end = dag.state_at_end(["JR", "ME"])
    assert end == dag.expected("JR")
    assert (MEMBER, EVELYN) not in end


def test_offtopic_power_levels_chain_is_applied_in_auth_order(dag: Dag):
    """Alice promotes Bob, Bob promotes Charlie, Charlie lowers himself: all three apply in
    topological order against a fork that only saw Alice's change."""
    dag.add("PA", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["START"])
    dag.add("PB", BOB, PL, dag.pl_content({ALICE: 100, BOB: 50, CHARLIE: 50}), "", ["PA"])
    dag.add("PC", CHARLIE, PL, dag.pl_content({ALICE: 100, BOB: 50, CHARLIE: 0}), "", ["PB"])
    assert dag.state_at_end(["PC", "PA"]) == dag.expected("PC")


def test_topic_basic_demoted_users_topic_loses(dag: Dag):
    """Bob's topic on a fork where he kept power loses to Alice's demotion of Bob."""
    dag.add("T1", ALICE, TOPIC, {"topic": "1"}, "", ["START"])
    dag.add("PA1", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["T1"])
    dag.add("T2", ALICE, TOPIC, {"topic": "2"}, "", ["PA1"])
    dag.add("PA2", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 0}), "", ["T2"])
    dag.add("PB", BOB, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["PA1"])
    dag.add("T3", BOB, TOPIC, {"topic": "3"}, "", ["PB"])
    assert dag.state_at_end(["PA2", "T3"]) == dag.expected("PA2", "T2")


def test_topic_reset_banned_users_topic_is_dropped(dag: Dag):
    """Bob sets a topic and is then banned; merging with a fork that only has the first topic
    keeps that topic (Bob's is re-checked after his ban) and the ban."""
    dag.add("T1", ALICE, TOPIC, {"topic": "1"}, "", ["START"])
    dag.add("PA", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["T1"])
    dag.add("T2", BOB, TOPIC, {"topic": "2"}, "", ["PA"])
    dag.member("MB", ALICE, BOB, "ban", ["T2"])
    assert dag.state_at_end(["MB", "T1"]) == dag.expected("T1", "MB", "PA")


def test_topic_later_alice_topic_wins_over_demoted_bob(dag: Dag):
    """The full "topic" scenario: Alice's last topic T4 (after a merge) wins over Bob's T3."""
    dag.add("T1", ALICE, TOPIC, {"topic": "1"}, "", ["START"])
    dag.add("PA1", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["T1"])
    dag.add("T2", ALICE, TOPIC, {"topic": "2"}, "", ["PA1"])
    dag.add("PA2", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 0}), "", ["T2"])
    dag.add("PB", BOB, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["PA1"])
    dag.add("T3", BOB, TOPIC, {"topic": "3"}, "", ["PB"])
    dag.add("MZ1", ZARA, MESSAGE, {"body": "merge"}, None, ["T3", "PA2"])
    dag.add("T4", ALICE, TOPIC, {"topic": "4"}, "", ["MZ1"])
    assert dag.state_at_end(["T4", "MZ1"]) == dag.expected("T4", "PA2")


def test_mainline_sort_puts_topic_on_newer_power_levels_last(dag: Dag):
    """Bob's PB fails against PA2 (power levels need 100); of the two topics, T4 is based on an
    older mainline power levels event (PA1, via PB) than T3 (PA2), so T4 applies first and T3 wins."""
    dag.add("T1", ALICE, TOPIC, {"topic": "1"}, "", ["START"])
    dag.add("PA1", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["T1"])
    dag.add("T2", ALICE, TOPIC, {"topic": "2"}, "", ["PA1"])
    dag.add("PA2", ALICE, PL, dag.pl_content({ALICE: 100, BOB: 50}, events={PL: 100}), "", ["T2"])
    dag.add("PB", BOB, PL, dag.pl_content({ALICE: 100, BOB: 50}), "", ["PA1"])
    dag.add("T3", BOB, TOPIC, {"topic": "3"}, "", ["PA2"])
    dag.add("T4", ALICE, TOPIC, {"topic": "4"}, "", ["PB"])
    assert dag.state_at_end(["T3", "T4"]) == dag.expected("T3", "PA2")


def test_concurrent_topics_with_equal_mainline_and_timestamp_break_ties_by_event_id(dag: Dag):
    """Same mainline position, same origin_server_ts: the lexicographically larger event ID is
    applied last and wins."""
    dag.add("TA", ALICE, TOPIC, {"topic": "a"}, "", ["START"], ts=1000)
    dag.add("TB", ALICE, TOPIC, {"topic": "b"}, "", ["START"], ts=1000)
    assert dag.state_at_end(["TA", "TB"])[(TOPIC, "")] == max(dag["TA"], dag["TB"])


def test_concurrent_topics_later_timestamp_wins(dag: Dag):
    dag.add("TZ", ALICE, TOPIC, {"topic": "late"}, "", ["START"], ts=2000)
    dag.add("TA", ALICE, TOPIC, {"topic": "early"}, "", ["START"], ts=1000)
    assert dag.state_at_end(["TA", "TZ"])[(TOPIC, "")] == dag["TZ"]


def test_resolving_a_single_state_set_returns_it(dag: Dag):
    state = dag.state_after[dag["START"]]
    assert dag.resolve([state]) == state
    assert dag.resolve([state, dict(state)]) == state


# --- orderings ------------------------------------------------------------------------------

def test_lexicographical_topological_sort_takes_smallest_ready_vertex():
    # o has no dependencies; l, n, p depend on o; m depends on n and o.
    graph = {"l": ["o"], "m": ["n", "o"], "n": ["o"], "o": [], "p": ["o"]}
    assert lexicographical_topological_sort(graph, key=lambda x: (x,)) == ["o", "l", "n", "m", "p"]


def test_lexicographical_topological_sort_respects_dependencies_over_keys():
    graph = {"a": ["z"], "z": []}
    assert lexicographical_topological_sort(graph, key=lambda x: (x,)) == ["z", "a"]


def test_power_sort_orders_higher_power_first_then_timestamp_then_event_id():
    """Three concurrent power events on the same parent: Alice (100) first although she is
    latest; Bob and Charlie (both 50) by origin_server_ts, equal ts by event ID."""
    d = Dag("11").initial_room()
    d.add("P0", ALICE, PL, d.pl_content({ALICE: 100, BOB: 50, CHARLIE: 50}), "", ["START"])
    d.add("JB", BOB, JR, {"join_rule": "invite"}, "", ["P0"], ts=500)
    d.add("JC2", CHARLIE, JR, {"join_rule": "knock"}, "", ["P0"], ts=300)
    d.add("JC1", CHARLIE, JR, {"join_rule": "public"}, "", ["P0"], ts=300)
    d.add("JA", ALICE, JR, {"join_rule": "invite"}, "", ["P0"], ts=900)
    ids = [d[n] for n in ("JB", "JC2", "JC1", "JA")]
    order = reverse_topological_power_sort(ids, set(ids), d.get_event)
    assert order == [d["JA"], d["JC1"], d["JC2"], d["JB"]]


def test_power_sort_puts_auth_ancestors_first_even_if_less_powerful():
    d = Dag("11").initial_room()
    d.add("PA", ALICE, PL, d.pl_content({ALICE: 100, BOB: 100}), "", ["START"])
    d.add("PB", BOB, PL, d.pl_content({ALICE: 100, BOB: 100, CHARLIE: 50}), "", ["PA"], ts=0)
    ids = {d["PA"], d["PB"], d["IPOWER"]}
    order = reverse_topological_power_sort([d["PB"]], ids, d.get_event)
    assert order == [d["IPOWER"], d["PA"], d["PB"]]


def test_mainline_sort_orders_by_mainline_position_then_timestamp_then_event_id():
    d = Dag("11").initial_room()
    d.add("P1", ALICE, PL, d.pl_content({ALICE: 100, BOB: 50}), "", ["START"])
    d.add("X1", BOB, TOPIC, {"topic": "x1"}, "", ["P1"], ts=50)   # cites P1 (position 1)
    d.add("P2", ALICE, PL, d.pl_content({ALICE: 100, BOB: 60}), "", ["X1"])
    d.add("Y2", BOB, TOPIC, {"topic": "y2"}, "", ["P2"], ts=10)   # cites P2 (position 0)
    d.add("Z2", BOB, TOPIC, {"topic": "z2"}, "", ["P2"], ts=10)   # same position and ts as Y2
    d.add("W", ALICE, TOPIC, {"topic": "w"}, "", ["START"], ts=0)   # cites IPOWER (position 2)
    got = mainline_sort([d["Z2"], d["Y2"], d["X1"], d["W"]], d["P2"], d.get_event)
    assert got == [d["W"], d["X1"], d["Y2"], d["Z2"]]


def test_mainline_sort_without_power_levels_uses_timestamp_then_event_id():
    d = Dag("11")
    d.add("CREATE", ALICE, "m.room.create", {}, "")
    d.member("IMA", ALICE, ALICE, "join", ["CREATE"])
    d.add("B", ALICE, TOPIC, {"topic": "b"}, "", ["IMA"], ts=5)
    d.add("A", ALICE, TOPIC, {"topic": "a"}, "", ["IMA"], ts=5)
    d.add("C", ALICE, TOPIC, {"topic": "c"}, "", ["IMA"], ts=1)
    assert mainline_sort([d["A"], d["B"], d["C"]], None, d.get_event) == [d["C"], d["A"], d["B"]]


# --- room version 12: the two state-reset problems (rooms/v12.md; MSC4297) --------------------

def _problem_a(version: str) -> tuple[Dag, dict]:
    """Problem A: Alice (an admin, not a creator) sets the join rules twice and then leaves. Both
    forks agree she left; one fork's state (from a faulty partial sync) still names the older
    join rules. v2 replays both join rules events on top of the unconflicted state, where Alice
    is not a member, and loses the join rules; v2.1 replays them from an empty state (auth
    events) and keeps the newer one."""
    creator = "@creator:example.com"
    d = Dag(version, creator=creator)
    content = {"room_version": version}
    if not d.rv.implicit_room_creator:
        content["creator"] = creator
    d.add("CREATE", creator, "m.room.create", content, "")
    d.member("CJ", creator, creator, "join", ["CREATE"])
    d.add("P", creator, PL, d.pl_content({creator: 100, ALICE: 100}), "", ["CJ"])
    d.member("AI", creator, ALICE, "invite", ["P"])
    d.member("AJ", ALICE, ALICE, "join", ["AI"])
    d.add("JR1", ALICE, JR, {"join_rule": "public"}, "", ["AJ"])
    d.add("JR2", ALICE, JR, {"join_rule": "invite"}, "", ["JR1"])
    d.member("AL", ALICE, ALICE, "leave", ["JR2"])
    correct = d.state_after[d["AL"]]
    stale = dict(correct)
    stale[(JR, "")] = d["JR1"]
    return d, d.resolve([correct, stale])


def test_v12_problem_a_join_rules_survive_their_setter_leaving():
    d, resolved = _problem_a("12")
    assert resolved[(JR, "")] == d["JR2"]
    assert resolved[(MEMBER, ALICE)] == d["AL"]


def test_v11_problem_a_state_reset_loses_the_join_rules():
    d, resolved = _problem_a("11")
    assert (JR, "") not in resolved


def _problem_b(version: str) -> tuple[Dag, dict]:
    """Problem B: Alice promotes Bob (P2), Bob promotes Charlie (P3), Charlie sets a topic. One
    fork's state names the old P1 while its topic cites P3: P2 is in every auth chain, so it is
    not in the auth difference. v2 replays P1 then P3 without P2 and P3 fails (power levels reset
    to P1); v2.1's conflicted state subgraph brings P2 back and P3 stands."""
    d = Dag(version, creator=ALICE)
    content = {"room_version": version}
    if not d.rv.implicit_room_creator:
        content["creator"] = ALICE
    d.add("CREATE", ALICE, "m.room.create", content, "")
    d.member("AJ", ALICE, ALICE, "join", ["CREATE"])
    d.add("P1", ALICE, PL, d.pl_content({ALICE: 100}), "", ["AJ"])
    d.add("JRP", ALICE, JR, {"join_rule": "public"}, "", ["P1"])
    d.member("BJ", BOB, BOB, "join", ["JRP"])
    d.member("CJ", CHARLIE, CHARLIE, "join", ["BJ"])
    d.add("P2", ALICE, PL, d.pl_content({ALICE: 100, BOB: 100}), "", ["CJ"])
    d.add("P3", BOB, PL, d.pl_content({ALICE: 100, BOB: 100, CHARLIE: 50}), "", ["P2"])
    d.add("T", CHARLIE, TOPIC, {"topic": "charlie was here"}, "", ["P3"])
    correct = d.state_after[d["T"]]
    stale = dict(correct)
    stale[(PL, "")] = d["P1"]
    return d, d.resolve([correct, stale])


def test_v12_problem_b_intermediate_power_levels_are_replayed():
    d, resolved = _problem_b("12")
    assert resolved[(PL, "")] == d["P3"]


def test_v11_problem_b_state_reset_to_old_power_levels():
    d, resolved = _problem_b("11")
    assert resolved[(PL, "")] == d["P1"]


# --- room version 1 ---------------------------------------------------------------------------

def test_v1_power_levels_conflict_keeps_the_deeper_allowed_event():
    d = Dag("1").initial_room()
    d.add("PA", ALICE, PL, d.pl_content({ALICE: 100, BOB: 50}), "", ["START"])
    d.add("PB", BOB, PL, d.pl_content({ALICE: 100, BOB: 50, CHARLIE: 10}), "", ["PA"])
    resolved = d.resolve([d.state_after[d["PA"]], d.state_after[d["PB"]]])
    assert resolved[(PL, "")] == d["PB"]


def test_v1_power_levels_walk_stops_at_the_first_event_that_fails_auth():
    """PB (Bob) and PA2 (Alice demotes Bob) have the same depth. Whichever is tried first, the
    result is PA2: after PA2, Bob's change fails; after PB, Alice's demotion still passes."""
    d = Dag("1").initial_room()
    d.add("PA", ALICE, PL, d.pl_content({ALICE: 100, BOB: 50}), "", ["START"])
    d.add("PB", BOB, PL, d.pl_content({ALICE: 100, BOB: 50, CHARLIE: 10}), "", ["PA"])
    d.add("PA2", ALICE, PL, d.pl_content({ALICE: 100, BOB: 0}), "", ["PA"])
    resolved = d.resolve([d.state_after[d["PB"]], d.state_after[d["PA2"]]])
    assert resolved[(PL, "")] == d["PA2"]


def test_v1_topic_conflict_picks_highest_depth_that_passes_auth():
    d = Dag("1").initial_room()
    d.add("T1", ALICE, TOPIC, {"topic": "1"}, "", ["START"])
    d.add("T2", ALICE, TOPIC, {"topic": "2"}, "", ["T1"])
    # Bob (0) may not set topics (state_default 50): a forged fork whose topic fails auth.
    d.add("T3", BOB, TOPIC, {"topic": "3"}, "", ["T1"], check=False)
    d.add("TX", ALICE, TOPIC, {"topic": "x"}, "", ["START"])
    resolved = d.resolve([d.state_after[d["T2"]], d.state_after[d["T3"]], d.state_after[d["TX"]]])
    assert resolved[(TOPIC, "")] == d["T2"]


def test_v1_ban_beats_concurrent_join_of_the_banned_user():
    d = Dag("1").initial_room()
    d.member("LB", BOB, BOB, "leave", ["START"])
    d.member("BAN", ALICE, BOB, "ban", ["LB"])
    d.member("RJ", BOB, BOB, "join", ["LB"])
    resolved = d.resolve([d.state_after[d["BAN"]], d.state_after[d["RJ"]]])
    # Same depth: the walk adds one first and checks the other against it; a join after a ban
    # fails, a ban after a join passes — the ban wins either way.
    assert resolved[(MEMBER, BOB)] == d["BAN"]


# --- definitions ------------------------------------------------------------------------------

def test_conflicted_state_subgraph_is_every_event_between_two_conflicted_events():
    """rooms/v12.md: with P1 and P3 conflicted, the paths P3 -> P2 -> P1 and P3 -> Bob's join ->
    (join rules ->) P1 are in the subgraph; P1's own ancestors (Alice's join, the create event)
    and events outside P3's auth chain (Charlie's join) are not."""
    d, _ = _problem_b("12")
    got = conflicted_state_subgraph({d["P1"], d["P3"]}, d.get_event)
    assert got == {d["P1"], d["P2"], d["P3"], d["BJ"], d["JRP"]}


def test_conflicted_state_subgraph_of_unrelated_events_is_just_them():
    d = Dag("12").initial_room()
    d.add("TA", ALICE, TOPIC, {"topic": "a"}, "", ["START"])
    d.add("TB", ALICE, TOPIC, {"topic": "b"}, "", ["START"])
    assert conflicted_state_subgraph({d["TA"], d["TB"]}, d.get_event) == {d["TA"], d["TB"]}


def test_power_events_are_power_levels_join_rules_and_kicks_or_bans_of_others():
    d = Dag("11").initial_room()
    d.member("KICK", ALICE, BOB, "leave", ["START"])
    d.member("SELF", CHARLIE, CHARLIE, "leave", ["START"])
    d.member("BAN", ALICE, ZARA, "ban", ["START"])
    d.add("TOP", ALICE, TOPIC, {"topic": "t"}, "", ["START"])
    ev = lambda n: d.events[d[n]]  # noqa: E731
    assert [is_power_event(ev(n)) for n in ("IPOWER", "IJR", "KICK", "BAN")] == [True] * 4
    assert [is_power_event(ev(n)) for n in ("SELF", "TOP", "IMB", "START")] == [False] * 4
