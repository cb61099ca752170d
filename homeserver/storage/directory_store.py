"""SQL for room aliases, the published room directory (visibility, per-room stats rows, listing with
search and keyset pagination) and the user directory. No policy: the rules are in
homeserver/directory/.

Schema: storage/schema/0035_directory.sql. A room's directory visibility is the ``is_public``
column of the rooms table (written at room creation by the events store).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from .database import Txn
from .search_store import clean_text


@dataclass(frozen=True)
class AliasRecord:
    room_alias: str
    room_id: str
    creator: str
    created_ts: int


@dataclass(frozen=True)
class RoomStats:
    """The directory's view of a room (one room_stats row)."""

    room_id: str
    state_group: int | None
    room_version: str | None
    name: str | None = None
    topic: str | None = None
    canonical_alias: str | None = None
    avatar_url: str | None = None
    join_rule: str | None = None
    history_visibility: str | None = None
    guest_access: str | None = None
    room_type: str | None = None
    encryption: str | None = None
    allowed_room_ids: tuple[str, ...] = ()
    joined_members: int = 0

    @property
    def world_readable(self) -> bool:
        return self.history_visibility == "world_readable"

    @property
    def guest_can_join(self) -> bool:
        return self.guest_access == "can_join"

    @property
    def search_text(self) -> str:
        return "\n".join(x for x in (self.name, self.topic, self.canonical_alias) if x).lower()


@dataclass(frozen=True)
class PublicRoomsPage:
    rooms: list[RoomStats]
    has_more: bool  # more rooms beyond the page in the direction paginated
    total: int  # rooms matching the filter, all pages


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    display_name: str | None
    avatar_url: str | None


_STATS_COLUMNS = ("room_id, state_group, room_version, name, topic, canonical_alias, avatar_url, join_rule,"
                  " history_visibility, guest_access, room_type, encryption, allowed_room_ids, joined_members")
# The same columns qualified with the room_stats alias "s", for joins.
_S_COLUMNS = ", ".join("s." + c.strip() for c in _STATS_COLUMNS.split(","))


def _stats(row) -> RoomStats:
    allowed = ()
    if row[12]:
        try:
            loaded = json.loads(row[12])
            allowed = tuple(x for x in loaded if isinstance(x, str))
        except (ValueError, TypeError):
            allowed = ()
    return RoomStats(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
                     row[10], row[11], allowed, int(row[13] or 0))


