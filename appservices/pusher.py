"""Pushing events to application services (application-service-api.md "Pushing events",
"Pushing ephemeral data"; transactions.yaml).

Two halves, joined by a durable outbox (appservices/store.py):

* :class:`AppServiceDistributor` reads the server's streams — timeline events, receipts,
  presence, to-device messages, and typing changes (in memory) — from its stored positions,
  picks what each service is interested in, and writes the resulting transactions *and* the new
  stream positions in one database transaction. A crash before that commit rereads the same
  range; after it, the transactions are on disk. Nothing is skipped, nothing is built twice.
* One :class:`TransactionSender` per service sends that service's transactions strictly in
  order, one at a time, ``PUT /_matrix/app/v1/transactions/{txnId}`` with the stored body, and
  drops a transaction only once the service answered 2xx. Failures back off exponentially
  (1 s doubling to :data:`MAX_BACKOFF_S`); a request from the service itself (it is up again)
  or a ping ends the wait early. The same txnId always carries the same body ("Homeservers
  MUST NOT alter ... on retries").

Interest (registration.yaml): an event goes to a service when its sender or (membership) target
is one of the service's users, or its room is of interest: room ID or a local alias in a
namespace, or a service user joined. Ephemeral data (``receive_ephemeral``): ``m.typing`` and
``m.receipt`` of rooms of interest (with ``room_id``; private receipts only of the service's
users), ``m.presence`` of the service's users and of users sharing a room with them. To-device
messages for the service's users go under ``de.sorunome.msc2409.to_device`` (MSC2409), each
with ``to_user_id``/``to_device_id``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from twisted.internet import defer

from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.serialize import EventSerializer
from homeserver.storage.directory_store import DirectoryStore
from homeserver.storage.e2ee_store import E2eeStore
from homeserver.storage.events_store import EventsStore
from homeserver.storage.receipts_store import ReceiptsStore
from homeserver.storage.user_data_store import UserDataStore
from homeserver.sync.notifier import Notifier

from .client import AppServiceClient, AppServiceUnreachable
from .registration import AppService
from .store import AppServiceStore, NewTxn, PendingTxn

logger = logging.getLogger(__name__)

EVENTS, RECEIPTS, PRESENCE, TO_DEVICE = "events", "receipts", "presence", "to_device"
STREAMS = (EVENTS, RECEIPTS, PRESENCE, TO_DEVICE)
READ_BATCH = 500  # stream rows read per distributor pass
MAX_EVENTS_PER_TXN = 100
MAX_EPHEMERAL_PER_TXN = 100
MAX_BACKOFF_S = 60.0
POSITION_FLUSH_S = 10.0  # positions are written at least this often even when nothing matched
SAFETY_POLL_S = 5.0
BACKLOG_LOG_S = 60.0


@dataclass
class _Batch:
    """What one distributor pass gathered for one service."""

    events: list[dict] = field(default_factory=list)
    ephemeral: list[dict] = field(default_factory=list)
    to_device: list[dict] = field(default_factory=list)

    def transactions(self, as_id: str) -> list[NewTxn]:
        out = []
        ev, eph, td = self.events, self.ephemeral, self.to_device
        while ev or eph or td:
            chunk_ev, ev = ev[:MAX_EVENTS_PER_TXN], ev[MAX_EVENTS_PER_TXN:]
            chunk_eph, eph = eph[:MAX_EPHEMERAL_PER_TXN], eph[MAX_EPHEMERAL_PER_TXN:]
            chunk_td, td = td[:MAX_EPHEMERAL_PER_TXN], td[MAX_EPHEMERAL_PER_TXN:]
            body: dict = {"events": chunk_ev}
            if chunk_eph:
                body["ephemeral"] = chunk_eph
                body["de.sorunome.msc2409.ephemeral"] = chunk_eph
            if chunk_td:
                body["de.sorunome.msc2409.to_device"] = chunk_td
            out.append(NewTxn(as_id, json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                              len(chunk_ev), len(chunk_eph) + len(chunk_td)))
        return out


class AppServiceDistributor:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AppServiceStore)
        self.events_store = hs.get(EventsStore)
        self.room_events = hs.get(RoomEventService)
        self.services: list[AppService] = []
        self.senders: dict[str, TransactionSender] = {}
        self._positions: dict[str, int] = {}
        self._written_at = 0.0
        self._typing_rooms: set[str] = set()
        self._running = False
        self._dirty = False
        self._started = False
        self._timers: list = []

    # --- life ---------------------------------------------------------------------------------
    async def start(self, services: list[AppService]) -> None:
        """Resume from the stored positions (first start: from now), start the senders."""
        if self._started:
            return
        self._started = True
        self.services = [s for s in services if s.url is not None]
        if not self.services:
            return
        stored = await self.store.get_stream_positions()
        current = self._current_positions()
        self._positions = {name: stored.get(name, current[name]) for name in STREAMS}
        if set(stored) != set(STREAMS):
            await self.store.add_txns([], self._positions, self.hs.clock_ms())
        self._written_at = time.monotonic()
        client = self.hs.get(AppServiceClient)
        for s in self.services:
            self.senders[s.id] = TransactionSender(self.hs, s, self.store, client)
        self.hs.get(Notifier).listeners.append(self._on_notify)
        self._schedule_poll()
        self._schedule_backlog_log()
        for sender in self.senders.values():
            sender.kick()
        self.kick()

    def stop(self) -> None:
        for t in self._timers:
            if t.active():
                t.cancel()
        for s in self.senders.values():
            s.stop()

    def _current_positions(self) -> dict[str, int]:
        return {
            EVENTS: self.events_store.get_current_stream_token(),
            RECEIPTS: self.hs.get(ReceiptsStore).receipt_ids.current_token(),
            PRESENCE: self.hs.get(UserDataStore).presence_ids.current_token(),
            TO_DEVICE: self.hs.get(E2eeStore).to_device_ids.current_token(),
        }

    def _on_notify(self, stream_name: str, token: int, rooms, users) -> None:
        if stream_name == "typing":
            if not any(s.receive_ephemeral for s in self.services):
                return
            self._typing_rooms.update(rooms)
        self.kick()

    def _schedule_poll(self) -> None:
        def tick():
            self.kick()
            self._schedule_poll()
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(self.hs.reactor.callLater(SAFETY_POLL_S, tick))

    def _schedule_backlog_log(self) -> None:
        def tick():
            defer.ensureDeferred(self.log_backlogs()).addErrback(lambda f: logger.error("%s", f.getTraceback()))
            self._schedule_backlog_log()
        self._timers.append(self.hs.reactor.callLater(BACKLOG_LOG_S, tick))

    async def log_backlogs(self, *, always: bool = False) -> None:
        backlogs = await self.store.get_backlogs(self.senders)
        now = self.hs.clock_ms()
        for as_id, b in backlogs.items():
            sender = self.senders[as_id]
            if b.pending or always:
                age = (now - b.oldest_created_ts) / 1000 if b.oldest_created_ts else 0
                logger.info("appservice %s: %d transaction(s) waiting, oldest %.0fs old, last acknowledged "
                            "txn %d of %d, %s%s", as_id, b.pending, age, b.last_acked_txn_id, b.last_txn_id,
                            sender.state, f" (last error: {sender.last_error})" if sender.last_error else "")

    # --- one pass at a time -------------------------------------------------------------------
    def kick(self) -> None:
        if not self._started or not self.services:
            return
        self._dirty = True
        if not self._running:
            self._running = True
            defer.ensureDeferred(self._run())

    async def _run(self) -> None:
        try:
            while self._dirty:
                self._dirty = False
                try:
                    more = await self.distribute_once()
                except Exception:
                    logger.exception("appservice distributor pass failed; retrying in 1s")
                    self.hs.reactor.callLater(1.0, self.kick)
                    return
                if more:
                    self._dirty = True
        finally:
            self._running = False

    async def distribute_once(self) -> bool:
        """Read every stream past its position, build and store the transactions, advance the
        positions; True when a stream had more rows than one pass reads."""
        current = self._current_positions()
        old = dict(self._positions)
        new = dict(old)
        batches: dict[str, _Batch] = {s.id: _Batch() for s in self.services}
        more = False
        room_cache: dict[str, tuple[list[str], list[str]]] = {}

        if current[EVENTS] > old[EVENTS]:
            rows, upto = await self.store.get_timeline_event_ids(old[EVENTS], current[EVENTS], READ_BATCH)
            more |= upto < current[EVENTS]
            new[EVENTS] = upto
            await self._gather_events([eid for _, eid in rows], batches, room_cache)
        ephemeral_services = [s for s in self.services if s.receive_ephemeral]
        if ephemeral_services:
            typing_rooms, self._typing_rooms = self._typing_rooms, set()
            await self._gather_typing(sorted(typing_rooms), ephemeral_services, batches, room_cache)
            if current[RECEIPTS] > old[RECEIPTS]:
                await self._gather_receipts(old[RECEIPTS], current[RECEIPTS], ephemeral_services, batches, room_cache)
            if current[PRESENCE] > old[PRESENCE]:
                await self._gather_presence(old[PRESENCE], current[PRESENCE], ephemeral_services, batches)
        else:
            self._typing_rooms.clear()
        new[RECEIPTS] = max(old[RECEIPTS], current[RECEIPTS])
        new[PRESENCE] = max(old[PRESENCE], current[PRESENCE])
        to_device_services = [s for s in self.services if s.wants_to_device]
        if to_device_services and current[TO_DEVICE] > old[TO_DEVICE]:
            rows = await self.store.get_to_device_messages(old[TO_DEVICE], current[TO_DEVICE], READ_BATCH)
            if len(rows) >= READ_BATCH:
                new[TO_DEVICE] = rows[-1][0]
                more = True
            else:
                new[TO_DEVICE] = current[TO_DEVICE]
            for _, user_id, device_id, message in rows:
                for s in to_device_services:
                    if s.is_interested_in_user(user_id):
                        batches[s.id].to_device.append(dict(message, to_user_id=user_id, to_device_id=device_id))
        else:
            new[TO_DEVICE] = max(old[TO_DEVICE], current[TO_DEVICE])

        new_txns = [t for s in self.services for t in batches[s.id].transactions(s.id)]
        flush_due = time.monotonic() - self._written_at >= POSITION_FLUSH_S
        if new_txns or (new != old and flush_due):
            await self.store.add_txns(new_txns, new, self.hs.clock_ms())
            self._written_at = time.monotonic()
        self._positions = new
        for as_id in dict.fromkeys(t.as_id for t in new_txns):
            self.senders[as_id].kick()
        return more

    # --- interest --------------------------------------------------------------------------------
    async def _room_info(self, room_id: str, cache: dict) -> tuple[list[str], list[str]]:
        """(local aliases, joined members) of a room, once per pass."""
        info = cache.get(room_id)
        if info is None:
            aliases: list[str] = []
            if any(s.aliases for s in self.services):
                aliases = await self.hs.get(DirectoryStore).get_aliases_for_room(room_id)
            info = (aliases, await self.room_events.get_joined_members(room_id))
            cache[room_id] = info
        return info

    async def _interested_services(self, room_id: str, cache: dict, services, extra_members=()) -> set[str]:
        aliases, members = await self._room_info(room_id, cache)
        return {s.id for s in services
                if s.is_interested_in_room(room_id, aliases, members) or
                any(s.is_interested_in_user(u) for u in extra_members)}

    async def _gather_events(self, event_ids: list[str], batches: dict[str, _Batch], cache: dict) -> None:
        if not event_ids:
            return
        loaded = await self.events_store.get_events(event_ids)
        events = [loaded[e] for e in event_ids if e in loaded]
        # Users whose membership changes in this pass count as members of the room for the whole
        # pass, so a service user joining and leaving within one pass still sees what it was in.
        changed: dict[str, set[str]] = {}
        for e in events:
            if e.type == "m.room.member" and isinstance(e.state_key, str):
                changed.setdefault(e.room_id, set()).add(e.state_key)
        room_interest = {}
        for room_id in dict.fromkeys(e.room_id for e in events):
            room_interest[room_id] = await self._interested_services(room_id, cache, self.services,
                                                                     changed.get(room_id, ()))
        chosen: list[tuple[object, list[str]]] = []
        for e in events:
            targets = [s.id for s in self.services
                       if s.is_interested_in_event(e.type, e.sender, e.state_key, e.room_id,
                                                   s.id in room_interest[e.room_id])]
            if targets:
                chosen.append((e, targets))
        if not chosen:
            return
        serialized = await self.hs.get(EventSerializer).serialize_events([e for e, _ in chosen])
        for (_, targets), body in zip(chosen, serialized):
            for as_id in targets:
                batches[as_id].events.append(body)

    async def _gather_typing(self, room_ids: list[str], services, batches, cache) -> None:
        from homeserver.ephemeral.typing import TypingService
        typing = self.hs.get(TypingService)
        for room_id in room_ids:
            interested = await self._interested_services(room_id, cache, services)
            if not interested:
                continue
            edu = {"type": "m.typing", "room_id": room_id, "content": {"user_ids": typing.typing_users(room_id)}}
            for as_id in interested:
                batches[as_id].ephemeral.append(edu)

    async def _gather_receipts(self, from_id: int, to_id: int, services, batches, cache) -> None:
        from homeserver.ephemeral.receipts import READ_PRIVATE
        rows = await self.hs.get(ReceiptsStore).get_receipts_since(from_id, to_id)
        by_room: dict[str, list] = {}
        for r in rows:
            by_room.setdefault(r.room_id, []).append(r)
        for room_id, room_rows in by_room.items():
            interested = await self._interested_services(room_id, cache, services)
            for s in services:
                if s.id not in interested:
                    continue
                content: dict = {}
                for r in room_rows:
                    if r.receipt_type == READ_PRIVATE and not s.is_interested_in_user(r.user_id):
                        continue  # "Private read receipts MUST only be sent for users matching"
                    data = dict(r.data)
                    if r.thread_id:
                        data["thread_id"] = r.thread_id
                    content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
                if content:
                    batches[s.id].ephemeral.append({"type": "m.receipt", "room_id": room_id, "content": content})

    async def _gather_presence(self, from_id: int, to_id: int, services, batches) -> None:
        from homeserver.client.presence import PresenceService, PresenceState, presence_content
        from homeserver.client.profile import ProfileService
        presence = self.hs.get(PresenceService)
        if not presence.enabled:
            return
        rows = await self.hs.get(UserDataStore).get_presence_changes(from_id, to_id)
        if not rows:
            return
        profiles = await self.hs.get(ProfileService).get_profiles([r.user_id for r in rows])
        now = self.hs.clock_ms()
        for r in rows:
            wanted = [s for s in services if s.is_interested_in_user(r.user_id)]
            rest = [s for s in services if s not in wanted]
            if rest:
                sharing = await presence.visible_users(r.user_id)
                wanted += [s for s in rest if any(s.is_interested_in_user(u) for u in sharing)]
            if not wanted:
                continue
            state = PresenceState(r.user_id, r.state, r.status_msg, r.last_active_ts)
            edu = {"type": "m.presence", "sender": r.user_id,
                   "content": presence_content(state, now, profiles.get(r.user_id))}
            for s in wanted:
                batches[s.id].ephemeral.append(edu)

    # --- admin view -----------------------------------------------------------------------------
    async def status(self) -> list[dict]:
        """Per service: outbox backlog and delivery state (for the admin endpoint and logs)."""
        backlogs = await self.store.get_backlogs(self.senders)
        now = self.hs.clock_ms()
        out = []
        for s in self.services:
            b = backlogs[s.id]
            sender = self.senders[s.id]
            out.append({
                "id": s.id, "url": s.url, "sender": s.sender, "state": sender.state,
                "pending_transactions": b.pending,
                "oldest_pending_age_ms": now - b.oldest_created_ts if b.oldest_created_ts else 0,
                "last_txn_id": b.last_txn_id, "last_acked_txn_id": b.last_acked_txn_id,
                "last_acked_ts": b.last_acked_ts, "backoff_s": sender.backoff_s,
                "last_error": sender.last_error, "sent_transactions": sender.sent_count,
            })
        return out


class TransactionSender:
    """Sends one service's outbox in order (see the module docstring)."""

    def __init__(self, hs, service: AppService, store: AppServiceStore, client: AppServiceClient):
        self.hs = hs
        self.service = service
        self.store = store
        self.client = client
        self.backoff_s = 0.0
        self.state = "up"
        self.last_error: str | None = None
        self.sent_count = 0
        self._running = False
        self._again = False
        self._sleep: defer.Deferred | None = None
        self._sleep_timer = None
        self._stopped = False
        self._last_wake = 0.0

    def kick(self) -> None:
        """New transactions may be waiting: send them unless already sending (or backing off)."""
        if self._stopped:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        defer.ensureDeferred(self._run())

    def service_seen(self) -> None:
        """The service talked to us: end a backoff wait early (at most once a second)."""
        now = time.monotonic()
        if self._sleep is not None and now - self._last_wake >= 1.0:
            self._last_wake = now
            self._wake()

    def stop(self) -> None:
        self._stopped = True
        self._wake()

    def _wake(self) -> None:
        if self._sleep_timer is not None and self._sleep_timer.active():
            self._sleep_timer.cancel()
        d, self._sleep = self._sleep, None
        if d is not None and not d.called:
            d.callback(None)

    async def _pause(self, seconds: float) -> None:
        self._sleep = defer.Deferred()
        self._sleep_timer = self.hs.reactor.callLater(seconds, self._wake)
        await self._sleep

    async def _run(self) -> None:
        try:
            while not self._stopped:
                self._again = False
                try:
                    pending = await self.store.get_pending_txns(self.service.id, 1)
                except Exception:
                    logger.exception("appservice %s: reading the outbox failed", self.service.id)
                    await self._pause(1.0)
                    continue
                if not pending:
                    if self._again:
                        continue
                    break
                if await self._send(pending[0]):
                    await self.store.complete_txn(self.service.id, pending[0].txn_id, self.hs.clock_ms())
                else:
                    await self._pause(self.backoff_s)
        except Exception:
            logger.exception("appservice %s: sender stopped unexpectedly; restarting in 5s", self.service.id)
            self.hs.reactor.callLater(5.0, self.kick)
        finally:
            self._running = False

    async def _send(self, txn: PendingTxn) -> bool:
        s = self.service
        try:
            resp = await self.client.push_transaction(s, txn.txn_id, txn.body)
            error = None if resp.ok else f"HTTP {resp.code}: {resp.body[:200].decode('utf-8', 'replace')}"
        except AppServiceUnreachable as e:
            error = e.reason
        if error is None:
            if self.state != "up":
                logger.info("appservice %s is reachable again; delivered transaction %d", s.id, txn.txn_id)
            self.state, self.backoff_s, self.last_error = "up", 0.0, None
            self.sent_count += 1
            return True
        self.backoff_s = min(MAX_BACKOFF_S, max(1.0, self.backoff_s * 2))
        self.last_error = error
        if self.state == "up":
            logger.warning("appservice %s: transaction %d (%d events, %d ephemeral) failed: %s; retrying "
                           "with backoff", s.id, txn.txn_id, txn.event_count, txn.ephemeral_count, error)
        else:
            logger.info("appservice %s: transaction %d still failing (%s); next try in %.0fs",
                        s.id, txn.txn_id, error, self.backoff_s)
        self.state = "down"
        return False
