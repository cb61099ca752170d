"""Sync assembly: which events go where in a /sync response (pure, no I/O).

Spec: client-server-api "Syncing" (timeline windows, ``limited``, ``prev_batch``, ``state`` as the
state at the start of the timeline), "Filtering" and "Lazy-loading room members", "Receiving
notifications", the threading module's "Unread notification counts", data/api/client-server/
sync.yaml. The loader (homeserver/sync/service.py) fetches data and calls these functions in three
steps per room:

1. :func:`select_timeline` — the timeline out of the newest events of the room's window
   (``since`` .. now, or .. the user's leave), newest first, cut to the filter's limit;
2. :func:`compute_state_ids` — the ``state`` section's event IDs: the whole state at the start of
   the timeline (initial sync, ``full_state``, a room newly joined) or only what differs from the
   state at the since-token when the timeline has a gap; with lazy-loading only the members the
   client needs;
3. :func:`assemble_response` — the JSON body out of serialized events and the per-user streams.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from homeserver.client.filtering import RoomEventFilter, SyncFilter
from homeserver.protocol.events import Event

StateKey = tuple[str, str]

#: sync.yaml / Synapse: the timeline limit when the filter sets none.
DEFAULT_TIMELINE_LIMIT = 10
MEMBER = "m.room.member"


# --- step 1: the timeline ----------------------------------------------------------------------

@dataclass(frozen=True)
class TimelineChoice:
    events: list[Event]  # oldest first
    limited: bool  # the window holds events before the first chosen one
    gap: bool  # some event of the window is not in ``events`` (state must be diffed)
    need_more: bool = False  # too few matching events: the loader should fetch older ones


def select_timeline(room_id: str, newest_first: Sequence[Event], timeline_filter: RoomEventFilter, limit: int,
                    exhausted: bool) -> TimelineChoice:
    """Choose the timeline from the window's newest events (``newest_first``; ``exhausted``: the
    window holds no older events than these). The newest ``limit`` events that pass the filter
    are kept; if fewer pass and older events exist, ``need_more`` asks the loader for more."""
    chosen: list[Event] = []
    skipped = False
    for i, ev in enumerate(newest_first):
        if len(chosen) >= limit:
            chosen.reverse()
            return TimelineChoice(chosen, True, True)
        if timeline_filter.matches(ev.pdu, room_id):
            chosen.append(ev)
        else:
            skipped = True
    chosen.reverse()
    if not exhausted:
        if len(chosen) < limit:
            return TimelineChoice(chosen, True, True, need_more=True)
        return TimelineChoice(chosen, True, True)
    return TimelineChoice(chosen, skipped and bool(chosen) and _skipped_before(chosen, newest_first),
                          skipped)


def _skipped_before(chosen: list[Event], newest_first: Sequence[Event]) -> bool:
    """Whether some skipped event is older than the first chosen one."""
    first = chosen[0].event_id
    for ev in newest_first:
        if ev.event_id == first:
            return ev is not newest_first[-1]
    return False


def timeline_limit(sync_filter: SyncFilter) -> int:
    return sync_filter.timeline.limit_or(DEFAULT_TIMELINE_LIMIT)


def filter_selects_all(f: RoomEventFilter) -> bool:
    """Whether a room event filter lets every event of an allowed room through."""
    return (f.types is None and not f.not_types and f.senders is None and not f.not_senders
            and f.contains_url is None)


def state_type_checker(f: RoomEventFilter) -> Callable[[str], bool] | None:
    """A check of state keys' event types against the filter's ``types``/``not_types`` (None
    when they impose nothing); senders and the rest are checked on the loaded events."""
    if f.types is None and not f.not_types:
        return None
    probe = RoomEventFilter(types=f.types, not_types=f.not_types)
    return lambda event_type: probe.matches({"type": event_type})


# --- step 2: the state section -------------------------------------------------------------------

def compute_state_ids(user_id: str, state_at_start: Mapping[StateKey, str], *,
                      state_at_since: Mapping[StateKey, str] | None, timeline: Sequence[Event], full: bool,
                      gap: bool, lazy_load_members: bool = False, include_redundant_members: bool = False,
                      extra_members: Iterable[str] = (), sent_members: Mapping[str, str] | None = None,
                      types_ok: Callable[[str], bool] | None = None, exclude_timeline: bool = True) -> list[str]:
    """Event IDs for a room's ``state`` (or ``state_after``) section.

    ``state_at_start``: the state at the start of the timeline (``state``) or at its end
    (``state_after``). ``full``: an initial sync, ``full_state``, or a room the user newly joined —
    the whole state. Otherwise, when the timeline has a ``gap``, what differs from
    ``state_at_since`` (events in the gap); else nothing. With ``lazy_load_members``
    ("Lazy-loading room members"): only the member events of the timeline's senders and
    ``extra_members`` (the heroes), plus the user's own on a full sync, and every member change of
    the gap (sync.yaml: "MUST return membership events for events in the gap"); members whose
    current event is in ``sent_members`` (already sent to this device) are left out unless
    ``include_redundant_members``. Events in the timeline are not repeated here unless
    ``exclude_timeline`` is false (``state_after`` must hold the whole state). ``types_ok`` drops
    state keys by event type (the state filter's ``types``/``not_types``).
    """
    if full:
        candidates: dict[StateKey, str] = dict(state_at_start)
    elif gap and state_at_since is not None:
        candidates = {k: v for k, v in state_at_start.items() if state_at_since.get(k) != v}
    else:
        candidates = {}
    if lazy_load_members:
        wanted = {e.sender for e in timeline if isinstance(e.sender, str)}
        wanted.update(extra_members)
        if full:
            wanted.add(user_id)
        kept: dict[StateKey, str] = {}
        for k, v in candidates.items():
            if k[0] != MEMBER or not full or k[1] in wanted:
                kept[k] = v
        for u in sorted(wanted):
            k = (MEMBER, u)
            if k in kept or k not in state_at_start:
                continue
            eid = state_at_start[k]
            if not full and not include_redundant_members and sent_members is not None \
                    and sent_members.get(u) == eid:
                continue
            kept[k] = eid
        candidates = kept
    in_timeline = {e.event_id for e in timeline} if exclude_timeline else set()
    return [eid for k, eid in candidates.items()
            if eid not in in_timeline and (types_ok is None or types_ok(k[0]))]


def members_sent(state_events: Iterable[Event], timeline: Iterable[Event]) -> dict[str, str]:
    """``{user: member event ID}`` of the member events a response carries (lazy-loading cache)."""
    out: dict[str, str] = {}
    for ev in list(state_events) + list(timeline):
        if ev.type == MEMBER and isinstance(ev.state_key, str):
            out[ev.state_key] = ev.event_id
    return out


# --- step 3: the response ------------------------------------------------------------------------

def unread_counts(counts: Mapping[str, tuple[int, int]] | None, per_thread: bool) -> tuple[dict, dict]:
    """(``unread_notifications``, ``unread_thread_notifications``) of a room from its counts per
    thread ("main" or a root's event ID). Without ``per_thread`` everything is summed into the
    room's counts; with it the room's counts are the main timeline's only (threading module)."""
    total_n = total_h = 0
    threads: dict[str, dict] = {}
    for thread, (n, h) in (counts or {}).items():
        if per_thread and thread != "main":
            threads[thread] = {"notification_count": n, "highlight_count": h}
        else:
            total_n += n
            total_h += h
    return {"notification_count": total_n, "highlight_count": total_h}, threads


@dataclass
class JoinedRoom:
    """A joined (or left: ``left``) room's sections, events already serialized."""

    room_id: str
    timeline: list[dict] = field(default_factory=list)
    limited: bool = False
    prev_batch: str | None = None
    state: list[dict] = field(default_factory=list)
    ephemeral: list[dict] = field(default_factory=list)
    account_data: list[dict] = field(default_factory=list)
    counts: Mapping[str, tuple[int, int]] | None = None
    summary: dict | None = None
    left: bool = False


@dataclass
class StrippedRoom:
    """An invited or knocked room: its stripped state events."""

    room_id: str
    events: list[dict]
    knock: bool = False


@dataclass
class SyncData:
    """Everything the response is made of, loaded and serialized."""

    next_batch: str
    incremental: bool
    rooms: list[JoinedRoom] = field(default_factory=list)
    stripped: list[StrippedRoom] = field(default_factory=list)
    account_data: list[dict] = field(default_factory=list)
    presence: list[dict] = field(default_factory=list)
    to_device: list[dict] = field(default_factory=list)
    device_lists_changed: Iterable[str] = ()
    device_lists_left: Iterable[str] = ()
    one_time_keys_count: Mapping[str, int] | None = None
    fallback_key_types: Sequence[str] | None = None


def _project(sync_filter: SyncFilter, events: list[dict]) -> list[dict]:
    if sync_filter.event_fields is None:
        return events
    return [sync_filter.project(e) for e in events]


def _room_has_news(room: JoinedRoom) -> bool:
    return bool(room.timeline or room.state or room.ephemeral or room.account_data or room.left)


def assemble_response(data: SyncData, sync_filter: SyncFilter, *, use_state_after: bool = False) -> dict:
    """The /sync response body (sync.yaml). On incremental syncs joined rooms with nothing new are
    left out; filters apply to every section (room, ephemeral, account data, presence) and
    ``event_fields`` to room events."""
    per_thread = sync_filter.timeline.unread_thread_notifications
    join: dict[str, Any] = {}
    leave: dict[str, Any] = {}
    for room in data.rooms:
        if not sync_filter.room_allowed(room.room_id):
            continue
        ephemeral = sync_filter.filter_room_ephemeral(room.room_id, room.ephemeral)
        account_data = sync_filter.filter_room_account_data(room.room_id, room.account_data)
        if data.incremental and not (room.timeline or room.state or ephemeral or account_data or room.left):
            continue
        body: dict[str, Any] = {
            "timeline": {"events": _project(sync_filter, room.timeline), "limited": room.limited},
            "state_after" if use_state_after else "state": {"events": _project(sync_filter, room.state)},
            "account_data": {"events": account_data},
        }
        if room.prev_batch is not None:
            body["timeline"]["prev_batch"] = room.prev_batch
        if room.left:
            leave[room.room_id] = body
            continue
        body["ephemeral"] = {"events": ephemeral}
        notifications, threads = unread_counts(room.counts, per_thread)
        body["unread_notifications"] = notifications
        if per_thread and threads:
            body["unread_thread_notifications"] = threads
        if room.summary is not None:
            body["summary"] = room.summary
        join[room.room_id] = body
    invite: dict[str, Any] = {}
    knock: dict[str, Any] = {}
    for s in data.stripped:
        if not sync_filter.room_allowed(s.room_id):
            continue
        if s.knock:
            knock[s.room_id] = {"knock_state": {"events": s.events}}
        else:
            invite[s.room_id] = {"invite_state": {"events": s.events}}
    out: dict[str, Any] = {
        "next_batch": data.next_batch,
        "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
        "account_data": {"events": sync_filter.filter_account_data(data.account_data)},
        "presence": {"events": sync_filter.filter_presence(data.presence)},
        "to_device": {"events": list(data.to_device)},
        "device_lists": {"changed": sorted(data.device_lists_changed), "left": sorted(data.device_lists_left)},
    }
    if data.one_time_keys_count is not None:
        out["device_one_time_keys_count"] = dict(data.one_time_keys_count)
    if data.fallback_key_types is not None:
        out["device_unused_fallback_key_types"] = list(data.fallback_key_types)
    return out


def is_empty(response: Mapping) -> bool:
    """Whether an incremental response carries nothing for the client (a long-poll keeps waiting)."""
    rooms = response.get("rooms", {})
    if any(rooms.get(k) for k in ("join", "invite", "leave", "knock")):
        return False
    if response.get("account_data", {}).get("events") or response.get("presence", {}).get("events"):
        return False
    if response.get("to_device", {}).get("events"):
        return False
    dl = response.get("device_lists", {})
    return not (dl.get("changed") or dl.get("left"))


# --- summary and stripped state --------------------------------------------------------------------

def room_summary(user_id: str, joined: int, invited: int, hero_candidates: Sequence[tuple[str, str]],
                 has_name: bool) -> dict:
    """sync.yaml RoomSummary: member counts and, for rooms without a name or canonical alias, up
    to 5 heroes (joined or invited members other than the user, oldest first; else the ones
    who left). ``hero_candidates``: ``(user_id, membership)`` ordered by stream ordering."""
    summary: dict[str, Any] = {"m.joined_member_count": joined, "m.invited_member_count": invited}
    if not has_name:
        present = [u for u, m in hero_candidates if m in ("join", "invite") and u != user_id]
        others = [u for u, m in hero_candidates if m not in ("join", "invite") and u != user_id]
        summary["m.heroes"] = (present or others)[:5]
    return summary
