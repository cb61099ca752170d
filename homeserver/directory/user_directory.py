"""The user directory (``POST /user_directory/search``) and mutual rooms (``GET /mutual_rooms``).

Spec: client-server-api "User Directory" (users.yaml): the search covers at least the users who
share a room with the requester and the users joined to rooms with a public join rule or
world-readable history, case-insensitively over user IDs and display names. modules/mutual_rooms.md
(mutual_rooms.yaml, v1.19; MSC2666's unstable path serves the same answer).

Display names and avatars come from members' join events, gathered as room stats are recomputed
(stats.RoomStatsService); searching first brings every stale stats row up to date, so a name
changed a moment ago is found.
"""
from __future__ import annotations

import base64
from typing import Any

from homeserver.accounts.auth import Requester
from homeserver.http.errors import invalid_param, missing_param
from homeserver.protocol import ids
from homeserver.storage.directory_store import DirectoryStore

from .stats import RoomStatsService

DEFAULT_SEARCH_LIMIT = 10
MAX_SEARCH_LIMIT = 100
MAX_SEARCH_TERM = 1000
#: Rooms per page of /mutual_rooms.
MUTUAL_ROOMS_BATCH = 100


def _encode(room_id: str) -> str:
    return base64.urlsafe_b64encode(room_id.encode("utf-8")).decode("ascii").rstrip("=")


def _decode(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise invalid_param("Invalid from token")
    if not ids.is_valid_room_id(raw):
        raise invalid_param("Invalid from token")
    return raw


class UserDirectoryService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(DirectoryStore)
        self.stats = hs.get(RoomStatsService)

    async def search(self, requester: Requester, search_term: Any, limit: Any = None) -> dict:
        """users.yaml: ``{"results": [{user_id, display_name?, avatar_url?}], "limited"}``.
        400 M_INVALID_PARAM when search_term is not a string or limit not a non-negative integer;
        M_MISSING_PARAM without search_term."""
        if search_term is None:
            raise missing_param("Missing search_term")
        if not isinstance(search_term, str):
            raise invalid_param("search_term must be a string")
        if len(search_term) > MAX_SEARCH_TERM:  # SQLite refuses LIKE patterns over 50 000 bytes
            raise invalid_param(f"search_term is longer than {MAX_SEARCH_TERM} characters")
        if limit is None:
            limit = DEFAULT_SEARCH_LIMIT
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise invalid_param("limit must be a non-negative integer")
        limit = min(limit, MAX_SEARCH_LIMIT)
        term = search_term.strip()
        if not term or limit == 0:
            return {"results": [], "limited": False}
        await self.stats.refresh_stale()
        users, limited = await self.store.search_users(requester.user_id, term, limit)
        results = []
        for u in users:
            entry: dict = {"user_id": u.user_id}
            if u.display_name is not None:
                entry["display_name"] = u.display_name
            if u.avatar_url is not None:
                entry["avatar_url"] = u.avatar_url
            results.append(entry)
        return {"results": results, "limited": limited}

    async def remove_user(self, user_id: str) -> None:
        """Deactivation: the user's entry goes (their rooms are left first, so room stats,
        which only add joined members, do not bring it back)."""
        await self.store.delete_directory_user(user_id)

    async def mutual_rooms(self, requester: Requester, user_id: Any, from_token: Any = None) -> dict:
        """mutual_rooms.yaml: ``{"joined", "count", "next_batch"?}`` of rooms both users are joined
        to. 400 M_MISSING_PARAM without user_id; 400 M_INVALID_PARAM for an invalid user ID, the
        requester's own ID or a bad ``from`` token."""
        if user_id is None or user_id == "":
            raise missing_param("Missing user_id")
        if not isinstance(user_id, str) or not ids.is_valid_user_id(user_id):
            raise invalid_param("The user ID provided was invalid")
        if user_id == requester.user_id:
            raise invalid_param("You cannot request a list of shared rooms with yourself")
        rooms = await self.store.get_mutual_rooms(requester.user_id, user_id)
        start = 0
        if from_token is not None:
            after = _decode(from_token)
            start = next((i for i, r in enumerate(rooms) if r > after), len(rooms))
        page = rooms[start:start + MUTUAL_ROOMS_BATCH]
        result: dict = {"joined": page, "count": len(rooms)}
        if start + MUTUAL_ROOMS_BATCH < len(rooms):
            result["next_batch"] = _encode(page[-1])
        return result
