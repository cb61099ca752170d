"""SQL for push gateway delivery and the notification history (schema 0045_push.sql).

Pushers themselves are in :class:`~homeserver.storage.user_data_store.UserDataStore`; the unread
push actions and counts they deliver in :class:`~homeserver.storage.receipts_store.ReceiptsStore`
(event_push_actions, notification_counts). This store keeps what delivery adds: each HTTP
pusher's progress and backoff, and the read-or-unread history behind GET /notifications (written
when staged push actions are folded, ReceiptsStore.fold_staged_txn; readers here fold first).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .database import Txn
from .receipts_store import ReceiptsStore


@dataclass
class DeliveryState:
    """One pusher's progress (pusher_delivery row); ``stored`` is False for a pusher that has
    delivered nothing yet (no row)."""

    user_id: str
    app_id: str
    pushkey: str
    last_stream_ordering: int = 0
    last_success_ts: int | None = None
    failure_count: int = 0
    failing_since: int | None = None
    retry_at: int | None = None
    stored: bool = False


@dataclass(frozen=True)
class PendingPush:
    """An unread notification of a user waiting for delivery (an event_push_actions row)."""

    room_id: str
    stream_ordering: int
    event_id: str
    highlight: bool
    actions: list


@dataclass(frozen=True)
class NotificationRow:
    """A notification_history row with whether a read receipt has passed it."""

    room_id: str
    stream_ordering: int
    event_id: str
    highlight: bool
    actions: list
    received_ts: int
    read: bool


_STATE_COLS = "user_id, app_id, pushkey, last_stream_ordering, last_success_ts, failure_count, failing_since, retry_at"


def _state(row) -> DeliveryState:
    return DeliveryState(row[0], row[1], row[2], int(row[3]), row[4], int(row[5]), row[6], row[7], stored=True)


class PushStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db

    # --- delivery state ---------------------------------------------------------------------------
    async def get_delivery_state(self, user_id: str, app_id: str, pushkey: str) -> DeliveryState:
        def txn_fn(txn: Txn):
            return txn.execute(f"SELECT {_STATE_COLS} FROM pusher_delivery WHERE user_id = ? AND app_id = ?"
                               " AND pushkey = ?", (user_id, app_id, pushkey)).fetchone()
        row = await self.db.run("get_delivery_state", txn_fn, readonly=True)
        return _state(row) if row is not None else DeliveryState(user_id, app_id, pushkey)

    async def set_delivery_state(self, s: DeliveryState) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                f"INSERT INTO pusher_delivery ({_STATE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET"
                " last_stream_ordering = excluded.last_stream_ordering, last_success_ts = excluded.last_success_ts,"
                " failure_count = excluded.failure_count, failing_since = excluded.failing_since,"
                " retry_at = excluded.retry_at",
                (s.user_id, s.app_id, s.pushkey, s.last_stream_ordering, s.last_success_ts, s.failure_count,
                 s.failing_since, s.retry_at))
        await self.db.run("set_delivery_state", txn_fn)
        s.stored = True

    async def delete_delivery_state(self, user_id: str, app_id: str, pushkey: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM pusher_delivery WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                        (user_id, app_id, pushkey))
        await self.db.run("delete_delivery_state", txn_fn)

    async def delete_orphan_delivery_states(self) -> int:
        """Drop the progress of pushers that no longer exist (so a pusher created again later
        starts afresh)."""
        def txn_fn(txn: Txn) -> int:
            txn.execute("DELETE FROM pusher_delivery WHERE NOT EXISTS (SELECT 1 FROM pushers p WHERE"
                        " p.user_id = pusher_delivery.user_id AND p.app_id = pusher_delivery.app_id"
                        " AND p.pushkey = pusher_delivery.pushkey)")
            return max(txn.rowcount, 0)
        return await self.db.run("delete_orphan_delivery_states", txn_fn)

    # --- what to deliver --------------------------------------------------------------------------
    async def get_pending_pushes(self, user_id: str, after_stream: int, min_received_ts: int | None,
                                 limit: int) -> list[PendingPush]:
        """The user's unread notifications after ``after_stream``, oldest first; with
        ``min_received_ts`` only those received since then (a pusher that delivered nothing yet)."""
        await self.hs.get(ReceiptsStore).fold_staged()
        def txn_fn(txn: Txn):
            sql = ("SELECT room_id, stream_ordering, event_id, highlight, actions FROM event_push_actions"
                   " WHERE user_id = ? AND stream_ordering > ?")
            args: list = [user_id, after_stream]
            if min_received_ts is not None:
                sql += " AND received_ts >= ?"
                args.append(min_received_ts)
            txn.execute(sql + " ORDER BY stream_ordering LIMIT ?", [*args, limit])
            return txn.fetchall()
        rows = await self.db.run("get_pending_pushes", txn_fn, readonly=True)
        return [PendingPush(r[0], int(r[1]), r[2], bool(r[3]), json.loads(r[4])) for r in rows]

    async def get_unread_count(self, user_id: str) -> int:
        """The user's unread notifications over every room and thread (the badge count)."""
        await self.hs.get(ReceiptsStore).fold_staged()
        def txn_fn(txn: Txn):
            return txn.scalar("SELECT COALESCE(SUM(notif_count), 0) FROM notification_counts WHERE user_id = ?",
                              (user_id,))
        return int(await self.db.run("get_unread_count", txn_fn, readonly=True) or 0)

    # --- notification history -----------------------------------------------------------------------
    async def get_notifications(self, user_id: str, before_stream: int | None, limit: int,
                                only_highlight: bool) -> list[NotificationRow]:
        """The user's notifications, newest first, before ``before_stream`` (all when None)."""
        await self.hs.get(ReceiptsStore).fold_staged()
        def txn_fn(txn: Txn):
            sql = ("SELECT h.room_id, h.stream_ordering, h.event_id, h.highlight, h.actions, h.received_ts,"
                   " a.user_id FROM notification_history h LEFT JOIN event_push_actions a ON"
                   " a.user_id = h.user_id AND a.room_id = h.room_id AND a.stream_ordering = h.stream_ordering"
                   " WHERE h.user_id = ?")
            args: list = [user_id]
            if before_stream is not None:
                sql += " AND h.stream_ordering < ?"
                args.append(before_stream)
            if only_highlight:
                sql += " AND h.highlight = ?"
                args.append(True)
            txn.execute(sql + " ORDER BY h.stream_ordering DESC LIMIT ?", [*args, limit])
            return txn.fetchall()
        rows = await self.db.run("get_notifications", txn_fn, readonly=True)
        return [NotificationRow(r[0], int(r[1]), r[2], bool(r[3]), json.loads(r[4]), int(r[5]), r[6] is None)
                for r in rows]

    async def prune_history(self, before_ts: int) -> int:
        def txn_fn(txn: Txn) -> int:
            txn.execute("DELETE FROM notification_history WHERE received_ts < ?", (before_ts,))
            return max(txn.rowcount, 0)
        return await self.db.run("prune_notification_history", txn_fn)
