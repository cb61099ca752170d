"""Who may read what in a room: event visibility and access to room state and members.

The rules are the pure functions of homeserver/protocol/visibility.py (modules/history_visibility.md);
this service loads what they need (the state before each event, the user's membership history)
and answers for /event, /state, /members, /context, /messages and /initialSync. Events of
erased accounts come back as redacted copies to users who were not joined at them
(homeserver/accounts/erasure.py), so callers must use the events returned, not their originals.

Access to state and members (rooms.yaml, 403 "You aren't a member of the room and weren't
previously a member of the room"): joined users read the current state; users who left or were
banned read the state at their departure; anyone reads the current state of a world_readable
room; everyone else is refused. Unknown rooms are 404 M_NOT_FOUND.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from homeserver.accounts.erasure import ErasureService
from homeserver.http.errors import forbidden, not_found
from homeserver.protocol import visibility as rules
from homeserver.protocol.events import Event
from homeserver.storage.events_store import EventsStore
from homeserver.storage.room_extras_store import RoomExtrasStore
from homeserver.storage.state_store import StateKey, StateStore

from .pipeline import RoomEventService


@dataclass(frozen=True)
class RoomAccess:
    """What a user may read of a room's state: ``state`` (type, state_key) -> event ID, the
    current state (``at_event_id`` None) or the state after their leave/ban event."""

    room_id: str
    membership: str | None
    state: dict[StateKey, str]
    at_event_id: str | None
    world_readable: bool = False


class VisibilityService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.store = hs.get(EventsStore)
        self.state_store = hs.get(StateStore)
        self.extras = hs.get(RoomExtrasStore)
        self.erasures = hs.get(ErasureService)

    async def filter_events_for_user(self, user_id: str, events: Sequence[Event], *,
                                     ignored_users: Iterable[str] = (),
                                     member_streams: Mapping[str, list[tuple[int, str]]] | None = None
                                     ) -> list[Event]:
        """The events (same order) ``user_id`` may see under the history visibility rules, each
        judged by the state before it. Outliers (no known state) are not shown.
        ``member_streams``: room ID -> RoomExtrasStore.get_member_event_streams for the user,
        for the rooms the caller already read it for."""
        if not events:
            return []
        metas = await self.store.get_event_metas(e.event_id for e in events)
        groups = {m.state_group_before for m in metas.values() if m.state_group_before is not None}
        group_maps = {g: await self.state_store.get_state_group(g) for g in groups}
        wanted: set[str] = set()
        hv_key = rules.HISTORY_VISIBILITY
        member_key = ("m.room.member", user_id)
        for m in group_maps.values():
            for k in (hv_key, member_key):
                if k in m:
                    wanted.add(m[k])
        loaded = await self.store.get_events(wanted, allow_rejected=True)

        # One small state map per state group, shared by its events (the rules judge the
        # non-state events of one map once).
        smalls = {g: {k: loaded[m[k]] for k in (hv_key, member_key) if k in m and m[k] in loaded}
                  for g, m in group_maps.items()}
        pairs = []
        for e in events:
            meta = metas.get(e.event_id)
            if meta is None or meta.state_group_before is None:
                if e.type == "m.room.create":  # the first event: nothing before it
                    pairs.append((e, {}))
                continue
            pairs.append((e, smalls[meta.state_group_before]))
        join_streams = await self._join_streams({e.room_id for e in events}, user_id, member_streams or {})
        last_join = {room_id: max(streams) for room_id, streams in join_streams.items() if streams}

        def joined_later(event: Event) -> bool:
            meta = metas.get(event.event_id)
            if meta is None or meta.stream_ordering is None:
                return False
            last = last_join.get(event.room_id)
            return last is not None and last > meta.stream_ordering

        erased = await self.erasures.erased_among({e.sender for e in events})
        return rules.filter_events_for_user(user_id, pairs, joined_later=joined_later,
                                            ignored_users=ignored_users, erased_senders=erased)

    async def _join_streams(self, room_ids: Iterable[str], user_id: str,
                            known: Mapping[str, list[tuple[int, str]]]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for room_id in room_ids:
            rows = known.get(room_id)
            if rows is None:
                rows = await self.extras.get_member_event_streams(room_id, user_id)
            evs = await self.store.get_events([eid for _, eid in rows])
            out[room_id] = [s for s, eid in rows if eid in evs and evs[eid].membership == "join"]
        return out

    async def can_see_event(self, user_id: str, event: Event) -> bool:
        return bool(await self.filter_events_for_user(user_id, [event]))

    async def visible_event(self, user_id: str, event: Event) -> Event | None:
        """``event`` as ``user_id`` may see it (a redacted copy when its sender is erased and the
        user was not joined at it), or None when hidden."""
        shown = await self.filter_events_for_user(user_id, [event])
        return shown[0] if shown else None

    async def is_world_readable(self, room_id: str) -> bool:
        ev = await self.events.get_current_state_event(room_id, "m.room.history_visibility")
        return ev is not None and rules.visibility_value(ev.content) == rules.WORLD_READABLE

    async def room_access(self, user_id: str, room_id: str, *, allow_departed: bool = True,
                          membership_row: tuple[str, str] | None | bool = False) -> RoomAccess:
        """What ``user_id`` may read of the room's state (see the module docstring); 404 for
        unknown rooms, 403 M_FORBIDDEN when nothing. ``membership_row``: the user's
        ``(membership, event_id)`` row (or None: no row) when the caller already read it
        (/messages reads it with the page); False: read it here."""
        if await self.events.get_room_version(room_id) is None:
            raise not_found("Unknown room")
        row = await self.store.get_membership(room_id, user_id) if membership_row is False else membership_row
        membership = row[0] if row else None
        if membership == "join":
            return RoomAccess(room_id, membership, dict(await self.events.get_current_state_ids(room_id)), None)
        if allow_departed and membership in ("leave", "ban") and row is not None:
            state = await self.events.get_state_ids_at(row[1])
            if state is not None:
                return RoomAccess(room_id, membership, dict(state), row[1])
        if await self.is_world_readable(room_id):
            return RoomAccess(room_id, membership, dict(await self.events.get_current_state_ids(room_id)),
                              None, world_readable=True)
        raise forbidden("You aren't a member of the room and weren't previously a member of the room.")
