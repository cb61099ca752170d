"""Walking a space tree (``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``) and summarising one
room (``GET /_matrix/client/v1/room_summary/{roomIdOrAlias}``).

Spec: modules/spaces.md ("Discovering rooms within spaces", "Ordering of children within a
space", m.space.child), space_hierarchy.yaml, room_summary.yaml.

The walk is depth first in the spec's child order: a stack of (room, depth); a room is listed when
the requester may see it (stats.is_room_accessible) and, when it is a space within ``max_depth``,
its valid children (``via`` a non-empty list; with ``suggested_only`` only ``suggested: true``)
are pushed. Rooms already seen are skipped, so loops end. A page ends after ``limit`` rooms; the
rest of the stack and the seen set are kept in memory under the ``next_batch`` token for
:data:`SESSION_TTL_MS`, bound to the requester, root, ``suggested_only`` and ``max_depth``.

Seam: ``remote_summaries`` (federation's ``GET /_matrix/federation/v1/hierarchy/{roomId}``) may
be set to ``async (room_id, via) -> dict | None`` giving a chunk (with children_state) for rooms
this server is not in; until then such children are left out.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from homeserver.accounts.auth import Requester
from homeserver.http.errors import forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.directory_store import RoomStats

from .aliases import AliasService
from .stats import RoomStatsService, is_room_accessible, summary_chunk

DEFAULT_LIMIT = 50
MAX_LIMIT = 50
DEFAULT_MAX_DEPTH = 50
MAX_MAX_DEPTH = 50
SESSION_TTL_MS = 5 * 60 * 1000

RemoteSummaries = Callable[[str, list[str]], Awaitable["dict | None"]]


def valid_order(order: Any) -> bool:
    """m.space.child ``order``: at most 50 characters, each from \\x20 to \\x7E."""
    return isinstance(order, str) and len(order) <= 50 and all("\x20" <= c <= "\x7e" for c in order)


def is_valid_child(event: Event) -> bool:
    """A child link counts when its content has a non-empty ``via`` list (modules/spaces.md:
    "Child rooms can be removed from a space by omitting the via key")."""
    via = event.content.get("via") if isinstance(event.content, dict) else None
    return isinstance(event.state_key, str) and ids.is_valid_room_id(event.state_key) \
        and isinstance(via, list) and len(via) > 0


def child_sort_key(event: Event) -> tuple:
    """modules/spaces.md "Ordering of children within a space": valid ``order`` values first, by
    code point; then by ``origin_server_ts``; ties by room ID (state key)."""
    order = event.content.get("order")
    ts = event.origin_server_ts if isinstance(event.origin_server_ts, int) else 0
    if valid_order(order):
        return (0, order, ts, event.state_key)
    return (1, "", ts, event.state_key)


def stripped_child(event: Event) -> dict:
    """A child event as a stripped state event with ``origin_server_ts`` (space_hierarchy.yaml)."""
    return {"type": event.type, "state_key": event.state_key, "content": event.content,
            "sender": event.sender, "origin_server_ts": event.origin_server_ts}


@dataclass
class _Session:
    user_id: str
    room_id: str
    suggested_only: bool
    max_depth: int
    stack: list[tuple[str, int, list[str]]]
    seen: set[str] = field(default_factory=set)
    expires_ms: int = 0


class SpaceHierarchyService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.stats = hs.get(RoomStatsService)
        self.remote_summaries: RemoteSummaries | None = None
        self._sessions: dict[str, _Session] = {}

    # --- access ---------------------------------------------------------------------------------
    async def _visible(self, room_id: str, user_id: str | None, joined: set[str]) -> tuple[RoomStats | None, str | None]:
        """(the room's stats when the user may see it, else None; the user's membership)."""
        stats = await self.stats.get_stats(room_id)
        if stats is None:
            return None, None
        membership = await self.events.get_membership(room_id, user_id) if user_id else None
        rv = await self.events.get_room_version(room_id)
        return (stats if is_room_accessible(stats, rv, membership, joined) else None), membership

    # --- room summary -----------------------------------------------------------------------------
    async def get_room_summary(self, requester: Requester | None, room_id_or_alias: str) -> dict:
        """room_summary.yaml: the summary of a local room, for anyone who may see it (see
        stats.is_room_accessible; anonymous callers: public or knock join rules, world-readable
        history). ``membership`` is added for authenticated callers ("leave" when none).
        404 M_NOT_FOUND for unknown or invisible rooms, 400 M_INVALID_PARAM for bad identifiers."""
        if isinstance(room_id_or_alias, str) and room_id_or_alias.startswith("#"):
            room_id, _ = await self.hs.get(AliasService).resolve(room_id_or_alias)
        elif isinstance(room_id_or_alias, str) and ids.is_valid_room_id(room_id_or_alias):
            room_id = room_id_or_alias
        else:
            raise invalid_param("Expected a room ID or a room alias")
        user_id = requester.user_id if requester is not None else None
        joined = set(await self.events.get_rooms_for_user(user_id)) if user_id else set()
        stats, membership = await self._visible(room_id, user_id, joined)
        if stats is None:
            raise not_found("Room not found.")
        chunk = summary_chunk(stats, extended=True)
        if requester is not None:
            chunk["membership"] = membership or "leave"
        return chunk

    # --- hierarchy ------------------------------------------------------------------------------
    async def get_hierarchy(self, requester: Requester, room_id: str, *, suggested_only: bool = False,
                            max_depth: int | None = None, limit: int | None = None,
                            from_token: str | None = None) -> dict:
        """space_hierarchy.yaml: ``{"rooms": [...], "next_batch"?}``. 403 M_FORBIDDEN when the root is
        unknown or not visible to the requester; 400 M_INVALID_PARAM for a bad limit/max_depth, an
        unknown token or one used with different ``suggested_only``/``max_depth``."""
        if limit is None:
            limit = DEFAULT_LIMIT
        if limit <= 0:
            raise invalid_param("limit must be greater than zero")
        limit = min(limit, MAX_LIMIT)
        if max_depth is not None and max_depth < 0:
            raise invalid_param("max_depth must be a non-negative integer")
        depth_cap = min(max_depth if max_depth is not None else DEFAULT_MAX_DEPTH, MAX_MAX_DEPTH)
        user_id = requester.user_id
        now = self.hs.clock_ms()
        self._expire(now)

        joined = set(await self.events.get_rooms_for_user(user_id))
        root, _ = await self._visible(room_id, user_id, joined)
        if root is None:
            raise forbidden("You are not allowed to view this room.")

        if from_token is not None:
            session = self._sessions.pop(from_token, None)
            if session is None or session.user_id != user_id or session.room_id != room_id:
                raise invalid_param("Unknown pagination token")
            if session.suggested_only != suggested_only or session.max_depth != depth_cap:
                raise invalid_param("suggested_only and max_depth cannot change on paginated requests")
            stack, seen = session.stack, session.seen
        else:
            stack, seen = [(room_id, 0, [])], set()

        rooms: list[dict] = []
        while stack and len(rooms) < limit:
            current, depth, via = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            entry, children = await self._summarise(current, via, user_id, joined, suggested_only)
            if entry is None:
                continue
            rooms.append(entry)
            if depth < depth_cap:
                for child, child_via in reversed(children):
                    if child not in seen:
                        stack.append((child, depth + 1, child_via))

        result: dict = {"rooms": rooms}
        if stack:
            token = secrets.token_urlsafe(16)
            self._sessions[token] = _Session(user_id, room_id, suggested_only, depth_cap, stack, seen,
                                             now + SESSION_TTL_MS)
            result["next_batch"] = token
        return result

    async def _summarise(self, room_id: str, via: list[str], user_id: str, joined: set[str],
                         suggested_only: bool) -> tuple[dict | None, list[tuple[str, list[str]]]]:
        """(the room's chunk with children_state, the (child room ID, via) to walk, in order)."""
        stats, _ = await self._visible(room_id, user_id, joined)
        if stats is None:
            if self.remote_summaries is not None and await self.events.get_room_version(room_id) is None:
                remote = await self.remote_summaries(room_id, via)
                if remote is not None:
                    return remote, []
            return None, []
        child_events: list[Event] = []
        if stats.room_type == "m.space":
            state = await self.events.get_current_state_ids(room_id)
            ids_ = [e for (t, _), e in state.items() if t == "m.space.child"]
            loaded = await self.events.get_events(ids_)
            child_events = sorted((ev for ev in loaded.values() if is_valid_child(ev)), key=child_sort_key)
        chunk = summary_chunk(stats, extended=True)
        chunk["children_state"] = [stripped_child(ev) for ev in child_events]
        walk = [(ev.state_key, [v for v in ev.content["via"] if isinstance(v, str)]) for ev in child_events
                if not suggested_only or ev.content.get("suggested") is True]
        return chunk, walk

    def _expire(self, now: int) -> None:
        for token in [t for t, s in self._sessions.items() if s.expires_ms <= now]:
            del self._sessions[token]

