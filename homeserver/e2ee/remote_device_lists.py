"""Cached device lists of remote users (server-server-api.md "Device Management";
end_to_end_encryption.md "Tracking the device list for a user").

A remote user is *tracked* while they are joined to a room where a local user is joined. For a
tracked user this server holds a copy of their device list — devices, device keys, master and
self-signing keys — with the remote ``stream_id`` of the last update applied, so /keys/query is
answered without a federation request. As Synapse does, the list is fetched lazily: at the first
/keys/query for the user (:meth:`RemoteDeviceListService.query_cached`), or when an update EDU
arrives for a tracked user whose list is not held yet.

``m.device_list_update`` (:meth:`on_device_list_update`) applies incrementally when every
``prev_id`` is the stream_id held or one applied since the list was fetched (the EDU schema: "If
the receiving server does not recognise any of the prev_ids, it means an EDU has been lost"); an
empty ``prev_id`` (as Synapse: resync), an unknown one or a list not held yet marks the list stale
and resyncs it with ``GET /user/devices/{userId}`` in the background — EDU processing never waits
for the remote server. A list is stale while it is being fetched, so an update arriving meanwhile
is not applied to it but asks for one more fetch after the running one (whose answer may predate
the update). A failed resync leaves the list stale (never served); :meth:`retry_stale` retries
every :data:`RESYNC_RETRY_S`, and the next /keys/query tries again (a server that did not answer
is listed in ``failures``; one that answered with an error is asked with ``/user/keys/query``).
``m.signing_key_update`` replaces the held cross-signing keys.

When a held list changes, a row in the device-list stream (DeviceListService.record_changes)
puts the user in ``device_lists.changed`` of local users sharing a room with them (/sync,
/keys/changes). When the last shared room goes, the list is dropped (membership changes reach
:meth:`_on_notify` through the notifier); ``device_lists.left`` comes from the membership change
itself (DeviceListService.get_device_list_changes).

The federation side fills the seam :attr:`RemoteDeviceListService.federation`: an object with
``async get_user_devices(destination, user_id, timeout_ms) -> dict`` (the remote
user_devices.yaml body).
"""
from __future__ import annotations

import copy
import logging
from typing import Iterable

from twisted.internet import defer, task
from twisted.python.failure import Failure

from homeserver.protocol.ids import domain_or_none
from homeserver.storage.remote_devices_store import DeviceUpdate, RemoteDeviceList, RemoteDevicesStore

from .device_lists import DeviceListService

logger = logging.getLogger(__name__)

#: Seconds between retries of stale lists (Synapse retries every 30 s).
RESYNC_RETRY_S = 30.0
RESYNC_TIMEOUT_MS = 30_000
#: Stream IDs of applied updates remembered per user, to ignore an EDU delivered twice.
SEEN_PER_USER = 50
MAX_DEVICES = 10_000


