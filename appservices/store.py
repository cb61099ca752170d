"""SQL for application services: stream positions, the transaction outbox and delivery state
(schema: homeserver/storage/schema/0080_appservices.sql).

The outbox is written by :meth:`AppServiceStore.add_txns` together with the new stream
positions in one database transaction; a transaction row leaves the outbox only when its service
acknowledged it (:meth:`AppServiceStore.complete_txn`).

Two read-only look-ups read other areas' tables, because the appservice distributor needs a
server-wide view no area store offers: timeline events (and out-of-band memberships) by stream
range, and to-device messages of every local device by stream range.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from homeserver.storage.database import Txn


@dataclass(frozen=True)
class PendingTxn:
    as_id: str
    txn_id: int
    body: str  # the exact JSON to send
    event_count: int
    ephemeral_count: int
    created_ts: int


@dataclass(frozen=True)
class Backlog:
    as_id: str
    pending: int
    oldest_created_ts: int | None
    last_txn_id: int
    last_acked_txn_id: int
    last_acked_ts: int | None


@dataclass(frozen=True)
class NewTxn:
    """A transaction to add for ``as_id``: its JSON body and what it holds (for the backlog view)."""

    as_id: str
    body: str
    event_count: int
    ephemeral_count: int


class AppServiceStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db

    # --- stream positions -----------------------------------------------------------------------
    async def get_stream_positions(self) -> dict[str, int]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT stream_name, position FROM appservice_stream_positions")
            return {name: int(pos) for name, pos in txn.fetchall()}
        return await self.db.run("appservice_get_positions", txn_fn, readonly=True)

    async def add_txns(self, new_txns: Sequence[NewTxn], positions: Mapping[str, int], now_ms: int) -> list[int]:
        """Append transactions to the outbox and move the stream positions, all or nothing;
        returns the transaction IDs given, in the order of ``new_txns``. IDs count up per
        service from the last one ever handed out."""
        def txn_fn(txn: Txn) -> list[int]:
            last: dict[str, int] = {}
            out = []
            for t in new_txns:
                if t.as_id not in last:
                    last[t.as_id] = int(txn.scalar("SELECT last_txn_id FROM appservice_state WHERE as_id = ?",
                                                   (t.as_id,)) or 0)
                last[t.as_id] += 1
                out.append(last[t.as_id])
                txn.execute("INSERT INTO appservice_txns (as_id, txn_id, body, event_count, ephemeral_count,"
                            " created_ts) VALUES (?, ?, ?, ?, ?, ?)",
                            (t.as_id, last[t.as_id], t.body, t.event_count, t.ephemeral_count, now_ms))
            for as_id, txn_id in last.items():
                txn.execute("INSERT INTO appservice_state (as_id, last_txn_id, last_acked_txn_id) VALUES (?, ?, 0)"
                            " ON CONFLICT (as_id) DO UPDATE SET last_txn_id = excluded.last_txn_id",
                            (as_id, txn_id))
            for name, pos in positions.items():
                txn.execute("INSERT INTO appservice_stream_positions (stream_name, position) VALUES (?, ?)"
                            " ON CONFLICT (stream_name) DO UPDATE SET position = excluded.position",
                            (name, pos))
            return out
        return await self.db.run("appservice_add_txns", txn_fn)

    # --- the outbox -----------------------------------------------------------------------------
    async def get_pending_txns(self, as_id: str, limit: int = 1) -> list[PendingTxn]:
        """The oldest unacknowledged transactions of a service, oldest first."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT txn_id, body, event_count, ephemeral_count, created_ts FROM appservice_txns"
                        " WHERE as_id = ? ORDER BY txn_id LIMIT ?", (as_id, limit))
            return txn.fetchall()
        rows = await self.db.run("appservice_get_pending", txn_fn, readonly=True)
        return [PendingTxn(as_id, int(r[0]), r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def complete_txn(self, as_id: str, txn_id: int, now_ms: int) -> None:
        """The service acknowledged ``txn_id``: drop it from the outbox."""
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM appservice_txns WHERE as_id = ? AND txn_id = ?", (as_id, txn_id))
            txn.execute("UPDATE appservice_state SET last_acked_txn_id = ?, last_acked_ts = ? WHERE as_id = ?"
                        " AND last_acked_txn_id < ?", (txn_id, now_ms, as_id, txn_id))
        await self.db.run("appservice_complete_txn", txn_fn)

    async def get_backlogs(self, as_ids: Iterable[str]) -> dict[str, Backlog]:
        """Outbox size, age of the oldest waiting transaction and the last IDs per service."""
        wanted = list(as_ids)

        def txn_fn(txn: Txn):
            txn.execute("SELECT as_id, COUNT(*), MIN(created_ts) FROM appservice_txns GROUP BY as_id")
            pending = {r[0]: (int(r[1]), r[2]) for r in txn.fetchall()}
            txn.execute("SELECT as_id, last_txn_id, last_acked_txn_id, last_acked_ts FROM appservice_state")
            state = {r[0]: (int(r[1]), int(r[2]), r[3]) for r in txn.fetchall()}
            return pending, state
        pending, state = await self.db.run("appservice_backlogs", txn_fn, readonly=True)
        out = {}
        for as_id in wanted:
            count, oldest = pending.get(as_id, (0, None))
            last, acked, acked_ts = state.get(as_id, (0, 0, None))
            out[as_id] = Backlog(as_id, count, int(oldest) if oldest is not None else None, last, acked,
                                 int(acked_ts) if acked_ts is not None else None)
        return out

    # --- server-wide stream reads (other areas' tables, read only) ------------------------------
    async def get_timeline_event_ids(self, from_exclusive: int, to_inclusive: int,
                                     limit: int) -> tuple[list[tuple[int, str]], int]:
        """``(stream_ordering, event_id)`` of events that entered the timeline, plus out-of-band
        memberships (remote invites), in ``(from, to]``, in stream order, and the position read up
        to (``to`` unless ``limit`` events came first)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT stream_ordering, event_id FROM events WHERE stream_ordering > ?"
                        " AND stream_ordering <= ? ORDER BY stream_ordering LIMIT ?",
                        (from_exclusive, to_inclusive, limit))
            rows = [(int(s), e) for s, e in txn.fetchall()]
            upper = rows[-1][0] if len(rows) >= limit else to_inclusive
            txn.execute("SELECT m.stream_ordering, m.event_id FROM room_memberships m"
                        " JOIN events e ON e.event_id = m.event_id"
                        " WHERE m.stream_ordering > ? AND m.stream_ordering <= ? AND e.stream_ordering IS NULL",
                        (from_exclusive, upper))
            rows.extend((int(s), e) for s, e in txn.fetchall())
            return sorted(rows), upper
        return await self.db.run("appservice_timeline_ids", txn_fn, readonly=True)

    async def get_to_device_messages(self, from_exclusive: int, to_inclusive: int,
                                     limit: int) -> list[tuple[int, str, str, dict]]:
        """``(stream_id, user_id, device_id, message)`` for every local device inbox row in
        ``(from, to]``, in stream order, at most ``limit``."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT stream_id, user_id, device_id, message_json FROM e2e_device_inbox"
                        " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
                        (from_exclusive, to_inclusive, limit))
            return [(int(r[0]), r[1], r[2], json.loads(r[3])) for r in txn.fetchall()]
        return await self.db.run("appservice_to_device", txn_fn, readonly=True)
