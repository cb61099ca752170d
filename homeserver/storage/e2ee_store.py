"""SQL for end-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and
signatures, the device-list stream, the to-device inbox/outbox and server-side key backups.

Schema: storage/schema/0060_e2ee.sql. Policy (validation, signature checks, who sees which
signature, best-key rules) lives in homeserver/e2ee/; this module reads and writes rows. Two
stream ID generators live here because one process writes: ``device_list_ids`` (the device-list
stream) and ``to_device_ids`` (to-device inbox and outbox). The to-device high-water mark is kept
in ``e2e_stream_positions`` because delivered messages are deleted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .database import Txn
from .id_generator import StreamIdGenerator


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict
    etag: int
    count: int


@dataclass(frozen=True)
class RoomKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict

    def to_json(self) -> dict:
        return {"first_message_index": self.first_message_index, "forwarded_count": self.forwarded_count,
                "is_verified": self.is_verified, "session_data": self.session_data}


@dataclass(frozen=True)
class RoomKeysWrite:
    """Outcome of a key-backup write: ``status`` is "ok" (etag, count set), "not_found" (no such
    version) or "wrong_version" (current_version set, or None when the user has no backup)."""

    status: str
    etag: int = 0
    count: int = 0
    current_version: int | None = None


@dataclass(frozen=True)
class SignatureRow:
    signer_user_id: str
    signer_key_id: str
    target_user_id: str
    target_key_id: str
    signature: str


def _in(n: int) -> str:
    return ",".join("?" * n)


class E2eeStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        dl, td = self.db.run_sync("e2ee_store_init", self._init_txn)
        self.device_list_ids = StreamIdGenerator(dl)
        self.to_device_ids = StreamIdGenerator(td)

    @staticmethod
    def _init_txn(txn: Txn) -> tuple[int, int]:
        dl = txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_list_stream") or 0
        td = max(txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_inbox") or 0,
                 txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_outbox") or 0,
                 txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM e2e_to_device_high_water") or 0)
        return dl, td

    # --- device identity keys ---------------------------------------------------------------
    async def get_device_keys(self, user_id: str, device_id: str) -> dict | None:
        def txn_fn(txn: Txn):
            return txn.scalar("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                              (user_id, device_id))
        raw = await self.db.run("get_device_keys", txn_fn, readonly=True)
        return json.loads(raw) if raw is not None else None

    async def set_device_keys(self, user_id: str, device_id: str, keys: dict, now_ms: int, stream_id: int) -> bool:
        """Store a device's identity keys; True (and a device-list row at stream_id) if they changed."""
        new = _dumps(keys)

        def txn_fn(txn: Txn) -> bool:
            old = txn.scalar("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                             (user_id, device_id))
            if old == new:
                return False
            txn.execute("INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts_added) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json,"
                        " ts_added = excluded.ts_added", (user_id, device_id, new, now_ms))
            _add_device_list_rows_txn(txn, stream_id, [(user_id, device_id, None)])
            return True
        return await self.db.run("set_device_keys", txn_fn)

    async def query_device_keys(self, query: dict[str, Sequence[str]]) -> dict[str, dict[str, tuple[dict, str | None]]]:
        """{user: {device: (keys, display_name)}} for the devices asked (an empty list: all of the
        user's devices with keys). Users without keys map to {}."""
        def txn_fn(txn: Txn):
            out: dict[str, dict[str, tuple[dict, str | None]]] = {}
            for user_id, device_ids in query.items():
                sql = ("SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
                       " LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
                       " WHERE k.user_id = ?")
                args: list = [user_id]
                if device_ids:
                    sql += f" AND k.device_id IN ({_in(len(device_ids))})"
                    args.extend(device_ids)
                txn.execute(sql, args)
                out[user_id] = {r[0]: (json.loads(r[1]), r[2]) for r in txn.fetchall()}
            return out
        return await self.db.run("query_device_keys", txn_fn, readonly=True)

    # --- one-time and fallback keys -----------------------------------------------------------
    async def add_one_time_keys(self, user_id: str, device_id: str, keys: Sequence[tuple[str, str, object]],
                                upload_id: int) -> list[str]:
        """Add (algorithm, key_id, key) one-time keys. A key ID already held with the same key is
        skipped; with a different key nothing is stored and the conflicting "alg:key_id"s are
        returned."""
        def txn_fn(txn: Txn) -> list[str]:
            conflicts, rows = [], []
            for alg, key_id, key in keys:
                new = _dumps(key)
                old = txn.scalar("SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                                 " AND algorithm = ? AND key_id = ?", (user_id, device_id, alg, key_id))
                if old is None:
                    rows.append((user_id, device_id, alg, key_id, new, upload_id))
                elif old != new:
                    conflicts.append(f"{alg}:{key_id}")
            if not conflicts:
                txn.executemany("INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json,"
                                " upload_id) VALUES (?, ?, ?, ?, ?, ?)", rows)
            return conflicts
        return await self.db.run("add_one_time_keys", txn_fn)

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                        " GROUP BY algorithm", (user_id, device_id))
            return {r[0]: int(r[1]) for r in txn.fetchall()}
        return await self.db.run("count_one_time_keys", txn_fn, readonly=True)

    async def set_fallback_keys(self, user_id: str, device_id: str, keys: Sequence[tuple[str, str, object]]) -> None:
        """Replace the fallback key of each algorithm; re-uploading the same key keeps its used flag."""
        def txn_fn(txn: Txn):
            for alg, key_id, key in keys:
                new = _dumps(key)
                row = txn.execute("SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ?"
                                  " AND device_id = ? AND algorithm = ?", (user_id, device_id, alg)).fetchone()
                if row is not None and (row[0], row[1]) == (key_id, new):
                    continue
                txn.execute("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
                            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
                            " key_id = excluded.key_id, key_json = excluded.key_json, used = excluded.used",
                            (user_id, device_id, alg, key_id, new, False))
        await self.db.run("set_fallback_keys", txn_fn)

    async def get_unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = ?"
                        " ORDER BY algorithm", (user_id, device_id, False))
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_unused_fallback_key_types", txn_fn, readonly=True)

    async def claim_keys(self, wanted: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str, dict]]:
        """Claim one key per (user, device, algorithm): the oldest one-time key, removed, or else the
        fallback key, marked used. Returns (user, device, "alg:key_id", key) for each key found."""
        def txn_fn(txn: Txn):
            out = []
            for user_id, device_id, alg in wanted:
                while True:
                    row = txn.execute("SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND"
                                      " device_id = ? AND algorithm = ? ORDER BY upload_id, key_id LIMIT 1",
                                      (user_id, device_id, alg)).fetchone()
                    if row is None:
                        break
                    txn.execute("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND"
                                " algorithm = ? AND key_id = ?", (user_id, device_id, alg, row[0]))
                    if txn.rowcount == 1:  # else a concurrent claim took it (PostgreSQL): try the next
                        out.append((user_id, device_id, f"{alg}:{row[0]}", json.loads(row[1])))
                        break
                if row is not None:
                    continue
                row = txn.execute("SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND"
                                  " device_id = ? AND algorithm = ?", (user_id, device_id, alg)).fetchone()
                if row is not None:
                    txn.execute("UPDATE e2e_fallback_keys SET used = ? WHERE user_id = ? AND device_id = ? AND"
                                " algorithm = ?", (True, user_id, device_id, alg))
                    out.append((user_id, device_id, f"{alg}:{row[0]}", json.loads(row[1])))
            return out
        return await self.db.run("claim_keys", txn_fn)

    async def delete_devices_e2e(self, user_id: str, device_ids: Sequence[str], stream_id: int) -> None:
        """A device was deleted: drop its keys and inbox; a device-list row at stream_id."""
        def txn_fn(txn: Txn):
            for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "e2e_device_inbox"):
                txn.executemany(f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?",
                                [(user_id, d) for d in device_ids])
            txn.executemany("DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?",
                            [(user_id, d) for d in device_ids])
            _add_device_list_rows_txn(txn, stream_id, [(user_id, d, None) for d in device_ids])
        await self.db.run("delete_devices_e2e", txn_fn)

    # --- cross-signing ------------------------------------------------------------------------
    async def get_cross_signing_keys(self, user_ids: Iterable[str]) -> dict[str, dict[str, dict]]:
        """{user: {key_type: key}} for the users that have any."""
        user_ids = list(user_ids)

        def txn_fn(txn: Txn):
            out: dict[str, dict[str, dict]] = {}
            for i in range(0, len(user_ids), 200):
                chunk = user_ids[i:i + 200]
                txn.execute("SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys"
                            f" WHERE user_id IN ({_in(len(chunk))})", chunk)
                for user_id, key_type, raw in txn.fetchall():
                    out.setdefault(user_id, {})[key_type] = json.loads(raw)
            return out
        if not user_ids:
            return {}
        return await self.db.run("get_cross_signing_keys", txn_fn, readonly=True)

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, tuple[str, dict]], now_ms: int,
                                     stream_id: int) -> None:
        """Store {key_type: (public_key, key)} and a cross-signing row in the device-list stream."""
        def txn_fn(txn: Txn):
            for key_type, (public_key, key) in keys.items():
                txn.execute("INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json, ts_added)"
                            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, key_type) DO UPDATE SET"
                            " public_key = excluded.public_key, key_json = excluded.key_json,"
                            " ts_added = excluded.ts_added", (user_id, key_type, public_key, _dumps(key), now_ms))
            _add_device_list_rows_txn(txn, stream_id, [(user_id, None, None)])
        await self.db.run("set_cross_signing_keys", txn_fn)

    async def add_signatures(self, rows: Sequence[SignatureRow], changes: Sequence[tuple[str, str | None, str | None]],
                             stream_id: int) -> None:
        """Store signatures and the device-list rows (user, device or None, only_for) they cause."""
        def txn_fn(txn: Txn):
            for r in rows:
                txn.execute("INSERT INTO e2e_signatures (signer_user_id, signer_key_id, target_user_id,"
                            " target_key_id, signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT (target_user_id,"
                            " target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature ="
                            " excluded.signature", (r.signer_user_id, r.signer_key_id, r.target_user_id,
                                                    r.target_key_id, r.signature))
            _add_device_list_rows_txn(txn, stream_id, changes)
        await self.db.run("add_signatures", txn_fn)

    async def get_signatures(self, target_user_ids: Iterable[str]) -> list[SignatureRow]:
        """Every uploaded signature on keys of these users."""
        user_ids = list(target_user_ids)

        def txn_fn(txn: Txn):
            out = []
            for i in range(0, len(user_ids), 200):
                chunk = user_ids[i:i + 200]
                txn.execute("SELECT signer_user_id, signer_key_id, target_user_id, target_key_id, signature FROM"
                            f" e2e_signatures WHERE target_user_id IN ({_in(len(chunk))})", chunk)
                out += [SignatureRow(*r) for r in txn.fetchall()]
            return out
        if not user_ids:
            return []
        return await self.db.run("get_signatures", txn_fn, readonly=True)

    # --- device-list stream -------------------------------------------------------------------
    async def add_device_list_changes(self, changes: Sequence[tuple[str, str | None, str | None]],
                                      stream_id: int) -> None:
        """Record (user_id, device_id or None, only_for or None) changes at stream_id."""
        await self.db.run("add_device_list_changes", _add_device_list_rows_txn, stream_id, changes)

    async def get_device_list_changes(self, from_id: int, to_id: int, viewer: str) -> tuple[set[str], set[str]]:
        """Users with device-list rows in (from_id, to_id]: (changes everyone may see, changes only
        ``viewer`` may see)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT DISTINCT user_id, only_for FROM e2e_device_list_stream WHERE stream_id > ?"
                        " AND stream_id <= ? AND (only_for IS NULL OR only_for = ?)", (from_id, to_id, viewer))
            public, private = set(), set()
            for user_id, only_for in txn.fetchall():
                (private if only_for is not None else public).add(user_id)
            return public, private
        if from_id >= to_id:
            return set(), set()
        return await self.db.run("get_device_list_changes", txn_fn, readonly=True)

    async def get_device_list_stream(self, from_id: int, to_id: int) -> list[tuple[int, str, str | None]]:
        """(stream_id, user_id, device_id) rows in (from_id, to_id] that everyone may see, in order
        (for the federation sender's m.device_list_update)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT stream_id, user_id, device_id FROM e2e_device_list_stream WHERE stream_id > ? AND"
                        " stream_id <= ? AND only_for IS NULL ORDER BY stream_id", (from_id, to_id))
            return [(int(r[0]), r[1], r[2]) for r in txn.fetchall()]
        return await self.db.run("get_device_list_stream", txn_fn, readonly=True)

    async def get_user_device_list_position(self, user_id: str) -> int:
        """The latest public device-list stream ID of a user (0 if none)."""
        def txn_fn(txn: Txn):
            return int(txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_list_stream WHERE user_id = ?"
                                  " AND only_for IS NULL", (user_id,)) or 0)
        return await self.db.run("get_user_device_list_position", txn_fn, readonly=True)

    async def get_device_update_sequence(self, user_id: str, stream_id: int) -> tuple[int, list[str]]:
        """The user's device updates as numbered for other servers (m.device_list_update
        ``stream_id``: 1, 2, ... per user, over the public rows naming a device, in stream order
        then device order): (how many come before stream_id, the device IDs of the rows at
        stream_id in order). Stable once every row up to stream_id is committed."""
        def txn_fn(txn: Txn):
            before = int(txn.scalar("SELECT COUNT(*) FROM e2e_device_list_stream WHERE user_id = ? AND"
                                    " device_id IS NOT NULL AND only_for IS NULL AND stream_id < ?",
                                    (user_id, stream_id)) or 0)
            txn.execute("SELECT device_id FROM e2e_device_list_stream WHERE user_id = ? AND device_id IS NOT NULL"
                        " AND only_for IS NULL AND stream_id = ? ORDER BY device_id", (user_id, stream_id))
            return before, [r[0] for r in txn.fetchall()]
        return await self.db.run("get_device_update_sequence", txn_fn, readonly=True)

    async def count_device_updates(self, user_id: str, up_to: int) -> int:
        """How many of the user's numbered device updates (see get_device_update_sequence) are at or
        below stream position up_to: the number of the last one."""
        def txn_fn(txn: Txn):
            return int(txn.scalar("SELECT COUNT(*) FROM e2e_device_list_stream WHERE user_id = ? AND"
                                  " device_id IS NOT NULL AND only_for IS NULL AND stream_id <= ?",
                                  (user_id, up_to)) or 0)
        return await self.db.run("count_device_updates", txn_fn, readonly=True)

    async def get_existing_devices(self, user_id: str, device_ids: Sequence[str]) -> dict[str, str | None]:
        """{device_id: display_name} of those devices that exist (devices table, 0020_accounts.sql)."""
        def txn_fn(txn: Txn):
            txn.execute(f"SELECT device_id, display_name FROM devices WHERE user_id = ? AND device_id IN"
                        f" ({_in(len(device_ids))})", [user_id, *device_ids])
            return {r[0]: r[1] for r in txn.fetchall()}
        if not device_ids:
            return {}
        return await self.db.run("get_existing_devices", txn_fn, readonly=True)

    # --- room membership reads (tables of storage/schema/0010_rooms.sql) ---------------------
    async def get_users_sharing_room(self, user_id: str) -> set[str]:
        """Users joined to a room the user is joined to (the user included if joined anywhere)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT DISTINCT other.user_id FROM room_memberships mine JOIN room_memberships other"
                        " ON other.room_id = mine.room_id AND other.membership = 'join'"
                        " WHERE mine.user_id = ? AND mine.membership = 'join'", (user_id,))
            return {r[0] for r in txn.fetchall()}
        return await self.db.run("get_users_sharing_room", txn_fn, readonly=True)

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'", (user_id,))
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_joined_rooms", txn_fn, readonly=True)

    async def get_membership_changes(self, user_id: str, from_pos: int, to_pos: int) -> tuple[set[str], set[str]]:
        """Membership changes in the events stream (from_pos, to_pos] around the user:
        (users now sharing a room with them through a join in that range — theirs or the other's,
        users whose membership or the user's own left a shared room in that range)."""
        def txn_fn(txn: Txn):
            joined, departed = set(), set()
            # Rooms the user joined in range: every member is newly shared.
            txn.execute("SELECT DISTINCT other.user_id FROM room_memberships mine JOIN room_memberships other"
                        " ON other.room_id = mine.room_id AND other.membership = 'join' WHERE mine.user_id = ?"
                        " AND mine.membership = 'join' AND mine.stream_ordering > ? AND mine.stream_ordering <= ?",
                        (user_id, from_pos, to_pos))
            joined |= {r[0] for r in txn.fetchall()}
            # Others who joined one of the user's rooms in range.
            txn.execute("SELECT DISTINCT other.user_id FROM room_memberships mine JOIN room_memberships other"
                        " ON other.room_id = mine.room_id WHERE mine.user_id = ? AND mine.membership = 'join'"
                        " AND other.membership = 'join' AND other.stream_ordering > ? AND other.stream_ordering <= ?",
                        (user_id, from_pos, to_pos))
            joined |= {r[0] for r in txn.fetchall()}
            # Others who left one of the user's rooms in range.
            txn.execute("SELECT DISTINCT other.user_id FROM room_memberships mine JOIN room_memberships other"
                        " ON other.room_id = mine.room_id WHERE mine.user_id = ? AND mine.membership = 'join'"
                        " AND other.membership <> 'join' AND other.stream_ordering > ? AND other.stream_ordering <= ?",
                        (user_id, from_pos, to_pos))
            departed |= {r[0] for r in txn.fetchall()}
            # Rooms the user left in range: their members may no longer be shared.
            txn.execute("SELECT DISTINCT other.user_id FROM room_memberships mine JOIN room_memberships other"
                        " ON other.room_id = mine.room_id AND other.membership = 'join' WHERE mine.user_id = ?"
                        " AND mine.membership <> 'join' AND mine.stream_ordering > ? AND mine.stream_ordering <= ?",
                        (user_id, from_pos, to_pos))
            departed |= {r[0] for r in txn.fetchall()}
            return joined, departed
        if from_pos >= to_pos:
            return set(), set()
        return await self.db.run("get_membership_changes", txn_fn, readonly=True)

    # --- to-device ----------------------------------------------------------------------------
    async def add_to_device_messages(self, sender: str, sender_device: str, txn_id: str,
                                     local: Sequence[tuple[str, str, int, dict]],
                                     remote: Sequence[tuple[int, str, str, str, dict]], now_ms: int) -> bool:
        """Queue a /sendToDevice request's messages: local (user, device, stream_id, message) into the
        inbox and remote (stream_id, destination, type, message_id, messages) into the outbox.
        False (and nothing stored) if (sender, sender_device, txn_id) was already processed."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("INSERT INTO e2e_to_device_txns (user_id, device_id, txn_id, ts) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT DO NOTHING", (sender, sender_device, txn_id, now_ms))
            if txn.rowcount != 1:
                return False
            txn.executemany("INSERT INTO e2e_device_inbox (user_id, device_id, stream_id, message_json)"
                            " VALUES (?, ?, ?, ?)", [(u, d, s, _dumps(m)) for u, d, s, m in local])
            txn.executemany("INSERT INTO e2e_device_outbox (stream_id, destination, sender, message_type,"
                            " message_id, messages_json, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(s, dest, sender, t, mid, _dumps(msgs), now_ms) for s, dest, t, mid, msgs in remote])
            ids = [r[2] for r in local] + [r[0] for r in remote]
            if ids:
                _raise_high_water_txn(txn, max(ids))
            return True
        return await self.db.run("add_to_device_messages", txn_fn)

    async def get_to_device(self, user_id: str, device_id: str, from_id: int, to_id: int,
                            limit: int) -> list[tuple[int, dict]]:
        """(stream_id, message) for the device in (from_id, to_id], oldest first, at most limit."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT stream_id, message_json FROM e2e_device_inbox WHERE user_id = ? AND device_id = ?"
                        " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
                        (user_id, device_id, from_id, to_id, limit))
            return [(int(r[0]), json.loads(r[1])) for r in txn.fetchall()]
        return await self.db.run("get_to_device", txn_fn, readonly=True)

    async def delete_to_device(self, user_id: str, device_id: str, up_to: int) -> int:
        """Delete the device's messages with stream_id <= up_to; returns how many."""
        def txn_fn(txn: Txn):
            txn.execute("DELETE FROM e2e_device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                        (user_id, device_id, up_to))
            return txn.rowcount
        return await self.db.run("delete_to_device", txn_fn)

    async def get_outbox(self, destination: str, from_id: int, limit: int) -> list[tuple[int, str, str, str, dict]]:
        """(stream_id, sender, type, message_id, messages) queued for a destination after from_id."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT stream_id, sender, message_type, message_id, messages_json FROM e2e_device_outbox"
                        " WHERE destination = ? AND stream_id > ? ORDER BY stream_id LIMIT ?",
                        (destination, from_id, limit))
            return [(int(r[0]), r[1], r[2], r[3], json.loads(r[4])) for r in txn.fetchall()]
        return await self.db.run("get_outbox", txn_fn, readonly=True)

    async def delete_outbox(self, destination: str, up_to: int) -> None:
        def txn_fn(txn: Txn):
            txn.execute("DELETE FROM e2e_device_outbox WHERE destination = ? AND stream_id <= ?", (destination, up_to))
        await self.db.run("delete_outbox", txn_fn)

    # --- key backup ---------------------------------------------------------------------------
    async def create_backup_version(self, user_id: str, algorithm: str, auth_data: dict) -> int:
        def txn_fn(txn: Txn) -> int:
            version = int(txn.scalar("SELECT COALESCE(MAX(version), 0) FROM e2e_room_keys_versions WHERE user_id = ?",
                                     (user_id,)) or 0) + 1
            txn.execute("INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data, etag, deleted)"
                        " VALUES (?, ?, ?, ?, ?, ?)", (user_id, version, algorithm, _dumps(auth_data), 0, False))
            return version
        return await self.db.run("create_backup_version", txn_fn)

    async def get_backup_version(self, user_id: str, version: int | None = None) -> BackupVersion | None:
        """A live (not deleted) backup version, or the newest one when version is None."""
        def txn_fn(txn: Txn):
            row = _backup_row_txn(txn, user_id, version)
            if row is None:
                return None
            count = txn.scalar("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?",
                               (user_id, row[0]))
            return BackupVersion(int(row[0]), row[1], json.loads(row[2]), int(row[3]), int(count or 0))
        return await self.db.run("get_backup_version", txn_fn, readonly=True)

    async def update_backup_auth_data(self, user_id: str, version: int, auth_data: dict) -> bool:
        def txn_fn(txn: Txn):
            txn.execute("UPDATE e2e_room_keys_versions SET auth_data = ? WHERE user_id = ? AND version = ?"
                        " AND deleted = ?", (_dumps(auth_data), user_id, version, False))
            return txn.rowcount == 1
        return await self.db.run("update_backup_auth_data", txn_fn)

    async def delete_backup_version(self, user_id: str, version: int) -> str:
        """"deleted", "already_deleted" or "not_found"; the version's keys go with it."""
        def txn_fn(txn: Txn):
            deleted = txn.scalar("SELECT deleted FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
                                 (user_id, version))
            if deleted is None:
                return "not_found"
            if deleted:
                return "already_deleted"
            txn.execute("UPDATE e2e_room_keys_versions SET deleted = ? WHERE user_id = ? AND version = ?",
                        (True, user_id, version))
            txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
            return "deleted"
        return await self.db.run("delete_backup_version", txn_fn)

    async def put_room_keys(self, user_id: str, version: int, keys: Sequence[tuple[str, str, RoomKey]],
                            should_replace: Callable[[RoomKey, RoomKey], bool]) -> RoomKeysWrite:
        """Write (room_id, session_id, key) into the user's current backup if ``version`` is it;
        an existing key is replaced only when should_replace(existing, new). The etag moves when
        anything changed."""
        def txn_fn(txn: Txn) -> RoomKeysWrite:
            current = _backup_row_txn(txn, user_id, None)
            if current is None or int(current[0]) != version:
                if current is None and _backup_row_txn(txn, user_id, version) is None:
                    return RoomKeysWrite("not_found")
                return RoomKeysWrite("wrong_version", current_version=int(current[0]) if current else None)
            changed = False
            for room_id, session_id, key in keys:
                row = txn.execute("SELECT first_message_index, forwarded_count, is_verified, session_data FROM"
                                  " e2e_room_keys WHERE user_id = ? AND version = ? AND room_id = ? AND"
                                  " session_id = ?", (user_id, version, room_id, session_id)).fetchone()
                if row is not None:
                    old = RoomKey(int(row[0]), int(row[1]), bool(row[2]), json.loads(row[3]))
                    if not should_replace(old, key):
                        continue
                txn.execute("INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,"
                            " forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                            " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                            " first_message_index = excluded.first_message_index, forwarded_count ="
                            " excluded.forwarded_count, is_verified = excluded.is_verified, session_data ="
                            " excluded.session_data", (user_id, version, room_id, session_id,
                                                       key.first_message_index, key.forwarded_count,
                                                       key.is_verified, _dumps(key.session_data)))
                changed = True
            return _finish_room_keys_write_txn(txn, user_id, version, int(current[3]), changed)
        return await self.db.run("put_room_keys", txn_fn)

    async def get_room_keys(self, user_id: str, version: int, room_id: str | None = None,
                            session_id: str | None = None) -> dict[str, dict[str, RoomKey]] | None:
        """{room: {session: key}} of a live version (narrowed to a room or session), None if the
        version does not exist."""
        def txn_fn(txn: Txn):
            if _backup_row_txn(txn, user_id, version) is None:
                return None
            sql = ("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
                   " FROM e2e_room_keys WHERE user_id = ? AND version = ?")
            args: list = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                args.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    args.append(session_id)
            out: dict[str, dict[str, RoomKey]] = {}
            for r in txn.execute(sql, args).fetchall():
                out.setdefault(r[0], {})[r[1]] = RoomKey(int(r[2]), int(r[3]), bool(r[4]), json.loads(r[5]))
            return out
        return await self.db.run("get_room_keys", txn_fn, readonly=True)

    async def delete_room_keys(self, user_id: str, version: int, room_id: str | None = None,
                               session_id: str | None = None) -> RoomKeysWrite:
        def txn_fn(txn: Txn) -> RoomKeysWrite:
            row = _backup_row_txn(txn, user_id, version)
            if row is None:
                return RoomKeysWrite("not_found")
            sql = "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            args: list = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                args.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    args.append(session_id)
            txn.execute(sql, args)
            return _finish_room_keys_write_txn(txn, user_id, version, int(row[3]), txn.rowcount > 0)
        return await self.db.run("delete_room_keys", txn_fn)


def _add_device_list_rows_txn(txn: Txn, stream_id: int, rows: Sequence[tuple[str, str | None, str | None]]) -> None:
    txn.executemany("INSERT INTO e2e_device_list_stream (stream_id, user_id, device_id, only_for) VALUES (?, ?, ?, ?)",
                    [(stream_id, u, d, o) for u, d, o in rows])


def _raise_high_water_txn(txn: Txn, stream_id: int) -> None:
    txn.execute("INSERT INTO e2e_to_device_high_water (id, stream_id) VALUES (1, ?) ON CONFLICT (id) DO UPDATE"
                " SET stream_id = excluded.stream_id WHERE e2e_to_device_high_water.stream_id < excluded.stream_id",
                (stream_id,))


def _backup_row_txn(txn: Txn, user_id: str, version: int | None):
    """(version, algorithm, auth_data, etag) of a live version, or of the newest live one."""
    if version is None:
        return txn.execute("SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions WHERE user_id = ?"
                           " AND deleted = ? ORDER BY version DESC LIMIT 1", (user_id, False)).fetchone()
    return txn.execute("SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions WHERE user_id = ?"
                       " AND version = ? AND deleted = ?", (user_id, version, False)).fetchone()


def _finish_room_keys_write_txn(txn: Txn, user_id: str, version: int, etag: int, changed: bool) -> RoomKeysWrite:
    if changed:
        etag += 1
        txn.execute("UPDATE e2e_room_keys_versions SET etag = ? WHERE user_id = ? AND version = ?",
                    (etag, user_id, version))
    count = txn.scalar("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
    return RoomKeysWrite("ok", etag, int(count or 0))
