"""The published room directory: which rooms are published, and listing them with a filter and
pagination tokens (client-server-api "Published room directory", list_public_rooms.yaml).

Order: most joined members first, then room ID (the spec lets the server choose; largest first is
recommended). Tokens are opaque (appendices "Opaque Identifiers": ``[0-9A-Za-z._~-]``): a
direction letter and the (joined_members, room_id) key of the last (``n``) or first (``p``) room
of the page, in unpadded URL-safe base64; paging is by key, so rooms published or removed between
requests shift nothing.

Seams: ``remote_lister`` (federation's ``GET/POST /_matrix/federation/v1/publicRooms``) for the
``server`` parameter; ``instance_resolver`` maps a ``third_party_instance_id`` to the
(appservice_id, network_id) an application service published rooms under (default: the
``appservice_id|network_id`` form).
"""
from __future__ import annotations

import base64
import json
from typing import Any, Awaitable, Callable

from homeserver.accounts.auth import AuthService, Requester
from homeserver.http.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.directory_store import DirectoryStore

from .aliases import AliasService
from .stats import RoomStatsService, summary_chunk

#: Rooms per page when the client gives no limit, and the most it may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

RemoteLister = Callable[..., Awaitable[dict]]


def encode_token(direction: str, members: int, room_id: str) -> str:
    raw = json.dumps([members, room_id], separators=(",", ":")).encode("utf-8")
    return direction + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str) -> tuple[str, int, str]:
    """(direction "n" or "p", joined_members, room_id); 400 M_INVALID_PARAM when malformed."""
    try:
        direction, body = token[0], token[1:]
        if direction not in ("n", "p"):
            raise ValueError
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        members, room_id = json.loads(raw.decode("utf-8"))
        if not isinstance(members, int) or isinstance(members, bool) or not isinstance(room_id, str):
            raise ValueError
        return direction, members, room_id
    except (ValueError, IndexError, TypeError, UnicodeDecodeError):
        raise invalid_param("Invalid pagination token")


def _default_instance(instance_id: str) -> tuple[str, str] | None:
    appservice_id, sep, network_id = instance_id.partition("|")
    return (appservice_id, network_id) if sep and appservice_id and network_id else None


class PublicRoomListService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(DirectoryStore)
        self.stats = hs.get(RoomStatsService)
        self.events = hs.get(RoomEventService)
        self.auth = hs.get(AuthService)
        self.aliases = hs.get(AliasService)
        self.remote_lister: RemoteLister | None = None
        self.instance_resolver: Callable[[str], tuple[str, str] | None] = _default_instance

    # --- visibility -----------------------------------------------------------------------------
    async def get_visibility(self, room_id: str) -> str:
        """``GET /directory/list/room/{roomId}``: "public" or "private"; 404 for unknown rooms."""
        public = await self.store.get_room_visibility(room_id)
        if public is None:
            raise not_found("Room not found")
        return "public" if public else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        """``PUT /directory/list/room/{roomId}``: publish or unpublish. Allowed for server admins and
        joined members who may send ``m.room.canonical_alias`` (as Synapse: room moderators);
        404 for unknown rooms, 403 otherwise."""
        if await self.store.get_room_visibility(room_id) is None:
            raise not_found("Room not found")
        if not (await self.auth.is_server_admin(requester.user_id)
                or await self.aliases.may_change_canonical_alias(room_id, requester.user_id)):
            raise forbidden("You don't have permission to change the room's directory visibility")
        await self.store.set_room_visibility(room_id, visibility == "public")
        if visibility == "public":
            await self.stats.get_stats(room_id)

    # --- listing --------------------------------------------------------------------------------
    async def list_rooms(self, *, limit: Any = None, since: Any = None, server: Any = None,
                         search_term: Any = None, room_types: Any = None,
                         include_all_networks: Any = False, third_party_instance_id: Any = None) -> dict:
        """``GET/POST /publicRooms``: a page of the local (or, through ``remote_lister``, a remote)
        directory as ``{chunk, next_batch?, prev_batch?, total_room_count_estimate}``."""
        limit = self._check_limit(limit)
        if since is not None and not isinstance(since, str):
            raise invalid_param("since must be a string")
        if search_term is not None and not isinstance(search_term, str):
            raise invalid_param("filter.generic_search_term must be a string")
        if room_types is not None and (not isinstance(room_types, list) or
                                       not all(t is None or isinstance(t, str) for t in room_types)):
            raise invalid_param("filter.room_types must be a list of strings and nulls")
        if not isinstance(include_all_networks, bool):
            raise invalid_param("include_all_networks must be a boolean")
        if third_party_instance_id is not None and not isinstance(third_party_instance_id, str):
            raise invalid_param("third_party_instance_id must be a string")
        if include_all_networks and third_party_instance_id is not None:
            raise invalid_param("third_party_instance_id can only be used if include_all_networks is false")
        if server is not None and server != self.hs.hostname:
            return await self._remote(server, limit, since, search_term, room_types, include_all_networks,
                                      third_party_instance_id)

        network = None
        if third_party_instance_id is not None:
            network = self.instance_resolver(third_party_instance_id)
            if network is None:
                return {"chunk": [], "total_room_count_estimate": 0}
        await self.stats.refresh_stale(only_public=True)
        after = before = None
        if since:
            direction, members, room_id = decode_token(since)
            if direction == "n":
                after = (members, room_id)
            else:
                before = (members, room_id)
        page = await self.store.list_public_rooms(
            limit=limit, after=after, before=before, search=search_term.strip() if search_term else None,
            room_types=room_types, network=network, include_all_networks=include_all_networks)
        result: dict = {"chunk": [summary_chunk(s) for s in page.rooms],
                        "total_room_count_estimate": page.total}
        if page.rooms:
            first, last = page.rooms[0], page.rooms[-1]
            more_after = page.has_more if before is None else True
            more_before = page.has_more if before is not None else after is not None
            if more_after:
                result["next_batch"] = encode_token("n", last.joined_members, last.room_id)
            if more_before:
                result["prev_batch"] = encode_token("p", first.joined_members, first.room_id)
        return result

    @staticmethod
    def _check_limit(limit: Any) -> int:
        if limit is None:
            return DEFAULT_LIMIT
        if isinstance(limit, str):
            try:
                limit = int(limit)
            except ValueError:
                raise invalid_param("limit must be an integer")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise invalid_param("limit must be a non-negative integer")
        return min(limit, MAX_LIMIT) if limit > 0 else DEFAULT_LIMIT

    async def _remote(self, server: Any, limit, since, search_term, room_types, include_all_networks,
                      third_party_instance_id) -> dict:
        if not isinstance(server, str) or not ids.is_valid_server_name(server):
            raise invalid_param("server is not a valid server name")
        if self.remote_lister is None:
            raise MatrixError(502, "M_UNKNOWN", f"Cannot fetch the room directory of {server}")
        return await self.remote_lister(server, limit=limit, since=since, search_term=search_term,
                                        room_types=room_types, include_all_networks=include_all_networks,
                                        third_party_instance_id=third_party_instance_id)
