"""Auth chains and the auth difference used by state resolution v2/v2.1.

Spec: rooms/fragments/v2-state-res.md, "Auth chain" and "Auth difference" (and rooms/v12.md, which
keeps both definitions).

* The *auth chain* of an event is every event reachable from it over ``auth_events`` links (the event
  itself excluded).
* The *auth difference* of state sets S1..Sn is ``∪Ci − ∩Ci`` where Ci is the full auth chain of Si.

One deliberate reading, shared with Synapse's chain-cover index: here Ci also contains the events of
Si themselves (``Ci = Si ∪ auth_chain(Si)``). The two readings differ only on (a) conflicted state
events, which are in the full conflicted set anyway, and (b) unconflicted state events that happen to
be in some but not all auth chains; step 5 of the algorithm puts the unconflicted state back in any
case, and matching Synapse keeps our resolved state identical to the largest deployment's.

Nothing here does I/O: ``get_event`` is a synchronous loader (a dict's ``get`` in tests, a cache-backed
loader in the server). Events the loader does not know are not walked past and not reported.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Callable, Hashable, Iterable, Mapping, Sequence

from .events import Event

GetEvent = Callable[[str], "Event | None"]


def auth_chain(event_ids: Iterable[str], get_event: GetEvent,
               cache: dict[str, tuple[str, ...] | None] | None = None) -> set[str]:
    """Every known event reachable from ``event_ids`` over ``auth_events`` (the start events
    excluded unless one is an auth ancestor of another).

    A plain depth-first walk; each event's auth list is fetched once (``cache`` may be shared
    between calls to remember the ``event_id -> auth_event_ids`` lookups; None = unknown event).
    """
    if cache is None:
        cache = {}
    seen: set[str] = set()
    stack: list[str] = []
    for eid in event_ids:
        stack.extend(_auth_ids(eid, get_event, cache) or ())
    while stack:
        eid = stack.pop()
        if eid in seen:
            continue
        auth_ids = _auth_ids(eid, get_event, cache)
        if auth_ids is None:
            continue  # unknown event: cannot be walked or verified
        seen.add(eid)
        stack.extend(auth_ids)
    return seen


def _auth_ids(event_id: str, get_event: GetEvent,
              cache: dict[str, tuple[str, ...] | None]) -> tuple[str, ...] | None:
    if event_id in cache:
        return cache[event_id]
    ev = get_event(event_id)
    ids = tuple(ev.auth_event_ids) if ev is not None else None
    cache[event_id] = ids
    return ids


def auth_chain_difference(state_sets: Sequence[set[str]], get_event: GetEvent) -> set[str]:
    """``∪Ci − ∩Ci`` with ``Ci = Si ∪ auth_chain(Si)`` (see the module docstring for why the state
    events themselves are counted). Walks each set's chain once with a shared lookup cache."""
    if not state_sets:
        return set()
    cache: dict[str, tuple[str, ...] | None] = {}
    chains = []
    for s in state_sets:
        known = {e for e in s if _auth_ids(e, get_event, cache) is not None}
        chains.append(known | auth_chain(known, get_event, cache))
    union = set().union(*chains)
    return union - set.intersection(*chains)


