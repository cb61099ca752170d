"""The pusher pool: wakes each HTTP pusher when its user has something new, and the notification
list behind GET /notifications.

Spec: client-server-api/modules/push.md "Server behaviour" (after push rules are processed for a
new event, the homeserver may make "a request to the configured push gateway"), "Marking
notifications as read" (a read receipt clears notifications: the gateway gets the new badge count,
push_notifier.yaml "update the number of unread notifications"), "Listing Notifications"
(notifications.yaml); push-gateway-api.md "Homeserver behaviour".

Wiring, all through existing seams:

* :class:`~homeserver.push.notification_counts.NotificationCounter` computes push actions when an
  event is persisted (staged with the event, folded into the per-user tables and
  ``notification_history`` in batches); its ``on_push_actions`` hook gives us the rows inside the
  fold transaction, and after commit we wake the pushers of those users (so a pusher never sees
  an uncommitted notification).
* ``ReceiptsService.on_read_receipt`` (m.read and m.read.private): a badge-count update.
* ``AccountService.on_deactivate``: the user's pushers go. Pushers of deleted devices are
  removed by the device service (``UserDataStore.delete_pushers_for_devices``); a worker notices
  its pusher is gone before its next delivery.
* :meth:`PusherPool.start` (``hs.on_start``) wakes every pusher once, so notifications that were
  pending when the server stopped are delivered after a restart.
"""
from __future__ import annotations

import logging
from typing import Iterable

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from homeserver.accounts.account import AccountService
from homeserver.ephemeral.receipts import ReceiptsService
from homeserver.http.errors import invalid_param
from homeserver.protocol.events import Event
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.serialize import EventSerializer
from homeserver.storage.push_store import PushStore
from homeserver.storage.receipts_store import PushActionRow
from homeserver.storage.user_data_store import UserDataStore

from .http_pusher import HttpPusher, PushGatewayClient
from .notification_counts import NotificationCounter

logger = logging.getLogger(__name__)

PusherKey = tuple[str, str, str]  # (user_id, app_id, pushkey)

HISTORY_KEEP_MS = 30 * 24 * 3600 * 1000
PRUNE_INTERVAL_S = 3600.0


