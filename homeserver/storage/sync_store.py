"""SQL for /sync: batched reads over the events and membership tables (no policy).

Every method reads for many rooms in one transaction (one thread hop), never one query per room
per request from the reactor.
"""
from __future__ import annotations

from typing import Sequence

from .database import Txn
from .receipts_store import ReceiptsStore


def _chunks(items: Sequence, n: int = 500):
    for i in range(0, len(items), n):
        yield items[i:i + n]


class SyncStore:
    def __init__(self, hs):
        self.db = hs.db

    async def get_room_windows(self, windows: Sequence[tuple[str, int, int, int]]) -> dict[str, list[tuple[int, str]]]:
        """For each ``(room_id, lower, upper, limit)``: the room's timeline events with
        ``lower < stream_ordering <= upper``, newest first, at most ``limit``, as
        ``(stream_ordering, event_id)``."""
        if not windows:
            return {}

        def txn_fn(txn: Txn):
            out = {}
            for room_id, lower, upper, limit in windows:
                txn.execute(
                    "SELECT stream_ordering, event_id FROM events WHERE room_id = ? AND stream_ordering > ?"
                    " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT ?",
                    (room_id, lower, upper, limit))
                out[room_id] = [(int(s), e) for s, e in txn.fetchall()]
            return out
        return await self.db.run("sync_room_windows", txn_fn, readonly=True)

    async def get_rooms_with_events(self, lower: int, upper: int) -> dict[str, int]:
        """``{room_id: latest stream ordering}`` of rooms with timeline events in (lower, upper]."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_id, MAX(stream_ordering) FROM events WHERE stream_ordering > ?"
                        " AND stream_ordering <= ? GROUP BY room_id", (lower, upper))
            return {r: int(s) for r, s in txn.fetchall()}
        return await self.db.run("sync_rooms_with_events", txn_fn, readonly=True)

    async def get_state_groups_at(self, positions: Sequence[tuple[str, int]]) -> dict[str, int]:
        """For each ``(room_id, stream position)``: the state group after the room's last timeline
        event at or before the position (rooms without one are absent)."""
        if not positions:
            return {}

        def txn_fn(txn: Txn):
            out = {}
            for room_id, pos in positions:
                row = txn.execute(
                    "SELECT state_group FROM events WHERE room_id = ? AND stream_ordering <= ?"
                    " AND state_group IS NOT NULL ORDER BY stream_ordering DESC LIMIT 1",
                    (room_id, pos)).fetchone()
                if row is not None:
                    out[room_id] = int(row[0])
            return out
        return await self.db.run("sync_state_groups_at", txn_fn, readonly=True)

    async def get_summaries(self, room_ids: Sequence[str], hero_rooms: Sequence[str], user_id: str
                            ) -> tuple[dict[str, tuple[int, int]], dict[str, list[tuple[str, str]]]]:
        """(``{room: (joined, invited)}``, ``{room: hero candidates}``): member counts of
        ``room_ids`` and, for ``hero_rooms``, up to 5 members other than ``user_id`` as
        ``(user_id, membership)`` — joined/invited ones first, each group oldest first."""
        rooms = list(room_ids)

        def txn_fn(txn: Txn):
            counts: dict[str, list[int]] = {r: [0, 0] for r in rooms}
            for chunk in _chunks(rooms):
                txn.execute(
                    "SELECT room_id, membership, COUNT(*) FROM room_memberships"
                    f" WHERE room_id IN ({','.join('?' * len(chunk))}) AND membership IN ('join', 'invite')"
                    " GROUP BY room_id, membership", chunk)
                for room_id, membership, n in txn.fetchall():
                    counts[room_id][0 if membership == "join" else 1] = int(n)
            heroes = {}
            for room_id in hero_rooms:
                txn.execute(
                    "SELECT user_id, membership FROM room_memberships WHERE room_id = ? AND user_id != ?"
                    " ORDER BY CASE WHEN membership IN ('join', 'invite') THEN 0 ELSE 1 END, stream_ordering"
                    " LIMIT 5", (room_id, user_id))
                heroes[room_id] = [(u, m) for u, m in txn.fetchall()]
            return {r: (c[0], c[1]) for r, c in counts.items()}, heroes
        return await self.db.run("sync_summaries", txn_fn, readonly=True)

    async def get_user_counters(self, user_id: str, device_id: str | None
                                ) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, int] | None, list[str] | None]:
        """What every sync response carries for a user and device, in one transaction:
        unread counts ``{room: {thread: (notifications, highlights)}}`` (notification_counts plus the
        staged rows naming the user, see ReceiptsStore.add_staged_counts_txn),
        the device's unclaimed one-time key counts by algorithm and its unused fallback key
        algorithms (the e2ee tables, read as E2eeStore.count_one_time_keys and
        get_unused_fallback_key_types do; None without a device)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_id, thread_id, notif_count, highlight_count FROM notification_counts"
                        " WHERE user_id = ? AND notif_count > 0", (user_id,))
            counts: dict[str, dict[str, tuple[int, int]]] = {}
            for room_id, thread_id, n, h in txn.fetchall():
                counts.setdefault(room_id, {})[thread_id] = (int(n), int(h or 0))
            ReceiptsStore.add_staged_counts_txn(txn, user_id, counts)
            if device_id is None:
                return counts, None, None
            txn.execute("SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                        " GROUP BY algorithm", (user_id, device_id))
            otk = {r[0]: int(r[1]) for r in txn.fetchall()}
            txn.execute("SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = ?"
                        " ORDER BY algorithm", (user_id, device_id, False))
            return counts, otk, [r[0] for r in txn.fetchall()]
        return await self.db.read_now("sync_user_counters", txn_fn)
