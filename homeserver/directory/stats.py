"""What the directory shows of a room (name, topic, join rule, member count …), derived from its
current state and kept in a ``room_stats`` row per room.

A row records the state group it was computed from; :meth:`RoomStatsService.get_stats` compares it
with the room's current state group (the pipeline's in-memory snapshot) and recomputes a stale row,
so the row never needs a hook in the pipeline. While recomputing, the ``m.room.member`` events that
changed since the recorded group feed the user directory (display names and avatars).

The pure part (:func:`summarise_state`, :func:`summary_chunk`, :func:`is_room_accessible`) reads
plain events; the service does the I/O.
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping

from twisted.internet import defer

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import RoomVersion
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.state import RoomStateService
from homeserver.storage.directory_store import DirectoryStore, DirectoryUser, RoomStats
from homeserver.storage.state_store import StateKey, StateStore

logger = logging.getLogger(__name__)

#: The state a summary reads (besides memberships).
SUMMARY_KEYS: tuple[StateKey, ...] = (
    ("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.canonical_alias", ""),
    ("m.room.avatar", ""), ("m.room.join_rules", ""), ("m.room.history_visibility", ""),
    ("m.room.guest_access", ""), ("m.room.encryption", ""),
)


def _str(content: Mapping, key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) and value else None


def plain_topic(content: Mapping) -> str | None:
    """The plain-text topic: the ``text/plain`` entry of ``m.topic`` (a missing mimetype means
    text/plain), else the legacy ``topic`` string (client-server-api m.room.topic;
    public_rooms_chunk.yaml "topic")."""
    rich = content.get("m.topic")
    if isinstance(rich, dict) and isinstance(rich.get("m.text"), list):
        for entry in rich["m.text"]:
            if isinstance(entry, dict) and entry.get("mimetype", "text/plain") == "text/plain" \
                    and isinstance(entry.get("body"), str):
                return entry["body"]
    return _str(content, "topic")


def allowed_room_ids(join_rules_content: Mapping) -> tuple[str, ...]:
    """The room IDs of the ``m.room_membership`` conditions of a restricted join rule
    (client-server-api "Restricted rooms", "Conditions")."""
    allow = join_rules_content.get("allow")
    if not isinstance(allow, list):
        return ()
    out = []
    for cond in allow:
        if isinstance(cond, dict) and cond.get("type") == "m.room_membership" \
                and isinstance(cond.get("room_id"), str) and cond["room_id"] not in out:
            out.append(cond["room_id"])
    return tuple(out)


def summarise_state(room_id: str, state_group: int | None, room_version: RoomVersion | None,
                    state: Mapping[StateKey, Event]) -> RoomStats:
    """The stats row of a room from its current state events (``SUMMARY_KEYS``); joined_members
    is counted by the store."""
    def content(key: str) -> Mapping:
        ev = state.get((key, ""))
        return ev.content if ev is not None and isinstance(ev.content, dict) else {}

    create = content("m.room.create")
    join_rules = content("m.room.join_rules")
    join_rule = _str(join_rules, "join_rule")
    alias = _str(content("m.room.canonical_alias"), "alias")
    if alias is not None and not ids.is_valid_room_alias(alias):
        alias = None
    restricted = join_rule in ("restricted", "knock_restricted")
    return RoomStats(
        room_id=room_id, state_group=state_group,
        room_version=room_version.identifier if room_version is not None else _str(create, "room_version"),
        name=_str(content("m.room.name"), "name"),
        topic=plain_topic(content("m.room.topic")),
        canonical_alias=alias,
        avatar_url=_str(content("m.room.avatar"), "url"),
        join_rule=join_rule,
        history_visibility=_str(content("m.room.history_visibility"), "history_visibility"),
        guest_access=_str(content("m.room.guest_access"), "guest_access"),
        room_type=_str(create, "type"),
        encryption=_str(content("m.room.encryption"), "algorithm"),
        allowed_room_ids=allowed_room_ids(join_rules) if restricted else (),
    )


def summary_chunk(stats: RoomStats, *, extended: bool = False) -> dict:
    """A ``PublishedRoomsChunk`` (public_rooms_chunk.yaml); ``extended`` adds the RoomSummary
    fields (definitions/room_summary.yaml: allowed_room_ids, encryption, room_version)."""
    chunk: dict = {
        "room_id": stats.room_id,
        "num_joined_members": stats.joined_members,
        "world_readable": stats.world_readable,
        "guest_can_join": stats.guest_can_join,
    }
    for key, value in (("name", stats.name), ("topic", stats.topic), ("canonical_alias", stats.canonical_alias),
                       ("avatar_url", stats.avatar_url), ("join_rule", stats.join_rule),
                       ("room_type", stats.room_type)):
        if value is not None:
            chunk[key] = value
    if extended:
        if stats.allowed_room_ids:
            chunk["allowed_room_ids"] = list(stats.allowed_room_ids)
        if stats.encryption is not None:
            chunk["encryption"] = stats.encryption
        if stats.room_version is not None:
            chunk["room_version"] = stats.room_version
    return chunk


def is_room_accessible(stats: RoomStats, room_version: RoomVersion | None, membership: str | None,
                       joined_rooms: Iterable[str] = ()) -> bool:
    """Whether a user may see a room's summary (space_hierarchy.yaml, "rooms"): joined or
    invited (or knocking); a public join rule; a knock or knock_restricted join rule in a room
    version that has it; a restricted rule whose allowed rooms include one the user is joined to;
    or world-readable history. ``membership`` is None for a stranger or an anonymous request."""
    if membership in ("join", "invite", "knock"):
        return True
    if stats.world_readable:
        return True
    rule = stats.join_rule
    if rule == "public":
        return True
    if rule == "knock" and (room_version is None or room_version.knock_join_rule):
        return True
    if rule == "knock_restricted" and (room_version is None or room_version.knock_restricted_join_rule):
        return True
    if rule in ("restricted", "knock_restricted"):
        joined = set(joined_rooms)
        return any(r in joined for r in stats.allowed_room_ids)
    return False


def member_profile(user_id: str, event: Event) -> DirectoryUser | None:
    """The directory entry from a join event (display name and avatar of the member)."""
    if event.membership != "join" or not isinstance(event.content, dict):
        return None
    return DirectoryUser(user_id, _str(event.content, "displayname"), _str(event.content, "avatar_url"))


class RoomStatsService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(DirectoryStore)
        self.events = hs.get(RoomEventService)
        self.room_state = hs.get(RoomStateService)
        self.state_store = hs.get(StateStore)
        self._inflight: dict[str, defer.Deferred] = {}

    async def get_stats(self, room_id: str) -> RoomStats | None:
        """The room's fresh stats row; None for rooms this server has no state of."""
        snap = await self.room_state.get_snapshot(room_id)
        if snap is None:
            return None
        row = (await self.store.get_room_stats([room_id])).get(room_id)
        if row is not None and snap.state_group is not None and row.state_group == snap.state_group:
            return row
        pending = self._inflight.get(room_id)
        if pending is not None:
            d: defer.Deferred = defer.Deferred()
            pending.addBoth(lambda r: (d.callback(None), r)[1])
            await d
            return await self.get_stats(room_id)
        self._inflight[room_id] = done = defer.Deferred()
        try:
            return await self._recompute(room_id, snap, row)
        finally:
            del self._inflight[room_id]
            done.callback(None)

    async def refresh_stale(self, *, only_public: bool = False) -> int:
        """Recompute every stale row (all rooms, or the published ones); returns how many."""
        stale = await self.store.get_stale_stats_rooms(only_public=only_public)
        for room_id in stale:
            try:
                await self.get_stats(room_id)
            except Exception:
                logger.exception("recomputing the stats of %s failed", room_id)
        return len(stale)

    async def _recompute(self, room_id: str, snap, row: RoomStats | None) -> RoomStats:
        state = snap.state
        wanted = {k: state[k] for k in SUMMARY_KEYS if k in state}
        loaded = await self.events.get_events(wanted.values())
        events = {k: loaded[e] for k, e in wanted.items() if e in loaded}
        stats = summarise_state(room_id, snap.state_group, snap.room_version, events)
        old: Mapping[StateKey, str] = {}
        if row is not None and row.state_group is not None:
            try:
                old = await self.state_store.get_state_group(row.state_group)
            except KeyError:
                old = {}
        changed = {k[1]: e for k, e in state.items() if k[0] == "m.room.member" and old.get(k) != e}
        profiles = []
        if changed:
            members = await self.events.get_events(changed.values())
            for user_id, event_id in changed.items():
                ev = members.get(event_id)
                profile = member_profile(user_id, ev) if ev is not None else None
                if profile is not None:
                    profiles.append(profile)
        return await self.store.upsert_room_stats(stats, profiles)
