"""SQL for the cache of remote users' device lists (schema: storage/schema/0062_remote_device_cache.sql).

A held list is a row of ``e2e_remote_device_lists`` (the remote stream_id of the last applied
update, and whether it is stale) with its devices and cross-signing keys. Policy — which users are
tracked, when an update applies, when to resync — is in homeserver/e2ee/remote_device_lists.py;
this module reads and writes rows. Every write that changes a list is one transaction that first
checks the list is still at the stream_id the caller saw, so two writers never interleave.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .database import Txn


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _in(n: int) -> str:
    return ",".join("?" * n)


@dataclass(frozen=True)
class RemoteListState:
    stream_id: str | None
    stale: bool


@dataclass
class RemoteDeviceList:
    """A held list: {device_id: (keys or None, display_name or None)} and {key_type: key}."""

    stream_id: str | None
    devices: dict[str, tuple[dict | None, str | None]] = field(default_factory=dict)
    cross_signing: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceUpdate:
    """One m.device_list_update: keys None and deleted False leaves the keys unknown (NULL)."""

    device_id: str
    stream_id: str
    keys: dict | None = None
    display_name: str | None = None
    deleted: bool = False


class RemoteDevicesStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db

    # --- reads ------------------------------------------------------------------------------------
    async def get_list_states(self, user_ids: Iterable[str]) -> dict[str, RemoteListState]:
        """The held lists' states, for the users that have one."""
        user_ids = sorted(set(user_ids))

        def txn_fn(txn: Txn):
            out = {}
            for i in range(0, len(user_ids), 200):
                chunk = user_ids[i:i + 200]
                txn.execute(f"SELECT user_id, stream_id, stale FROM e2e_remote_device_lists WHERE user_id IN"
                            f" ({_in(len(chunk))})", chunk)
                for user_id, stream_id, stale in txn.fetchall():
                    out[user_id] = RemoteListState(stream_id, bool(stale))
            return out
        if not user_ids:
            return {}
        return await self.db.run("get_remote_list_states", txn_fn, readonly=True)

    async def get_fresh_lists(self, user_ids: Iterable[str]) -> dict[str, RemoteDeviceList]:
        """The held, not stale, lists of these users (users without one are left out)."""
        user_ids = sorted(set(user_ids))

        def txn_fn(txn: Txn):
            out: dict[str, RemoteDeviceList] = {}
            for i in range(0, len(user_ids), 200):
                chunk = user_ids[i:i + 200]
                txn.execute(f"SELECT user_id, stream_id FROM e2e_remote_device_lists WHERE stale = ? AND user_id IN"
                            f" ({_in(len(chunk))})", [False, *chunk])
                found = {r[0]: RemoteDeviceList(r[1]) for r in txn.fetchall()}
                if not found:
                    continue
                names = sorted(found)
                txn.execute("SELECT user_id, device_id, key_json, display_name FROM e2e_remote_devices WHERE user_id"
                            f" IN ({_in(len(names))})", names)
                for user_id, device_id, raw, name in txn.fetchall():
                    found[user_id].devices[device_id] = (json.loads(raw) if raw is not None else None, name)
                txn.execute("SELECT user_id, key_type, key_json FROM e2e_remote_cross_signing_keys WHERE user_id"
                            f" IN ({_in(len(names))})", names)
                for user_id, key_type, raw in txn.fetchall():
                    found[user_id].cross_signing[key_type] = json.loads(raw)
                out.update(found)
            return out
        if not user_ids:
            return {}
        return await self.db.run("get_fresh_remote_lists", txn_fn, readonly=True)

    async def get_stale_users(self, limit: int = 100) -> list[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT user_id FROM e2e_remote_device_lists WHERE stale = ? ORDER BY updated_ts, user_id"
                        " LIMIT ?", (True, limit))
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_stale_remote_users", txn_fn, readonly=True)

    async def get_held_users(self) -> list[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT user_id FROM e2e_remote_device_lists ORDER BY user_id")
            return [r[0] for r in txn.fetchall()]
        return await self.db.run("get_held_remote_users", txn_fn, readonly=True)

    async def held_users_in_rooms(self, room_ids: Iterable[str]) -> list[str]:
        """Users with a held list who have a membership (any) in one of these rooms."""
        room_ids = sorted(set(room_ids))

        def txn_fn(txn: Txn):
            out: set[str] = set()
            for i in range(0, len(room_ids), 200):
                chunk = room_ids[i:i + 200]
                txn.execute("SELECT DISTINCT h.user_id FROM e2e_remote_device_lists h JOIN room_memberships m"
                            f" ON m.user_id = h.user_id WHERE m.room_id IN ({_in(len(chunk))})", chunk)
                out |= {r[0] for r in txn.fetchall()}
            return sorted(out)
        if not room_ids:
            return []
        return await self.db.run("held_remote_users_in_rooms", txn_fn, readonly=True)

    async def users_sharing_room_with_local(self, user_ids: Iterable[str], hostname: str) -> set[str]:
        """Of these users, those joined to a room where a user of ``hostname`` is joined (reads
        room_memberships of storage/schema/0010_rooms.sql)."""
        user_ids = sorted(set(user_ids))
        suffix = ":" + hostname

        def txn_fn(txn: Txn):
            out: set[str] = set()
            for i in range(0, len(user_ids), 200):
                chunk = user_ids[i:i + 200]
                txn.execute("SELECT r.user_id FROM room_memberships r WHERE r.membership = 'join'"
                            f" AND r.user_id IN ({_in(len(chunk))}) AND EXISTS (SELECT 1 FROM room_memberships l"
                            " WHERE l.room_id = r.room_id AND l.membership = 'join'"
                            " AND SUBSTR(l.user_id, LENGTH(l.user_id) - ? + 1) = ?)",
                            [*chunk, len(suffix), suffix])
                out |= {r[0] for r in txn.fetchall()}
            return out
        if not user_ids:
            return set()
        return await self.db.run("remote_users_sharing_room_with_local", txn_fn, readonly=True)

    # --- writes -----------------------------------------------------------------------------------
    async def apply_updates(self, user_id: str, expected: str | None, updates: Sequence[DeviceUpdate],
                            now_ms: int) -> bool:
        """Apply incremental updates to a fresh list held at stream_id ``expected`` (the caller
        checked their prev_ids); False (nothing written) if the list is no longer there, stale or at
        another stream_id. The list ends at the last update's stream_id."""
        def txn_fn(txn: Txn) -> bool:
            row = txn.execute("SELECT stream_id, stale FROM e2e_remote_device_lists WHERE user_id = ?",
                              (user_id,)).fetchone()
            if row is None or bool(row[1]) or row[0] != expected:
                return False
            for u in updates:
                if u.deleted:
                    txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ? AND device_id = ?",
                                (user_id, u.device_id))
                    continue
                txn.execute("INSERT INTO e2e_remote_devices (user_id, device_id, key_json, display_name)"
                            " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE SET"
                            " key_json = excluded.key_json, display_name = excluded.display_name",
                            (user_id, u.device_id, _dumps(u.keys) if u.keys is not None else None, u.display_name))
            txn.execute("UPDATE e2e_remote_device_lists SET stream_id = ?, updated_ts = ? WHERE user_id = ?",
                        (updates[-1].stream_id if updates else expected, now_ms, user_id))
            return True
        return await self.db.run("apply_remote_device_updates", txn_fn)

    async def replace_list(self, user_id: str, stream_id: str | None,
                           devices: dict[str, tuple[dict | None, str | None]],
                           cross_signing: dict[str, dict], now_ms: int) -> bool:
        """Hold this snapshot (GET /user/devices) as the user's list, fresh; True if its devices
        or keys differ from what was held (stale or not; no list held counts as different)."""
        def txn_fn(txn: Txn) -> bool:
            old = _read_list_txn(txn, user_id)
            txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM e2e_remote_cross_signing_keys WHERE user_id = ?", (user_id,))
            txn.executemany("INSERT INTO e2e_remote_devices (user_id, device_id, key_json, display_name)"
                            " VALUES (?, ?, ?, ?)",
                            [(user_id, d, _dumps(k) if k is not None else None, n)
                             for d, (k, n) in sorted(devices.items())])
            txn.executemany("INSERT INTO e2e_remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)",
                            [(user_id, t, _dumps(k)) for t, k in sorted(cross_signing.items())])
            txn.execute("INSERT INTO e2e_remote_device_lists (user_id, stream_id, stale, updated_ts)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id,"
                        " stale = excluded.stale, updated_ts = excluded.updated_ts",
                        (user_id, stream_id, False, now_ms))
            return old is None or old[1:] != (devices, cross_signing)
        return await self.db.run("replace_remote_device_list", txn_fn)

    async def set_cross_signing(self, user_id: str, keys: dict[str, dict]) -> bool:
        """Replace these cross-signing keys ({key_type: key}) of a held list; True if one changed.
        Nothing is written (False) when no list is held."""
        def txn_fn(txn: Txn) -> bool:
            if txn.scalar("SELECT 1 FROM e2e_remote_device_lists WHERE user_id = ?", (user_id,)) is None:
                return False
            changed = False
            for key_type, key in sorted(keys.items()):
                new = _dumps(key)
                old = txn.scalar("SELECT key_json FROM e2e_remote_cross_signing_keys WHERE user_id = ? AND"
                                 " key_type = ?", (user_id, key_type))
                if old == new:
                    continue
                changed = True
                txn.execute("INSERT INTO e2e_remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)"
                            " ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
                            (user_id, key_type, new))
            return changed
        return await self.db.run("set_remote_cross_signing", txn_fn)

    async def mark_stale(self, user_id: str, now_ms: int) -> None:
        """The held list missed an update (or there is none yet but there must be): fetch it again
        before use. Its rows stay until the resync replaces them."""
        def txn_fn(txn: Txn):
            txn.execute("INSERT INTO e2e_remote_device_lists (user_id, stream_id, stale, updated_ts)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET stale = excluded.stale,"
                        " updated_ts = excluded.updated_ts", (user_id, None, True, now_ms))
        await self.db.run("mark_remote_list_stale", txn_fn)

    async def drop_lists(self, user_ids: Iterable[str]) -> None:
        """Stop holding these users' lists."""
        rows = [(u,) for u in sorted(set(user_ids))]

        def txn_fn(txn: Txn):
            for table in ("e2e_remote_devices", "e2e_remote_cross_signing_keys", "e2e_remote_device_lists"):
                txn.executemany(f"DELETE FROM {table} WHERE user_id = ?", rows)
        if rows:
            await self.db.run("drop_remote_device_lists", txn_fn)


def _read_list_txn(txn: Txn, user_id: str):
    """(stale, devices, cross_signing) of a held list, or None."""
    row = txn.execute("SELECT stale FROM e2e_remote_device_lists WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        return None
    txn.execute("SELECT device_id, key_json, display_name FROM e2e_remote_devices WHERE user_id = ?", (user_id,))
    devices = {d: (json.loads(k) if k is not None else None, n) for d, k, n in txn.fetchall()}
    txn.execute("SELECT key_type, key_json FROM e2e_remote_cross_signing_keys WHERE user_id = ?", (user_id,))
    cross = {t: json.loads(k) for t, k in txn.fetchall()}
    return bool(row[0]), devices, cross
