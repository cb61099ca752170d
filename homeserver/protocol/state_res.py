"""State resolution for room versions 1–12: pure functions over state maps and a synchronous loader.

Three algorithms, chosen by ``room_version.state_res``:

* ``V1``   — rooms/v1.md, "State resolution" (depth / sha1 ordering, per-type passes).
* ``V2``   — rooms/fragments/v2-state-res.md (rooms v2–v11).
* ``V2_1`` — rooms/v12.md, "State resolution": as v2, except that (1) the first iterative auth
  checks start from an *empty* state map instead of the unconflicted state map and (2) the full
  conflicted set also contains the *conflicted state subgraph*.

State maps are ``(type, state_key) -> event_id``. ``get_event`` returns an
:class:`~homeserver.protocol.events.Event` or None; conflicted events it does not know are left
out of the resolution (their IDs cannot be checked), unconflicted ones are kept as they are.

Auth rules come from :mod:`homeserver.protocol.event_auth`; signatures are not re-checked here
(every event reaching state resolution has already passed its signature checks).
"""
from __future__ import annotations

import hashlib
import heapq
from typing import Callable, Iterable, Mapping, Sequence

from . import auth_chain as _auth_chain
from .events import Event
from .room_versions import RoomVersion, StateResAlgorithm

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]
GetEvent = Callable[[str], "Event | None"]
AuthChainDifference = Callable[[Sequence[set[str]]], set[str]]

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")
JOIN_RULES = ("m.room.join_rules", "")


def resolve_state(room_version: RoomVersion, state_sets: Sequence[StateMap], get_event: GetEvent,
                  auth_chain_difference: AuthChainDifference | None = None) -> dict[StateKey, str]:
    """Resolve ``state_sets`` into one state map (the state before an event whose prev_events had
    these states after them; rooms/fragments/v2-state-res.md, first paragraphs)."""
    if not state_sets:
        return {}
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    algorithm = room_version.state_res
    if algorithm == StateResAlgorithm.V1:
        return _resolve_v1(room_version, unconflicted, conflicted, get_event)
    if auth_chain_difference is None:
        def auth_chain_difference(sets: Sequence[set[str]]) -> set[str]:
            return _auth_chain.auth_chain_difference(sets, get_event)
    return _resolve_v2(room_version, state_sets, unconflicted, conflicted, get_event,
                       auth_chain_difference, v2_1=algorithm == StateResAlgorithm.V2_1)


