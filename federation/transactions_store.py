"""SQL for federation transactions (0051_federation.sql): answers to received transactions, the
per-destination outbound queues of PDUs and EDUs, and each destination's back-off state.

Policy (batch sizes, back-off, which EDUs replace each other) lives in federation/sender/ and
federation/handlers/transactions.py; this module only stores and loads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from homeserver.storage.id_generator import StreamIdGenerator


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class QueuedEdu:
    queue_id: int
    edu_type: str
    content: dict


@dataclass(frozen=True)
class DestinationState:
    destination: str
    failure_count: int
    retry_interval_ms: int
    retry_at_ts: int


class TransactionsStore:
    def __init__(self, hs):
        self.db = hs.db
        self.queue_ids: StreamIdGenerator = self.db.run_sync("federation_queue_ids", _max_queue_id)

    # --- inbound -------------------------------------------------------------------------------
    async def get_received_txn(self, origin: str, txn_id: str) -> dict | None:
        def txn(t):
            return t.scalar("SELECT response_json FROM federation_received_txns WHERE origin = ? AND txn_id = ?",
                            (origin, txn_id))
        raw = await self.db.run("get_received_txn", txn, readonly=True)
        return json.loads(raw) if raw is not None else None

    async def store_received_txn(self, origin: str, txn_id: str, response: dict, now: int) -> None:
        def txn(t):
            t.execute("INSERT INTO federation_received_txns (origin, txn_id, response_json, received_ts)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (origin, txn_id) DO NOTHING",
                      (origin, txn_id, _dumps(response), now))
        await self.db.run("store_received_txn", txn)

    # --- outbound queues ---------------------------------------------------------------------------
    @staticmethod
    def queue_pdus_txn(t, rows: Sequence[tuple[str, int, str]]) -> None:
        """Insert ``(destination, queue_id, event_id)`` rows inside a caller's transaction."""
        t.executemany("INSERT INTO federation_outbox_pdus (destination, queue_id, event_id) VALUES (?, ?, ?)",
                      rows)

    async def queue_pdus(self, rows: Sequence[tuple[str, int, str]]) -> None:
        await self.db.run("queue_pdus", self.queue_pdus_txn, list(rows))

    async def queue_edus(self, rows: Sequence[tuple[str, int, str, str | None, dict]]) -> None:
        """``(destination, queue_id, edu_type, edu_key, content)``; a keyed EDU replaces the
        destination's queued EDU with the same key."""
        def txn(t):
            keyed = [(d, k) for d, _, _, k, _ in rows if k is not None]
            t.executemany("DELETE FROM federation_outbox_edus WHERE destination = ? AND edu_key = ?", keyed)
            t.executemany(
                "INSERT INTO federation_outbox_edus (destination, queue_id, edu_type, edu_key, content_json)"
                " VALUES (?, ?, ?, ?, ?)", [(d, q, ty, k, _dumps(c)) for d, q, ty, k, c in rows])
        await self.db.run("queue_edus", txn)

    async def get_pending(self, destination: str, max_pdus: int,
                          max_edus: int) -> tuple[list[tuple[int, str]], list[QueuedEdu]]:
        """The oldest queued ``(queue_id, event_id)`` PDUs and EDUs of a destination."""
        def txn(t):
            t.execute("SELECT queue_id, event_id FROM federation_outbox_pdus WHERE destination = ?"
                      " ORDER BY queue_id LIMIT ?", (destination, max_pdus))
            pdus = [(int(q), e) for q, e in t.fetchall()]
            t.execute("SELECT queue_id, edu_type, content_json FROM federation_outbox_edus WHERE destination = ?"
                      " ORDER BY queue_id LIMIT ?", (destination, max_edus))
            edus = [QueuedEdu(int(q), ty, json.loads(c)) for q, ty, c in t.fetchall()]
            return pdus, edus
        return await self.db.run("get_pending", txn, readonly=True)

    async def delete_sent(self, destination: str, pdu_ids: Iterable[int], edu_ids: Iterable[int]) -> None:
        def txn(t):
            t.executemany("DELETE FROM federation_outbox_pdus WHERE destination = ? AND queue_id = ?",
                          [(destination, q) for q in pdu_ids])
            t.executemany("DELETE FROM federation_outbox_edus WHERE destination = ? AND queue_id = ?",
                          [(destination, q) for q in edu_ids])
        await self.db.run("delete_sent", txn)

    async def get_destinations_with_pending(self) -> list[str]:
        def txn(t):
            t.execute("SELECT DISTINCT destination FROM federation_outbox_pdus"
                      " UNION SELECT DISTINCT destination FROM federation_outbox_edus"
                      " UNION SELECT DISTINCT destination FROM e2e_device_outbox")
            return sorted(r[0] for r in t.fetchall())
        return await self.db.run("get_destinations_with_pending", txn, readonly=True)

    # --- back-off ---------------------------------------------------------------------------------
    async def get_destination_states(self) -> dict[str, DestinationState]:
        def txn(t):
            t.execute("SELECT destination, failure_count, retry_interval_ms, retry_at_ts FROM federation_destinations")
            return {r[0]: DestinationState(r[0], int(r[1]), int(r[2]), int(r[3])) for r in t.fetchall()}
        return await self.db.run("get_destination_states", txn, readonly=True)

    async def set_destination_failed(self, state: DestinationState) -> None:
        def txn(t):
            t.execute(
                "INSERT INTO federation_destinations (destination, failure_count, retry_interval_ms, retry_at_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET failure_count = excluded.failure_count,"
                " retry_interval_ms = excluded.retry_interval_ms, retry_at_ts = excluded.retry_at_ts",
                (state.destination, state.failure_count, state.retry_interval_ms, state.retry_at_ts))
        await self.db.run("set_destination_failed", txn)

    async def set_destination_ok(self, destination: str, now: int) -> None:
        def txn(t):
            t.execute("UPDATE federation_destinations SET failure_count = 0, retry_interval_ms = 0, retry_at_ts = 0,"
                      " last_success_ts = ? WHERE destination = ?", (now, destination))
        await self.db.run("set_destination_ok", txn)


def _max_queue_id(t) -> StreamIdGenerator:
    a = t.scalar("SELECT COALESCE(MAX(queue_id), 0) FROM federation_outbox_pdus") or 0
    b = t.scalar("SELECT COALESCE(MAX(queue_id), 0) FROM federation_outbox_edus") or 0
    return StreamIdGenerator(max(int(a), int(b)))