def stream_id_text(value) -> str | None:
    """A remote stream_id as held: integers (the schema's type) and strings (some servers send
    them) become text; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def parse_user_devices(user_id: str, body) -> tuple[str | None, dict[str, tuple[dict | None, str | None]],
                                                       dict[str, dict]]:
    """(stream_id, {device: (keys, display name)}, {key_type: key}) of a user_devices.yaml answer;
    ValueError if it is not about ``user_id`` or malformed."""
    if not isinstance(body, dict) or body.get("user_id") != user_id:
        raise ValueError("the answer is not about the user asked")
    raw_devices = body.get("devices", [])
    if not isinstance(raw_devices, list) or len(raw_devices) > MAX_DEVICES:
        raise ValueError("'devices' must be a list")
    devices: dict[str, tuple[dict | None, str | None]] = {}
    for entry in raw_devices:
        if not isinstance(entry, dict) or not isinstance(entry.get("device_id"), str):
            continue
        device_id = entry["device_id"]
        devices[device_id] = (_device_keys(user_id, device_id, entry.get("keys")),
                              _display_name(entry.get("device_display_name")))
    cross = {}
    for field, key_type in (("master_key", "master"), ("self_signing_key", "self_signing")):
        key = _cross_signing_key(user_id, body.get(field))
        if key is not None:
            cross[key_type] = key
    return stream_id_text(body.get("stream_id")), devices, cross


def _device_keys(user_id: str, device_id: str, keys) -> dict | None:
    """Device keys of this device (without ``unsigned``), or None when absent or about another."""
    if not isinstance(keys, dict) or keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return None
    return {k: v for k, v in keys.items() if k != "unsigned"}


def _cross_signing_key(user_id: str, key) -> dict | None:
    if not isinstance(key, dict) or key.get("user_id") != user_id or not isinstance(key.get("keys"), dict):
        return None
    return key


def _display_name(name) -> str | None:
    return name if isinstance(name, str) else None


class RemoteDeviceListService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(RemoteDevicesStore)
        self.device_lists = hs.get(DeviceListService)
        self.federation = None  # seam, see the module docstring
        self._locks: dict[str, defer.DeferredLock] = {}
        self._resyncs: dict[str, defer.Deferred] = {}  # resyncs in flight, shared by their callers
        self._again: set[str] = set()  # users to resync once more when their running fetch ends
        self._unreachable: dict[str, str] = {}  # user -> why their server did not answer the last fetch
        self._background: set[defer.Deferred] = set()
        self._seen: dict[str, list[str]] = {}
        self._sweep_rooms: set[str] = set()
        self._sweep_call = None
        self._loop: task.LoopingCall | None = None
        from homeserver.sync.notifier import Notifier
        hs.get(Notifier).listeners.append(self._on_notify)

    def start(self) -> None:
        """Retry stale lists every RESYNC_RETRY_S, and drop lists of users no longer tracked
        (called once at start-up)."""
        if self._loop is None:
            self._in_background(self.sweep_held())
            self._loop = task.LoopingCall(lambda: defer.ensureDeferred(self.retry_stale()))
            self._loop.clock = self.hs.reactor
            self._loop.start(RESYNC_RETRY_S, now=False).addErrback(
                lambda f: logger.error("device-list resync loop stopped: %s", f.value))
            self.hs.reactor.addSystemEventTrigger("before", "shutdown", self.stop)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    # --- who is tracked ---------------------------------------------------------------------------
    def _is_remote(self, user_id) -> bool:
        domain = domain_or_none(user_id)
        return domain is not None and domain != self.hs.hostname

    async def tracked(self, user_ids: Iterable[str]) -> set[str]:
        """Of these users, the remote ones sharing a room with a local user."""
        remote = [u for u in user_ids if self._is_remote(u)]
        return await self.store.users_sharing_room_with_local(remote, self.hs.hostname)

    # --- /keys/query --------------------------------------------------------------------------------
    async def query_cached(self, query: dict[str, list[str]], timeout_ms: int = RESYNC_TIMEOUT_MS
                           ) -> tuple[dict, dict[str, list[str]]]:
        """Answer what the cache can of a /keys/query for remote users: (``{device_keys,
        master_keys, self_signing_keys, failures}`` for tracked users whose list is held or could
        be fetched now — ``failures`` naming servers that did not answer the fetch —, the rest of
        the query for ``/user/keys/query``: untracked users, and users whose server answered the
        fetch with an error)."""
        tracked = await self.tracked(query)
        lists = await self.store.get_fresh_lists(tracked)
        missing = sorted(tracked - lists.keys())
        answer: dict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "failures": {}}
        if missing:
            ok = await defer.gatherResults([defer.ensureDeferred(self.resync(u, timeout_ms)) for u in missing])
            lists.update(await self.store.get_fresh_lists([u for u, fresh in zip(missing, ok) if fresh]))
            for user_id in missing:
                error = self._unreachable.pop(user_id, None)
                if user_id not in lists and error is not None:  # asking again would wait as long
                    answer["failures"][domain_or_none(user_id)] = {"status": 503, "message": error}
        for user_id, held in lists.items():
            answer["device_keys"][user_id] = _device_keys_answer(held, query[user_id])
            for key_type, field in (("master", "master_keys"), ("self_signing", "self_signing_keys")):
                if key_type in held.cross_signing:
                    answer[field][user_id] = held.cross_signing[key_type]
        rest = {u: d for u, d in query.items() if u not in lists and domain_or_none(u) not in answer["failures"]}
        return answer, rest

    # --- EDUs ---------------------------------------------------------------------------------------
    async def on_device_list_update(self, origin: str, content: dict) -> None:
        """m.device_list_update from ``origin`` (checked to be the user's server)."""
        user_id, device_id = content.get("user_id"), content.get("device_id")
        stream_id = stream_id_text(content.get("stream_id"))
        if domain_or_none(user_id) != origin or not self._is_remote(user_id) or not isinstance(device_id, str) \
                or stream_id is None:
            return
        if not await self.tracked([user_id]):
            return  # nobody here shares a room with them (Synapse ignores these too)
        prev = content.get("prev_id")
        prev_ids = [stream_id_text(p) for p in prev] if isinstance(prev, list) else []
        keys = content.get("keys")
        update = DeviceUpdate(device_id, stream_id, _device_keys(user_id, device_id, keys),
                              _display_name(content.get("device_display_name")), content.get("deleted") is True)
        bad_keys = keys is not None and update.keys is None
        applied = await self._with_lock(user_id, self._apply_update, user_id, update, prev_ids, bad_keys)
        if applied:
            await self.device_lists.record_changes([(user_id, device_id, None)])

    async def _apply_update(self, user_id: str, update: DeviceUpdate, prev_ids: list, bad_keys: bool) -> bool:
        """Under the user's lock: apply if the EDU follows the held list, else resync in the
        background. True if the held list changed."""
        state = (await self.store.get_list_states([user_id])).get(user_id)
        seen = self._seen.get(user_id, [])
        if state is not None and not state.stale and (update.stream_id == state.stream_id
                                                      or update.stream_id in seen):
            return False  # delivered again
        # Every prev_id must name an update applied to this list: the one it is at, or one of
        # those applied since the last fetch (prev_id lists the updates "not referred to already").
        follows = (state is not None and not state.stale and state.stream_id is not None and prev_ids
                   and all(p == state.stream_id or p in seen for p in prev_ids) and not bad_keys)
        if follows and await self.store.apply_updates(user_id, state.stream_id, [update], self.hs.clock_ms()):
            seen = self._seen.setdefault(user_id, [])
            seen.append(update.stream_id)
            del seen[:-SEEN_PER_USER]
            return True
        await self.store.mark_stale(user_id, self.hs.clock_ms())
        self._resync_soon(user_id)
        return False

    async def on_signing_key_update(self, origin: str, content: dict) -> None:
        """m.signing_key_update: new master and/or self-signing key of a user of ``origin``."""
        user_id = content.get("user_id")
        if domain_or_none(user_id) != origin or not self._is_remote(user_id):
            return
        if not await self.tracked([user_id]):
            return
        keys = {}
        for field, key_type in (("master_key", "master"), ("self_signing_key", "self_signing")):
            key = _cross_signing_key(user_id, content.get(field))
            if key is not None:
                keys[key_type] = key
        held = (await self.store.get_list_states([user_id])).get(user_id)
        changed = await self._with_lock(user_id, self.store.set_cross_signing, user_id, keys)
        if user_id in self._resyncs:  # the answer being fetched may predate these keys
            self._again.add(user_id)
        if changed or held is None:  # not held: clients re-query, which fetches the list
            await self.device_lists.record_changes([(user_id, None, None)])

    # --- resync ---------------------------------------------------------------------------------------
    async def resync(self, user_id: str, timeout_ms: int = RESYNC_TIMEOUT_MS) -> bool:
        """Fetch the user's whole list (GET /user/devices) and hold it; True when the list is now
        fresh. One fetch per user at a time: concurrent callers share it."""
        running = self._resyncs.get(user_id)
        if running is None:
            running = self._start_resync(user_id, timeout_ms)
        mine: defer.Deferred = defer.Deferred()

        def forward(result):
            mine.callback(result)
            return result
        running.addCallback(forward)
        return await mine

    def _resync_soon(self, user_id: str) -> None:
        """Resync in the background; if a fetch is running, once more after it (its answer may
        predate the update that asked for this one)."""
        if user_id in self._resyncs:
            self._again.add(user_id)
        else:
            self._in_background(self.resync(user_id))

    def _start_resync(self, user_id: str, timeout_ms: int) -> defer.Deferred:
        running = self._resyncs[user_id] = defer.ensureDeferred(self._resync(user_id, timeout_ms))

        def done(result):
            self._resyncs.pop(user_id, None)
            if isinstance(result, Failure):
                logger.error("device list resync of %s failed: %s", user_id, result.value)
                result = False
            if user_id in self._again:
                self._again.discard(user_id)
                self._in_background(self.resync(user_id))
            return result
        running.addBoth(done)
        return running

    async def _resync(self, user_id: str, timeout_ms: int) -> bool:
        if self.federation is None:
            return False
        # Stale while fetching: an update arriving meanwhile is not applied to the list the
        # answer will replace, it asks for another fetch (_resync_soon).
        await self._with_lock(user_id, self.store.mark_stale, user_id, self.hs.clock_ms())
        try:
            body = await self.federation.get_user_devices(domain_or_none(user_id), user_id, timeout_ms)
            stream_id, devices, cross = parse_user_devices(user_id, body)
        except Exception as e:  # unreachable, an error answer or garbage: stays stale, retried later
            logger.info("device list resync of %s failed: %s", user_id, e)
            if not isinstance(e, ValueError) and not hasattr(e, "code"):  # no answer (no HTTP status)
                self._unreachable[user_id] = str(e) or type(e).__name__
            return False
        changed = await self._with_lock(user_id, self.store.replace_list, user_id, stream_id, devices, cross,
                                        self.hs.clock_ms())
        self._seen[user_id] = [stream_id] if stream_id is not None else []
        self._unreachable.pop(user_id, None)
        if changed:
            await self.device_lists.record_changes([(user_id, None, None)])
        return True

    async def retry_stale(self) -> None:
        """Resync stale lists of tracked users; drop those no longer tracked."""
        stale = await self.store.get_stale_users()
        if not stale:
            return
        tracked = await self.tracked(stale)
        await self.drop([u for u in stale if u not in tracked])
        for user_id in sorted(tracked):
            await self.resync(user_id)

    # --- no longer tracked ------------------------------------------------------------------------------
    async def drop(self, user_ids: Iterable[str]) -> None:
        user_ids = list(user_ids)
        for user_id in user_ids:
            self._seen.pop(user_id, None)
        await self.store.drop_lists(user_ids)

    async def sweep_held(self) -> None:
        """Drop every held list whose user no longer shares a room with a local user."""
        held = await self.store.get_held_users()
        tracked = await self.tracked(held)
        for user_id in held:
            if user_id not in tracked:
                await self._with_lock(user_id, self.drop, [user_id])

    def _on_notify(self, stream_name: str, token: int, rooms, users) -> None:
        """Notifier listener: a membership change (an "events" notification naming users) may end
        the tracking of held users of those rooms; checked shortly after, in one batch."""
        if stream_name != "events" or not users or not rooms:
            return
        self._sweep_rooms.update(rooms)
        if self._sweep_call is None:
            self._sweep_call = self.hs.reactor.callLater(0.1, self._start_sweep)

    def _start_sweep(self) -> None:
        self._sweep_call = None
        rooms, self._sweep_rooms = sorted(self._sweep_rooms), set()
        self._in_background(self.sweep_rooms(rooms))

    async def sweep_rooms(self, room_ids: Iterable[str]) -> None:
        """Drop the held lists of users (ever) in these rooms who no longer share a room with a
        local user."""
        held = await self.store.held_users_in_rooms(room_ids)
        if not held:
            return
        tracked = await self.tracked(held)
        gone = [u for u in held if u not in tracked]
        for user_id in gone:
            await self._with_lock(user_id, self.drop, [user_id])

    # --- helpers --------------------------------------------------------------------------------------
    async def _with_lock(self, user_id: str, fn, *args):
        """Run ``await fn(*args)`` with no other change of the user's held list running."""
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = defer.DeferredLock()
        await lock.acquire()
        try:
            return await fn(*args)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting and self._locks.get(user_id) is lock:
                del self._locks[user_id]

    def _in_background(self, coro) -> None:
        d = defer.ensureDeferred(coro)
        self._background.add(d)

        def done(result):
            self._background.discard(d)
            if isinstance(result, Failure):
                logger.error("device-list background work failed: %s", result.value)
            return None
        d.addBoth(done)

    async def wait_idle(self) -> None:
        """Wait for background resyncs and sweeps (tests)."""
        while self._background or self._sweep_call is not None:
            if self._background:
                await defer.DeferredList(list(self._background))
            else:
                d: defer.Deferred = defer.Deferred()
                self.hs.reactor.callLater(0.15, d.callback, None)
                await d


def _device_keys_answer(held: RemoteDeviceList, wanted: list[str]) -> dict:
    """The /keys/query ``device_keys`` entry of a held list: devices with keys (those asked, or
    all), ``unsigned.device_display_name`` added as for local devices."""
    out = {}
    for device_id, (keys, name) in sorted(held.devices.items()):
        if keys is None or (wanted and device_id not in wanted):
            continue
        keys = copy.copy(keys)
        keys["unsigned"] = {"device_display_name": name} if name is not None else {}
        out[device_id] = keys
    return out