def separate(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """The unconflicted state map and the conflicted state set, grouped by key
    (v2-state-res.md, "Unconflicted state map and conflicted state set"; v1.md, "conflict")."""
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    keys = set().union(*(s.keys() for s in state_sets))
    for key in keys:
        values = {s.get(key) for s in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = values.pop()
        else:
            values.discard(None)
            conflicted[key] = values
    return unconflicted, conflicted


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

def _event_auth():
    # Imported late so this module can be imported (and its pure helpers tested) on its own.
    from . import event_auth
    return event_auth


def _create_event_for(event: Event, get_event: GetEvent) -> Event | None:
    """The room's create event. In v12 it is never in auth_events, but its ID is the room ID's
    hash (rooms/v12.md, "Event format"); earlier versions list it in auth_events."""
    if event.room_version.room_id_from_create_event:
        if event.type == "m.room.create":
            return event
        return get_event("$" + event.room_id[1:])
    for aid in event.auth_event_ids:
        ev = get_event(aid)
        if ev is not None and ev.is_state() and ev.state_tuple == CREATE:
            return ev
    return None


def _is_allowed(event: Event, state: Mapping[StateKey, Event]) -> bool:
    ea = _event_auth()
    try:
        ea.check_auth_rules(event, state)
    except ea.AuthError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Room version 1 (rooms/v1.md, "State resolution")
# ---------------------------------------------------------------------------------------------

def _v1_order(ev: Event) -> tuple[int, str]:
    """Ascending depth, then descending sha1(event_id) (rooms/v1.md: "Sort the list by ascending
    depth then descending sha1(event_id)"). Returned as a key sorting in that order."""
    digest = hashlib.sha1(ev.event_id.encode("utf-8")).digest()
    return ev.depth, bytes(255 - b for b in digest).hex()


def _resolve_v1(room_version: RoomVersion, unconflicted: dict[StateKey, str],
                conflicted: dict[StateKey, set[str]], get_event: GetEvent) -> dict[StateKey, str]:
    """rooms/v1.md: R starts as the unconflicted state; power levels, then join rules, then
    memberships are resolved by walking each key's events in (depth, -sha1) order and stopping at
    the first one that fails auth against R; every other key takes the highest-depth, lowest-sha1
    event that passes auth against R (if none passes, the lowest-depth one, as Synapse does)."""
    state: dict[StateKey, Event] = {}
    for key, eid in unconflicted.items():
        ev = get_event(eid)
        if ev is not None:
            state[key] = ev
    result = dict(unconflicted)
    events_by_key: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted.items():
        evs = [ev for ev in (get_event(i) for i in ids) if ev is not None]
        if evs:
            events_by_key[key] = sorted(evs, key=_v1_order)

    def auth_pass(keys: Iterable[StateKey]) -> None:
        for key in sorted(keys):
            evs = events_by_key.pop(key)
            chosen = evs[0]
            state[key] = chosen
            for ev in evs[1:]:
                if not _is_allowed(ev, state):
                    break
                chosen = ev
                state[key] = ev
            result[key] = chosen.event_id

    auth_pass([k for k in events_by_key if k == POWER_LEVELS])
    auth_pass([k for k in events_by_key if k[0] == "m.room.join_rules"])
    auth_pass([k for k in events_by_key if k[0] == "m.room.member"])
    for key in sorted(events_by_key):
        evs = events_by_key[key]  # ascending (depth, -sha1): try from the end
        chosen = evs[0]
        for ev in reversed(evs):
            if _is_allowed(ev, state):
                chosen = ev
                break
        state[key] = chosen
        result[key] = chosen.event_id
    return result


# ---------------------------------------------------------------------------------------------
# Room versions 2–12 (rooms/fragments/v2-state-res.md, rooms/v12.md)
# ---------------------------------------------------------------------------------------------

def is_power_event(ev: Event) -> bool:
    """v2-state-res.md, "Power events": power levels, join rules, or a leave/ban membership sent by
    someone other than its target. The create event is also treated as one (as Synapse does); it
    can only be conflicted between two different rooms' histories, where it must sort first."""
    if not ev.is_state():
        return False
    key = ev.state_tuple
    if key in (POWER_LEVELS, JOIN_RULES, CREATE):
        return True
    if ev.type == "m.room.member" and ev.membership in ("leave", "ban"):
        return ev.sender != ev.state_key
    return False


def conflicted_state_subgraph(conflicted_ids: set[str], get_event: GetEvent) -> set[str]:
    """rooms/v12.md, "Conflicted state subgraph": every event on an auth_events path between two
    events of the conflicted state set (endpoints included): reachable from a conflicted event and
    itself reaching a conflicted event."""
    cache: dict[str, tuple[str, ...] | None] = {}
    ancestors = _auth_chain.auth_chain(conflicted_ids, get_event, cache)
    reaches: dict[str, bool] = {}

    def reaches_conflicted(start: str) -> bool:
        # Iterative post-order DFS over the ancestors: does `start` reach a conflicted event?
        stack = [(start, False)]
        while stack:
            eid, expanded = stack.pop()
            if eid in reaches:
                continue
            auth_ids = [a for a in (cache.get(eid) or ()) if a in ancestors or a in conflicted_ids]
            if expanded:
                reaches[eid] = any(a in conflicted_ids or reaches.get(a, False) for a in auth_ids)
                continue
            stack.append((eid, True))
            stack.extend((a, False) for a in auth_ids if a not in reaches and a not in conflicted_ids)
        return reaches[start]

    out = {e for e in conflicted_ids if get_event(e) is not None}
    for eid in ancestors:
        if eid not in conflicted_ids and reaches_conflicted(eid):
            out.add(eid)
    return out


def _resolve_v2(room_version: RoomVersion, state_sets: Sequence[StateMap],
                unconflicted: dict[StateKey, str], conflicted: dict[StateKey, set[str]],
                get_event: GetEvent, auth_chain_difference: AuthChainDifference,
                v2_1: bool) -> dict[StateKey, str]:
    """v2-state-res.md, "Algorithm", steps 1–5 (with the rooms/v12.md changes when ``v2_1``)."""
    conflicted_ids = set().union(*conflicted.values())
    # Full conflicted set: conflicted state ∪ auth difference (∪ conflicted subgraph in v2.1).
    full = set(conflicted_ids)
    full |= auth_chain_difference([set(s.values()) for s in state_sets])
    if v2_1:
        full |= conflicted_state_subgraph(conflicted_ids, get_event)
    events: dict[str, Event] = {}
    for eid in full:
        ev = get_event(eid)
        if ev is not None:
            events[eid] = ev
    full = set(events)

    # Step 1: power events of the full conflicted set with their auth ancestors in the set,
    # in reverse topological power ordering.
    power = [eid for eid, ev in events.items() if is_power_event(ev)]
    sorted_power = reverse_topological_power_sort(power, full, get_event)

    # Step 2: iterative auth checks from the unconflicted state (v2) or an empty map (v2.1).
    base = {} if v2_1 else dict(unconflicted)
    partial = iterative_auth_checks(sorted_power, base, get_event)

    # Step 3: the rest in mainline order based on the partially resolved power levels.
    picked = set(sorted_power)
    rest = [eid for eid in full if eid not in picked]
    rest = mainline_sort(rest, partial.get(POWER_LEVELS), get_event)

    # Step 4: iterative auth checks over the rest, from the partially resolved state.
    resolved = iterative_auth_checks(rest, partial, get_event)

    # Step 5: the unconflicted state map wins.
    resolved.update(unconflicted)
    return resolved


def _power_level_of_sender(ev: Event, get_event: GetEvent) -> int | float:
    """The sender's power level "when looking at their respective auth_events" (v2-state-res.md,
    "Reverse topological power ordering"); in v12 the create event is added (creators: infinity)."""
    state: dict[StateKey, Event] = {}
    for aid in ev.auth_event_ids:
        aev = get_event(aid)
        if aev is not None and aev.is_state():
            state[aev.state_tuple] = aev
    if CREATE not in state:
        create = _create_event_for(ev, get_event)
        if create is not None:
            state[CREATE] = create
    return _event_auth().get_user_power_level(ev.sender, state)


def reverse_topological_power_sort(event_ids: Iterable[str], full_conflicted: set[str],
                                   get_event: GetEvent) -> list[str]:
    """v2-state-res.md, step 1 and "Reverse topological power ordering".

    The graph is the given events plus their auth ancestors that are in the full conflicted set,
    reached along auth_events paths inside that set (as Synapse and Ruma build it). It is sorted
    by Kahn's algorithm, earliest first, always taking the smallest ready event by
    (−sender power level, origin_server_ts, event_id).
    """
    graph: dict[str, list[str]] = {}  # event -> its auth events inside the graph
    stack = list(event_ids)
    while stack:
        eid = stack.pop()
        if eid in graph:
            continue
        ev = get_event(eid)
        auth_ids = [a for a in dict.fromkeys(ev.auth_event_ids) if a in full_conflicted] if ev else []
        graph[eid] = auth_ids
        stack.extend(a for a in auth_ids if a not in graph)

    def key(eid: str) -> tuple:
        ev = get_event(eid)
        return (-_power_level_of_sender(ev, get_event), ev.origin_server_ts, eid)

    return lexicographical_topological_sort(graph, key)


def lexicographical_topological_sort(graph: Mapping[str, Iterable[str]],
                                     key: Callable[[str], tuple]) -> list[str]:
    """Kahn's algorithm over ``graph`` (event -> the events it depends on, all in ``graph``),
    emitting dependencies first and, among the ready events, the one with the smallest ``key``."""
    waiting_on = {eid: len(set(deps)) for eid, deps in graph.items()}
    dependents: dict[str, list[str]] = {eid: [] for eid in graph}
    for eid, deps in graph.items():
        for d in set(deps):
            dependents[d].append(eid)
    heap = [(key(eid), eid) for eid, n in waiting_on.items() if n == 0]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, eid = heapq.heappop(heap)
        out.append(eid)
        for child in dependents[eid]:
            waiting_on[child] -= 1
            if waiting_on[child] == 0:
                heapq.heappush(heap, (key(child), child))
    return out


def iterative_auth_checks(event_ids: Iterable[str], base_state: Mapping[StateKey, str],
                          get_event: GetEvent) -> dict[StateKey, str]:
    """v2-state-res.md, "Iterative auth checks": apply each event that the auth rules allow against
    the state built so far; keys the rules need but the state lacks come from the event's own
    non-rejected auth_events (and, in v12, the room's create event, never in auth_events).

    Events previously rejected against the state before them are re-checked like any other
    (v2-state-res.md, "Rejected events"); rejected *auth* events are never used."""
    ea = _event_auth()
    resolved = dict(base_state)
    for eid in event_ids:
        ev = get_event(eid)
        if ev is None or not ev.is_state():
            continue
        auth_state: dict[StateKey, Event] = {}
        for aid in ev.auth_event_ids:
            aev = get_event(aid)
            if aev is not None and aev.is_state() and aev.rejected_reason is None:
                auth_state[aev.state_tuple] = aev
        needed = set(ea.auth_types_for_event(ev.room_version, ev))
        needed.add(CREATE)
        for key in needed:
            sid = resolved.get(key)
            if sid is not None:
                sev = get_event(sid)
                if sev is not None:
                    auth_state[key] = sev
        if CREATE not in auth_state:
            create = _create_event_for(ev, get_event)
            if create is not None:
                auth_state[CREATE] = create
        if _is_allowed(ev, auth_state):
            resolved[ev.state_tuple] = eid
    return resolved


def _power_levels_auth_event(ev: Event, get_event: GetEvent) -> Event | None:
    for aid in ev.auth_event_ids:
        aev = get_event(aid)
        if aev is not None and aev.is_state() and aev.state_tuple == POWER_LEVELS:
            return aev
    return None


def mainline_sort(event_ids: Iterable[str], power_levels_id: str | None,
                  get_event: GetEvent) -> list[str]:
    """v2-state-res.md, "Mainline ordering" based on ``power_levels_id``: events whose
    power-levels ancestry meets the mainline further back come first (no meeting point = ∞, first
    of all), then origin_server_ts, then event_id."""
    mainline: dict[str, int] = {}  # event_id -> index i of P_i
    pl = get_event(power_levels_id) if power_levels_id else None
    while pl is not None and pl.event_id not in mainline:
        mainline[pl.event_id] = len(mainline)
        pl = _power_levels_auth_event(pl, get_event)

    memo: dict[str, float] = {}

    def position(ev: Event) -> float:
        # Walk e_1, e_2, … (e_0 itself excluded) until one is on the mainline.
        walked = []
        cur = _power_levels_auth_event(ev, get_event)
        pos = float("inf")
        while cur is not None:
            if cur.event_id in mainline:
                pos = mainline[cur.event_id]
                break
            if cur.event_id in memo:
                pos = memo[cur.event_id]
                break
            walked.append(cur.event_id)
            cur = _power_levels_auth_event(cur, get_event)
        # A walked PL event e_j not on the mainline has the same answer for its own e_1, e_2, …
        for w in walked:
            memo[w] = pos
        return pos

    keyed = []
    for eid in event_ids:
        ev = get_event(eid)
        if ev is None:
            continue
        keyed.append(((-position(ev), ev.origin_server_ts, eid), eid))
    keyed.sort()
    return [eid for _, eid in keyed]