class AuthChainIndex:
    """An incremental chain-cover index over a room's auth DAG.

    **Design.** Every added event gets a position ``(chain, seq)``: chains are numbered 0, 1, …; the
    events of one chain are totally ordered by auth reachability, so the event at ``(c, s)`` reaches
    every ``(c, s')`` with ``s' < s``. A new event extends chain ``c`` only if the current tip of
    ``c`` is reachable from it; it prefers the chain of its ``chain_key`` (storage passes the
    ``(type, state_key)``, so a user's membership history or the power-levels history forms one
    chain), and otherwise starts a new chain.

    Reachability *across* chains is kept as **links**: ``links[c]`` is a list of
    ``(from_seq, target_chain, target_seq)`` in increasing ``from_seq`` meaning "the event at
    ``(c, from_seq)`` and every later event of ``c`` reach ``target_chain`` up to ``target_seq``".
    Links are the transitive closure (like Synapse's variant), but stored as deltas: an event only
    records the targets it reaches *further* than its chain predecessor does, so a long membership
    or power-levels chain costs a few links, not one vector per event.

    **Queries.** The reach of a set of events is, per chain touched, the highest ``seq`` in the set
    plus the maximum ``target_seq`` of that chain's links with ``from_seq`` up to it: a dict
    ``chain -> max seq`` (inclusive of the events themselves). For the auth difference of state
    sets S1..Sn, chain ``c`` contributes exactly the events with ``min_i R_i[c] < seq <=
    max_i R_i[c]`` (a missing entry counts as 0). No graph walk happens per query; cost is the
    number of links of the touched chains.

    **Persistence.** State is plain lists/ints/strings (:meth:`to_dict` / :meth:`from_dict`).
    Events must be added in topological order (auth events first); adding an event whose auth
    event is unknown raises ``KeyError``. Index state events only: message events are never in a
    state set nor an auth chain.
    """

    def __init__(self) -> None:
        self._pos: dict[str, tuple[int, int]] = {}       # event_id -> (chain, seq); seq from 1
        self._chains: list[list[str]] = []               # chain -> event ids, index = seq - 1
        self._links: list[list[tuple[int, int, int]]] = []  # chain -> [(from_seq, target, tseq)]
        self._link_seqs: list[list[int]] = []            # chain -> [from_seq] (for bisect)
        self._key_chain: dict[Hashable, int] = {}         # chain_key -> chain it extends

    # --- building ---------------------------------------------------------------------------
    def __contains__(self, event_id: str) -> bool:
        return event_id in self._pos

    def __len__(self) -> int:
        return len(self._pos)

    def position(self, event_id: str) -> tuple[int, int]:
        return self._pos[event_id]

    def add(self, event_id: str, auth_event_ids: Iterable[str], chain_key: Hashable | None = None) -> None:
        """Index ``event_id`` whose auth events (all already indexed) are ``auth_event_ids``."""
        if event_id in self._pos:
            return
        auth_ids = list(auth_event_ids)
        reach: dict[int, int] = self._reach(auth_ids)  # inclusive of the auth events themselves
        chain = None
        if chain_key is not None:
            c = self._key_chain.get(chain_key)
            if c is not None and reach.get(c, 0) >= len(self._chains[c]):
                chain = c
        if chain is None:
            chain = len(self._chains)
            self._chains.append([])
            self._links.append([])
            self._link_seqs.append([])
            base: dict[int, int] = {}
        else:
            base = self._chain_reach(chain, len(self._chains[chain]))
        if chain_key is not None:
            self._key_chain[chain_key] = chain
        seq = len(self._chains[chain]) + 1
        self._chains[chain].append(event_id)
        self._pos[event_id] = (chain, seq)
        for target, tseq in sorted(reach.items()):
            if target != chain and tseq > base.get(target, 0):
                self._links[chain].append((seq, target, tseq))
                self._link_seqs[chain].append(seq)

    # --- queries ----------------------------------------------------------------------------
    def _chain_reach(self, chain: int, seq: int) -> dict[int, int]:
        """What ``(chain, seq)`` reaches in other chains (own chain excluded)."""
        out: dict[int, int] = {}
        links = self._links[chain]
        for i in range(bisect_right(self._link_seqs[chain], seq)):
            _, target, tseq = links[i]
            if tseq > out.get(target, 0):
                out[target] = tseq
        return out

    def _reach(self, event_ids: Iterable[str]) -> dict[int, int]:
        """chain -> highest seq reachable from ``event_ids``, the events themselves included."""
        top: dict[int, int] = {}
        for eid in event_ids:
            c, s = self._pos[eid]
            if s > top.get(c, 0):
                top[c] = s
        out = dict(top)
        for c, s in top.items():
            for target, tseq in self._chain_reach(c, s).items():
                if tseq > out.get(target, 0):
                    out[target] = tseq
        return out

    def auth_chain(self, event_ids: Iterable[str]) -> set[str]:
        """The auth chain of ``event_ids`` (start events excluded unless reachable from another).

        The strict ancestors of ``(c, s)`` are ``(c, 1..s-1)`` plus what its links reach."""
        reach: dict[int, int] = {}
        for eid in event_ids:
            c, s = self._pos[eid]
            if s - 1 > reach.get(c, 0):
                reach[c] = s - 1
            for target, tseq in self._chain_reach(c, s).items():
                if tseq > reach.get(target, 0):
                    reach[target] = tseq
        return {eid for c, s in reach.items() for eid in self._chains[c][:s]}

    def difference(self, state_sets: Sequence[Iterable[str]]) -> set[str]:
        """The auth difference ``∪Ci − ∩Ci`` with ``Ci = Si ∪ auth_chain(Si)``; every event of every
        set must be indexed (``KeyError`` otherwise)."""
        reaches = [self._reach(s) for s in state_sets]
        if not reaches:
            return set()
        out: set[str] = set()
        for c in set().union(*reaches):
            seqs = [r.get(c, 0) for r in reaches]
            lo, hi = min(seqs), max(seqs)
            if hi > lo:
                out.update(self._chains[c][lo:hi])
        return out

    # --- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain data: ``{"chains": [[event_id, ...]], "links": [[[from_seq, target, tseq]]],
        "keys": [[chain_key, chain]]}`` (chain keys must themselves be plain data)."""
        return {
            "chains": [list(c) for c in self._chains],
            "links": [[list(l) for l in ls] for ls in self._links],
            "keys": [[list(k) if isinstance(k, tuple) else k, c] for k, c in self._key_chain.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "AuthChainIndex":
        idx = cls()
        for c, ids in enumerate(data["chains"]):
            idx._chains.append(list(ids))
            for s, eid in enumerate(ids, start=1):
                idx._pos[eid] = (c, s)
        for ls in data["links"]:
            idx._links.append([tuple(l) for l in ls])
            idx._link_seqs.append([l[0] for l in ls])
        for k, c in data["keys"]:
            idx._key_chain[tuple(k) if isinstance(k, list) else k] = c
        return idx
