"""Per-destination transaction queues (server-server-api.md "Transactions", "PDUs", "EDUs").

``hs.get(FederationSender)``:

* ``register(hs)`` (called once at start-up by federation/api/seams.py) installs the pipeline
  persist hook: every local event that enters a room's timeline is queued, *in the same database
  transaction that persists it*, for each other server with joined members in the room (before
  the event, plus the server of a user the event joins). Remote events the resident side relays
  (send_join/send_leave/send_knock) are marked with :meth:`relay_event` first.
* ``queue_pdu(event_id, destinations)`` / ``queue_edu(destination, edu_type, content, key=None)``
  queue in the database; ``send_ephemeral_edu(destination, edu_type, content, key)`` keeps an EDU
  in memory only (typing, presence: worthless after a restart).
* ``start()`` wakes every destination with queued rows (catch-up after a restart).
* send-to-device messages for remote users are read from the e2ee outbox (``e2e_device_outbox``,
  written by homeserver/e2ee/to_device.py) as ``m.direct_to_device`` EDUs and deleted once sent.

Each destination has one sending loop: up to 50 PDUs and 100 EDUs per ``PUT /send/{txnId}``,
oldest first; rows are deleted once the destination accepted the transaction (2xx). A destination
that does not answer (or answers 5xx/429) backs off exponentially from :data:`MIN_RETRY_MS` up to
:data:`MAX_RETRY_MS`, persisted; other destinations are not affected. A 4xx answer drops the batch
(it would never be accepted). An authenticated request *from* a backed-off server resets its
back-off (:meth:`on_inbound_request`), as Synapse does.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from twisted.internet import defer

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.events_store import EventsStore

from ..transactions_store import DestinationState, TransactionsStore

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
MIN_RETRY_MS = 5_000
MAX_RETRY_MS = 3600_000
RETRY_MULTIPLIER = 2
SEND_TIMEOUT_S = 60.0


def backoff_interval_ms(previous_ms: int, rng=random.random) -> int:
    """The next retry interval after a failure: MIN_RETRY_MS first, then ×2 (±20% jitter) up to
    MAX_RETRY_MS (pure)."""
    if previous_ms <= 0:
        return MIN_RETRY_MS
    nxt = int(previous_ms * RETRY_MULTIPLIER * (0.8 + 0.4 * rng()))
    return max(MIN_RETRY_MS, min(nxt, MAX_RETRY_MS))


class _Destination:
    __slots__ = ("name", "running", "again", "failures", "interval_ms", "retry_at", "timer")

    def __init__(self, name: str):
        self.name = name
        self.running = False
        self.again = False
        self.failures = 0
        self.interval_ms = 0
        self.retry_at = 0
        self.timer = None


class FederationSender:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(TransactionsStore)
        self.events_store = hs.get(EventsStore)
        self._dests: dict[str, _Destination] = {}
        self._ephemeral: dict[str, dict[Any, dict]] = {}
        self._relay: dict[str, set[str]] = {}
        self._txn_counter = hs.clock_ms()
        self._started = False
        self._stopped = False
        self.transactions_sent = 0
        self._idle_waiters: list[defer.Deferred] = []
        # room -> (the joined-members list it was computed from, the other servers in it)
        self._room_servers: dict[str, tuple[list[str], frozenset[str]]] = {}

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    # --- wiring -------------------------------------------------------------------------------
    def register(self) -> None:
        self.hs.get(RoomEventService).persist_hooks.append(self._persist_hook)

    async def start(self) -> None:
        """Load back-off state and wake every destination that has something queued."""
        for name, st in (await self.store.get_destination_states()).items():
            d = self._dest(name)
            d.failures, d.interval_ms, d.retry_at = st.failure_count, st.retry_interval_ms, st.retry_at_ts
        self._started = True
        for name in await self.store.get_destinations_with_pending():
            self.wake(name)

    def stop(self) -> None:
        """Stop scheduling (tests shutting a server down in-process)."""
        self._stopped = True
        for d in self._dests.values():
            if d.timer is not None and d.timer.active():
                d.timer.cancel()

    # --- queueing -------------------------------------------------------------------------------
    def relay_event(self, event_id: str, exclude: Iterable[str]) -> None:
        """Send this remote event on to the room's other servers when it is persisted (the
        resident side of send_join/send_leave/send_knock); ``exclude`` the server it came from."""
        self._relay[event_id] = set(exclude)

    def forget_relay(self, event_id: str) -> None:
        self._relay.pop(event_id, None)

    async def servers_in_room(self, room_id: str) -> set[str]:
        """Servers with joined members in the room (us excluded). Computed again only when the
        room's cached member list is replaced (a membership change), not for every event."""
        members = await self.hs.get(RoomEventService).get_joined_members(room_id)
        known = self._room_servers.get(room_id)
        if known is not None and known[0] is members:
            return set(known[1])
        out = set()
        for m in members:
            try:
                out.add(ids.get_domain(m))
            except ValueError:
                continue
        out.discard(self.hs.hostname)
        if len(self._room_servers) >= 20_000:
            self._room_servers.clear()
        self._room_servers[room_id] = (members, frozenset(out))
        return out

    async def _persist_hook(self, event: Event, state_after: Mapping) -> Any:
        relay_exclude = self._relay.pop(event.event_id, None)
        if relay_exclude is None and not _is_from(event.sender, self.hs.hostname):
            return None
        dests = await self.servers_in_room(event.room_id)
        if event.type == "m.room.member" and event.membership == "join" and isinstance(event.state_key, str):
            try:
                dests.add(ids.get_domain(event.state_key))
            except ValueError:
                pass
        dests.discard(self.hs.hostname)
        dests -= relay_exclude or set()
        if not dests:
            return None
        dests_sorted = sorted(dests)
        qids = self.store.queue_ids.allocate(len(dests_sorted))
        self.store.queue_ids.finish(qids)
        rows = [(d, q, event.event_id) for d, q in zip(dests_sorted, qids)]

        def write(txn, item) -> None:
            TransactionsStore.queue_pdus_txn(txn, rows)
            txn.call_after_commit(self.wake_many, dests_sorted)
        return write

    async def queue_pdu(self, event_id: str, destinations: Iterable[str]) -> None:
        dests = sorted(set(destinations) - {self.hs.hostname})
        if not dests:
            return
        qids = self.store.queue_ids.allocate(len(dests))
        self.store.queue_ids.finish(qids)
        await self.store.queue_pdus([(d, q, event_id) for d, q in zip(dests, qids)])
        self.wake_many(dests)

    async def queue_edu(self, destination: str, edu_type: str, content: dict, key: str | None = None) -> None:
        """Queue an EDU persistently; a keyed one replaces the destination's queued EDU with the
        same key."""
        if destination == self.hs.hostname:
            return
        qids = self.store.queue_ids.allocate(1)
        self.store.queue_ids.finish(qids)
        await self.store.queue_edus([(destination, qids[0], edu_type, key, content)])
        self.wake(destination)

    def send_ephemeral_edu(self, destination: str, edu_type: str, content: dict, key: Any = None) -> None:
        """Send an EDU soon, keeping it in memory only; a newer one with the same key replaces it."""
        if destination == self.hs.hostname:
            return
        pending = self._ephemeral.setdefault(destination, {})
        pending[(edu_type, key) if key is not None else (edu_type, object())] = \
            {"edu_type": edu_type, "content": content}
        self.wake(destination)

    # --- back-off --------------------------------------------------------------------------------
    def on_inbound_request(self, origin: str) -> None:
        """A server we had given up on for a while talks to us again: retry it now."""
        d = self._dests.get(origin)
        if d is None or d.failures == 0:
            return
        d.failures, d.interval_ms, d.retry_at = 0, 0, 0
        if d.timer is not None and d.timer.active():
            d.timer.cancel()
        d.timer = None
        defer.ensureDeferred(self._save_ok(origin))
        self.wake(origin)

    async def _save_ok(self, destination: str) -> None:
        try:
            await self.store.set_destination_ok(destination, self.hs.clock_ms())
        except Exception:
            logger.exception("saving the back-off state of %s failed", destination)

    # --- sending -------------------------------------------------------------------------------
    def wake_many(self, destinations: Iterable[str]) -> None:
        for d in destinations:
            self.wake(d)

    def _dest(self, name: str) -> _Destination:
        d = self._dests.get(name)
        if d is None:
            d = self._dests[name] = _Destination(name)
        return d

    def wake(self, destination: str) -> None:
        """Make sure the destination's loop runs (now, or when its back-off ends)."""
        if self._stopped or not self._started:
            return
        d = self._dest(destination)
        if d.running:
            d.again = True
            return
        delay_ms = d.retry_at - self.hs.clock_ms()
        if delay_ms > 0:
            if d.timer is None or not d.timer.active():
                d.timer = self.hs.reactor.callLater(delay_ms / 1000.0, self.wake, destination)
            return
        d.running = True
        defer.ensureDeferred(self._run(d))

    async def _run(self, d: _Destination) -> None:
        try:
            while not self._stopped:
                d.again = False
                sent = await self._send_one(d)
                if not sent and not d.again:
                    break
                if d.retry_at > self.hs.clock_ms():
                    break
        except Exception:
            logger.exception("federation sender loop for %s failed", d.name)
        finally:
            d.running = False
        if d.again and not self._stopped and d.retry_at <= self.hs.clock_ms():
            self.wake(d.name)
        elif d.retry_at > self.hs.clock_ms():
            self.wake(d.name)  # schedules the retry timer
        self._check_idle()

    async def _send_one(self, d: _Destination) -> bool:
        """Send one transaction; False when there was nothing to send or it failed."""
        from ..client import FederationError, FederationUnreachable
        ephemeral = self._ephemeral.pop(d.name, {})
        eph_items = list(ephemeral.items())[:MAX_EDUS_PER_TXN]
        for k, _ in eph_items:
            ephemeral.pop(k)
        if ephemeral:
            self._ephemeral[d.name] = ephemeral
            d.again = True
        pdus, edus = await self.store.get_pending(d.name, MAX_PDUS_PER_TXN, MAX_EDUS_PER_TXN - len(eph_items))
        room = MAX_EDUS_PER_TXN - len(eph_items) - len(edus)
        to_device = await self._e2ee_store().get_outbox(d.name, 0, room) if room > 0 else []
        if not pdus and not edus and not eph_items and not to_device:
            return False
        events = await self.events_store.get_events([e for _, e in pdus], allow_rejected=True)
        body = {
            "origin": self.hs.hostname,
            "origin_server_ts": self.hs.clock_ms(),
            "pdus": [_outgoing_pdu(events[e]) for _, e in pdus if e in events],
            "edus": [{"edu_type": e.edu_type, "content": e.content} for e in edus]
                    + [v for _, v in eph_items]
                    + [{"edu_type": "m.direct_to_device",
                        "content": {"sender": sender, "type": etype, "message_id": mid, "messages": msgs}}
                       for _, sender, etype, mid, msgs in to_device],
        }
        self._txn_counter += 1
        txn_id = str(self._txn_counter)
        path = "/_matrix/federation/v1/send/" + quote(txn_id, safe="")
        try:
            resp = await self.client.put_json(d.name, path, body, timeout_s=SEND_TIMEOUT_S)
        except FederationError as e:
            if e.code >= 500 or e.code == 429:
                await self._failed(d, f"{e.code} {e.errcode}", eph_items)
                return False
            logger.warning("%s refused transaction %s (%s %s): dropping %d PDUs and %d EDUs",
                           d.name, txn_id, e.code, e.errcode, len(pdus), len(edus))
            resp = {}
        except FederationUnreachable as e:
            await self._failed(d, e.reason, eph_items)
            return False
        for event_id, result in (resp.get("pdus") or {}).items() if isinstance(resp, dict) else ():
            if isinstance(result, dict) and result.get("error"):
                logger.info("%s did not accept %s: %s", d.name, event_id, result.get("error"))
        await self.store.delete_sent(d.name, [q for q, _ in pdus], [e.queue_id for e in edus])
        if to_device:
            await self._e2ee_store().delete_outbox(d.name, max(row[0] for row in to_device))
        self.transactions_sent += 1
        if d.failures:
            d.failures, d.interval_ms, d.retry_at = 0, 0, 0
            await self._save_ok(d.name)
        return True

    async def _failed(self, d: _Destination, reason: str, eph_items: list) -> None:
        d.failures += 1
        d.interval_ms = backoff_interval_ms(d.interval_ms)
        d.retry_at = self.hs.clock_ms() + d.interval_ms
        logger.info("sending to %s failed (%s); retrying in %.1fs", d.name, reason, d.interval_ms / 1000)
        # Presence is worth re-sending; typing is stale by then.
        keep = {k: v for k, v in eph_items if v["edu_type"] != "m.typing"}
        if keep:
            pending = self._ephemeral.setdefault(d.name, {})
            for k, v in keep.items():
                pending.setdefault(k, v)
        try:
            await self.store.set_destination_failed(
                DestinationState(d.name, d.failures, d.interval_ms, d.retry_at))
        except Exception:
            logger.exception("saving the back-off state of %s failed", d.name)

    def _e2ee_store(self):
        from homeserver.storage.e2ee_store import E2eeStore
        return self.hs.get(E2eeStore)

    # --- tests -------------------------------------------------------------------------------------
    def _check_idle(self) -> None:
        if any(d.running for d in self._dests.values()):
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for w in waiters:
            w.callback(None)


def _outgoing_pdu(event: Event) -> dict:
    """The PDU as sent: the stored JSON without local-only ``unsigned`` data."""
    pdu = dict(event.pdu)
    unsigned = pdu.get("unsigned")
    if isinstance(unsigned, dict):
        kept = {k: v for k, v in unsigned.items() if k in ("invite_room_state", "knock_room_state", "age")}
        if kept:
            pdu["unsigned"] = kept
        else:
            pdu.pop("unsigned", None)
    return pdu


def _is_from(user_id: str, hostname: str) -> bool:
    try:
        return ids.get_domain(user_id) == hostname
    except ValueError:
        return False