class PusherPool:
    #: Backoff of a failing pusher (push-gateway-api.md: "retry for a reasonable amount of time
    #: using exponential backoff"): 1 s doubling to 1 h; an event failing for a day is skipped.
    initial_backoff_ms = 1000
    max_backoff_ms = 3600 * 1000
    give_up_after_ms = 24 * 3600 * 1000
    batch_size = 50

    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(PushStore)
        self.user_data = hs.get(UserDataStore)
        self.events = hs.get(RoomEventService)
        self.serializer = hs.get(EventSerializer)
        self.client = PushGatewayClient(hs.reactor, hs.config.ip_allowed)
        self._pushers: dict[PusherKey, HttpPusher] = {}
        self._wake: dict[str, bool] = {}  # user -> badge update wanted, waiting for _reconcile
        self._reconciling = False
        self._prune_loop: LoopingCall | None = None
        hs.get(NotificationCounter).on_push_actions.append(self._on_push_actions_txn)
        hs.get(ReceiptsService).on_read_receipt.append(self._on_read_receipt)
        hs.get(AccountService).on_deactivate.append(self._on_deactivate)

    # --- start-up ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Drop the progress of vanished pushers, prune old history, wake every HTTP pusher."""
        await self.store.delete_orphan_delivery_states()
        await self._prune()
        for p in await self.user_data.get_pushers(None):
            if p["kind"] == "http":
                self._worker(p).kick(badge=False)
        self._prune_loop = LoopingCall(lambda: defer.ensureDeferred(self._prune()))
        self._prune_loop.clock = self.hs.reactor
        self._prune_loop.start(PRUNE_INTERVAL_S, now=False)

    async def _prune(self) -> None:
        try:
            await self.store.prune_history(self.hs.clock_ms() - HISTORY_KEEP_MS)
        except Exception:
            logger.exception("pruning the notification history failed")

    # --- hooks --------------------------------------------------------------------------------------
    def _on_push_actions_txn(self, txn, rows: list[PushActionRow], now_ms: int) -> None:
        # The rows are in notification_history already (ReceiptsStore.fold_staged_txn).
        txn.call_after_commit(self.wake_users, {r.user_id for r in rows}, False)

    def _on_read_receipt(self, room_id: str, user_id: str) -> None:
        self.wake_users([user_id], True)

    async def _on_deactivate(self, user_id: str, erase: bool) -> None:
        for p in await self.user_data.get_pushers(user_id):
            await self.remove_pusher((p["user_id"], p["app_id"], p["pushkey"]))

    # --- waking -------------------------------------------------------------------------------------
    def wake_users(self, user_ids: Iterable[str], badge: bool = False) -> None:
        """Something changed for these users (new notifications, or with ``badge`` their unread
        count): look up their current HTTP pushers and kick them."""
        for u in user_ids:
            self._wake[u] = self._wake.get(u, False) or badge
        if not self._reconciling and self._wake:
            self._reconciling = True
            defer.ensureDeferred(self._reconcile()).addErrback(
                lambda f: logger.error("waking pushers failed: %s", f.getTraceback()))

    async def _reconcile(self) -> None:
        try:
            while self._wake:
                users, self._wake = self._wake, {}
                for user_id, badge in users.items():
                    current = [p for p in await self.user_data.get_pushers(user_id) if p["kind"] == "http"]
                    keys = {(p["user_id"], p["app_id"], p["pushkey"]) for p in current}
                    for key in [k for k, w in self._pushers.items() if w.user_id == user_id and k not in keys]:
                        self._pushers.pop(key).stop()
                    for p in current:
                        self._worker(p).kick(badge=badge)
        finally:
            self._reconciling = False

    def _worker(self, pusher: dict) -> HttpPusher:
        key = (pusher["user_id"], pusher["app_id"], pusher["pushkey"])
        worker = self._pushers.get(key)
        if worker is None:
            worker = self._pushers[key] = HttpPusher(self, pusher)
        else:
            worker.pusher = pusher  # replaced through /pushers/set: new url, data or pushkey_ts
        return worker

    async def remove_pusher(self, key: PusherKey) -> None:
        """Delete a pusher and its progress (gateway rejected the pushkey, account deactivated)."""
        worker = self._pushers.pop(key, None)
        if worker is not None:
            worker.stop()
        await self.user_data.delete_pusher(*key)
        await self.store.delete_delivery_state(*key)

    # --- what a notification says -----------------------------------------------------------------
    async def is_redacted(self, event: Event) -> bool:
        return bool(await self.serializer.applicable_redactions([event]))

    async def room_details(self, event: Event) -> dict:
        """sender_display_name (the sender's current display name in the room), room_name
        (``m.room.name``) and room_alias (``m.room.canonical_alias``) for the notify payload."""
        state = await self.events.get_current_state_events(
            event.room_id, [("m.room.member", event.sender), ("m.room.name", ""), ("m.room.canonical_alias", "")])

        def field(key, name):
            ev = state.get(key)
            value = ev.content.get(name) if ev is not None and isinstance(ev.content, dict) else None
            return value if isinstance(value, str) and value else None
        return {"sender_display_name": field(("m.room.member", event.sender), "displayname"),
                "room_name": field(("m.room.name", ""), "name"),
                "room_alias": field(("m.room.canonical_alias", ""), "alias")}


class NotificationsService:
    """GET /notifications (notifications.yaml): the user's notifications, newest first.

    ``next_token`` is the stream position of the last notification returned; it is given only
    when a full page came back."""

    DEFAULT_LIMIT = 20
    MAX_LIMIT = 1000

    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(PushStore)
        self.events = hs.get(RoomEventService)
        self.serializer = hs.get(EventSerializer)

    @staticmethod
    def parse_from(token: str | None) -> int | None:
        if token is None or token == "":
            return None
        if not token.isdigit() or len(token) > 19:
            raise invalid_param("'from' is not a token returned by /notifications")
        return int(token)

    async def get_notifications(self, user_id: str, device_id: str | None, from_token: str | None,
                                limit: int, only: str | None) -> dict:
        before = self.parse_from(from_token)
        limit = max(1, min(limit, self.MAX_LIMIT))
        rows = await self.store.get_notifications(user_id, before, limit, only == "highlight")
        events = await self.events.get_events(r.event_id for r in rows)
        present = [r for r in rows if r.event_id in events]
        served = await self.serializer.serialize_events([events[r.event_id] for r in present], user_id=user_id,
                                                        device_id=device_id)
        out: dict = {"notifications": [
            {"actions": r.actions, "event": ev, "read": r.read, "room_id": r.room_id, "ts": r.received_ts}
            for r, ev in zip(present, served)]}
        if len(rows) == limit:
            out["next_token"] = str(rows[-1].stream_ordering)
        return out