def like_pattern(term: str) -> str:
    """A LIKE pattern (with ``ESCAPE '\\'``) matching ``term`` as a substring, lower-cased."""
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DirectoryStore:
    def __init__(self, hs):
        self.db = hs.db

    # --- aliases ------------------------------------------------------------------------------
    async def create_alias(self, room_alias: str, room_id: str, creator: str, now_ms: int) -> bool:
        """Add a mapping; False (nothing written) when the alias already exists."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (room_alias) DO NOTHING", (room_alias, room_id, creator, now_ms))
            return txn.rowcount == 1
        return await self.db.run("create_alias", txn_fn)

    async def get_alias(self, room_alias: str) -> AliasRecord | None:
        def txn_fn(txn: Txn):
            return txn.execute("SELECT room_alias, room_id, creator, created_ts FROM room_aliases"
                               " WHERE room_alias = ?", (room_alias,)).fetchone()
        row = await self.db.run("get_alias", txn_fn, readonly=True)
        return AliasRecord(*row) if row else None

    async def delete_alias(self, room_alias: str) -> str | None:
        """Remove a mapping; the room ID it pointed to, or None if there was none."""
        def txn_fn(txn: Txn):
            room_id = txn.scalar("SELECT room_id FROM room_aliases WHERE room_alias = ?", (room_alias,))
            if room_id is not None:
                txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (room_alias,))
            return room_id
        return await self.db.run("delete_alias", txn_fn)

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY created_ts, room_alias",
                        (room_id,))
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_aliases_for_room", txn_fn, readonly=True)

    # --- directory visibility -----------------------------------------------------------------
    async def get_room_visibility(self, room_id: str) -> bool | None:
        """Whether the room is published (rooms.is_public); None when the room is unknown."""
        def txn_fn(txn: Txn):
            return txn.execute("SELECT is_public FROM rooms WHERE room_id = ?", (room_id,)).fetchone()
        row = await self.db.run("get_room_visibility", txn_fn, readonly=True)
        return bool(row[0]) if row else None

    async def set_room_visibility(self, room_id: str, public: bool) -> bool:
        """Publish or unpublish a room; False when the room is unknown."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE rooms SET is_public = ? WHERE room_id = ?", (bool(public), room_id))
            return txn.rowcount == 1
        return await self.db.run("set_room_visibility", txn_fn)

    async def set_appservice_room_visibility(self, appservice_id: str, network_id: str, room_id: str,
                                             public: bool) -> None:
        def txn_fn(txn: Txn) -> None:
            if public:
                txn.execute("INSERT INTO appservice_room_list (appservice_id, network_id, room_id)"
                            " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (appservice_id, network_id, room_id))
            else:
                txn.execute("DELETE FROM appservice_room_list WHERE appservice_id = ? AND network_id = ?"
                            " AND room_id = ?", (appservice_id, network_id, room_id))
        await self.db.run("set_appservice_room_visibility", txn_fn)

    # --- room stats -----------------------------------------------------------------------------
    async def get_room_stats(self, room_ids: Iterable[str]) -> dict[str, RoomStats]:
        room_ids = list(dict.fromkeys(room_ids))

        def txn_fn(txn: Txn):
            out = {}
            for start in range(0, len(room_ids), 500):
                chunk = room_ids[start:start + 500]
                txn.execute(f"SELECT {_STATS_COLUMNS} FROM room_stats WHERE room_id IN"
                            f" ({','.join('?' * len(chunk))})", chunk)
                for row in txn.fetchall():
                    out[row[0]] = _stats(row)
            return out
        if not room_ids:
            return {}
        return await self.db.run("get_room_stats", txn_fn, readonly=True)

    async def get_stale_stats_rooms(self, *, only_public: bool = False) -> list[str]:
        """Rooms whose stats row is missing or older than the room's current state group."""
        def txn_fn(txn: Txn):
            sql = ("SELECT r.room_id FROM rooms r LEFT JOIN room_stats s ON s.room_id = r.room_id"
                   " WHERE r.current_state_group IS NOT NULL"
                   " AND (s.room_id IS NULL OR s.state_group IS NULL OR s.state_group <> r.current_state_group)")
            args: list = []
            if only_public:  # published: in the server's list or in an appservice network's
                sql += " AND (r.is_public = ? OR r.room_id IN (SELECT room_id FROM appservice_room_list))"
                args.append(True)
            txn.execute(sql + " ORDER BY r.room_id", args)
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_stale_stats_rooms", txn_fn, readonly=True)

    async def upsert_room_stats(self, stats: RoomStats,
                                profiles: Sequence[DirectoryUser] = ()) -> RoomStats:
        """Write a room's stats row (joined_members counted here from room_memberships, in the same
        transaction) and the user directory entries seen in its state; returns the row written."""
        def txn_fn(txn: Txn) -> RoomStats:
            joined = txn.scalar("SELECT COUNT(*) FROM room_memberships WHERE room_id = ? AND membership = ?",
                                (stats.room_id, "join")) or 0
            row = (stats.room_id, stats.state_group, stats.room_version, stats.name, stats.topic,
                   stats.canonical_alias, stats.avatar_url, stats.join_rule, stats.history_visibility,
                   stats.guest_access, stats.room_type, stats.encryption,
                   json.dumps(list(stats.allowed_room_ids)) if stats.allowed_room_ids else None,
                   int(joined), stats.search_text)
            row = _storable(row)
            cols = _STATS_COLUMNS + ", search_text"
            updates = ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in cols.split(",")[1:])
            txn.execute(f"INSERT INTO room_stats ({cols}) VALUES ({','.join('?' * len(row))})"
                        f" ON CONFLICT (room_id) DO UPDATE SET {updates}", row)
            self._upsert_users_txn(txn, profiles)
            return _stats(row[:13] + (int(joined),))
        return await self.db.run("upsert_room_stats", txn_fn)

    async def delete_room_stats(self, room_id: str) -> None:
        await self.db.run("delete_room_stats",
                          lambda txn: txn.execute("DELETE FROM room_stats WHERE room_id = ?", (room_id,)))

    async def list_public_rooms(self, *, limit: int | None, after: tuple[int, str] | None = None,
                                before: tuple[int, str] | None = None, search: str | None = None,
                                room_types: Sequence[str | None] | None = None,
                                network: tuple[str, str] | None = None,
                                include_all_networks: bool = False,
                                joinable_only: bool = True) -> PublicRoomsPage:
        """Published rooms, largest first (joined_members DESC, room_id ASC).

        ``after``/``before`` are (joined_members, room_id) keys of the last/first room of a previous
        page (keyset pagination); ``search`` a substring of name, topic or canonical alias;
        ``room_types`` the room types to keep (None in the list keeps rooms without a type);
        ``network`` an (appservice_id, network_id) whose published rooms are listed instead of the
        server's own; ``include_all_networks`` adds every appservice-published room to the
        server's own; ``joinable_only`` keeps rooms with a public or knock join rule, or
        world-readable history (client-server-api "Published room directory": servers MAY filter)."""
        where: list[str] = []
        args: list = []
        if network is None:
            source = "rooms r JOIN room_stats s ON s.room_id = r.room_id"
            if include_all_networks:
                where.append("(r.is_public = ? OR r.room_id IN (SELECT room_id FROM appservice_room_list))")
            else:
                where.append("r.is_public = ?")
            args.append(True)
        else:
            source = "appservice_room_list a JOIN room_stats s ON s.room_id = a.room_id"
            where.append("a.appservice_id = ? AND a.network_id = ?")
            args.extend(network)
        if joinable_only:
            where.append("(s.join_rule IN ('public', 'knock', 'knock_restricted')"
                         " OR s.history_visibility = 'world_readable')")
        if search:
            where.append("s.search_text LIKE ? ESCAPE '\\'")
            args.append(like_pattern(search))
        if room_types is not None:
            named = [t for t in room_types if t is not None]
            parts = []
            if named:
                parts.append(f"s.room_type IN ({','.join('?' * len(named))})")
                args.extend(named)
            if any(t is None for t in room_types):
                parts.append("s.room_type IS NULL")
            where.append("(" + " OR ".join(parts) + ")" if parts else "1 = 0")
        base_where = " AND ".join(where)
        base_args = list(args)
        order = "s.joined_members DESC, s.room_id ASC"
        if after is not None:
            where.append("(s.joined_members < ? OR (s.joined_members = ? AND s.room_id > ?))")
            args.extend([after[0], after[0], after[1]])
        elif before is not None:
            where.append("(s.joined_members > ? OR (s.joined_members = ? AND s.room_id < ?))")
            args.extend([before[0], before[0], before[1]])
            order = "s.joined_members ASC, s.room_id DESC"
        sql = f"SELECT {_S_COLUMNS} FROM {source} WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit + 1)

        def txn_fn(txn: Txn) -> PublicRoomsPage:
            txn.execute(sql, args)
            rows = [_stats(r) for r in txn.fetchall()]
            has_more = limit is not None and len(rows) > limit
            rows = rows[:limit] if limit is not None else rows
            if before is not None:
                rows.reverse()
            total = txn.scalar(f"SELECT COUNT(*) FROM {source} WHERE {base_where}", base_args) or 0
            return PublicRoomsPage(rows, has_more, int(total))
        return await self.db.run("list_public_rooms", txn_fn, readonly=True)

    # --- user directory -------------------------------------------------------------------------
    @staticmethod
    def _upsert_users_txn(txn: Txn, users: Sequence[DirectoryUser]) -> None:
        txn.executemany(
            "INSERT INTO user_directory (user_id, display_name, avatar_url, search_text) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,"
            " avatar_url = excluded.avatar_url, search_text = excluded.search_text",
            [_storable((u.user_id, u.display_name, u.avatar_url, _user_search_text(u))) for u in users])

    async def upsert_directory_users(self, users: Sequence[DirectoryUser]) -> None:
        if users:
            await self.db.run("upsert_directory_users", self._upsert_users_txn, list(users))

    async def delete_directory_user(self, user_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM user_directory WHERE user_id = ?", (user_id,))
        await self.db.run("delete_directory_user", txn_fn)

    async def search_users(self, searcher: str, term: str, limit: int) -> tuple[list[DirectoryUser], bool]:
        """Users whose ID or display name contains ``term`` (case-insensitively) and who are joined
        to a room the searcher is joined to, or to a room with a public join rule or world-readable
        history (users.yaml). Prefix matches first, then users with a display name, then by ID;
        returns (at most ``limit`` users, whether more matched)."""
        lowered = term.lower()
        prefix = lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql = (
            "SELECT u.user_id, u.display_name, u.avatar_url FROM user_directory u"
            " WHERE u.search_text LIKE ? ESCAPE '\\'"
            " AND EXISTS (SELECT 1 FROM room_memberships m WHERE m.user_id = u.user_id AND m.membership = 'join'"
            "  AND (m.room_id IN (SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join')"
            "   OR m.room_id IN (SELECT room_id FROM room_stats WHERE join_rule = 'public'"
            "    OR history_visibility = 'world_readable')))"
            " ORDER BY CASE WHEN LOWER(u.display_name) LIKE ? ESCAPE '\\' OR u.user_id LIKE ? ESCAPE '\\'"
            "  THEN 0 ELSE 1 END, CASE WHEN u.display_name IS NULL THEN 1 ELSE 0 END, u.user_id"
            " LIMIT ?")
        args = (like_pattern(term), searcher, prefix, "@" + prefix, limit + 1)

        def txn_fn(txn: Txn):
            txn.execute(sql, args)
            return txn.fetchall()
        rows = await self.db.run("search_users", txn_fn, readonly=True)
        users = [DirectoryUser(*r) for r in rows[:limit]]
        return users, len(rows) > limit

    async def get_mutual_rooms(self, user_a: str, user_b: str) -> list[str]:
        """Rooms both users are joined to, by room ID."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT a.room_id FROM room_memberships a JOIN room_memberships b ON b.room_id = a.room_id"
                        " WHERE a.user_id = ? AND a.membership = 'join' AND b.user_id = ? AND b.membership = 'join'"
                        " ORDER BY a.room_id", (user_a, user_b))
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_mutual_rooms", txn_fn, readonly=True)


def _storable(row: tuple) -> tuple:
    """Derived text (names, topics, display names from state events, which may hold U+0000 or
    lone surrogates) made storable on both engines; IDs are valid and pass unchanged."""
    return tuple(clean_text(v) if isinstance(v, str) else v for v in row)


def _user_search_text(user: DirectoryUser) -> str:
    return "\n".join(x for x in (user.user_id, user.display_name) if x).lower()
