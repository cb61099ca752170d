"""RemoteDeviceListService rules over a real store (both engines) and a fake remote server: which
m.device_list_update EDUs apply, which resync, what /keys/query answers from the cache."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from homeserver.e2ee.device_lists import DeviceListService
from homeserver.e2ee.remote_device_lists import RemoteDeviceListService
from homeserver.storage.remote_devices_store import RemoteDevicesStore
from homeserver.sync.notifier import Notifier

HERE, THERE = "here.example", "there.example"
ALICE = "@alice:there.example"
CAROL = "@carol:here.example"
ROOM = "!room:here.example"


class FakeDeviceLists:
    def __init__(self):
        self.changes: list = []

    async def record_changes(self, changes):
        self.changes.extend(changes)


class FakeNotifier:
    def __init__(self):
        self.listeners: list = []


class FakeRemote:
    """GET /user/devices of there.example: answers ``body`` or raises when ``down``."""

    def __init__(self):
        self.calls = 0
        self.down = False
        self.body = {"user_id": ALICE, "stream_id": 5, "devices": [
            {"device_id": "D1", "keys": keys("D1"), "device_display_name": "phone"}]}

    async def get_user_devices(self, destination, user_id, timeout_ms):
        assert destination == THERE
        self.calls += 1
        if self.down:
            raise ConnectionError("there.example is down")
        return self.body


class FakeHs:
    def __init__(self, database):
        self.db = database
        self.hostname = HERE
        self.reactor = reactor
        self._made = {DeviceListService: FakeDeviceLists(), Notifier: FakeNotifier()}

    def get(self, cls):
        if cls not in self._made:
            self._made[cls] = cls(self)
        return self._made[cls]

    def clock_ms(self):
        return 1000


def keys(device_id: str, tag: str = "k") -> dict:
    return {"user_id": ALICE, "device_id": device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {f"ed25519:{device_id}": tag}, "signatures": {}}


async def _join(database, user_id, membership="join", stream=1):
    def txn_fn(txn):
        txn.execute("INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, stream_ordering)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET membership ="
                    " excluded.membership", (ROOM, user_id, membership, f"$e{stream}", user_id, stream))
    await database.run("membership", txn_fn)


async def _service(database, tracked=True):
    hs = FakeHs(database)
    service = hs.get(RemoteDeviceListService)
    service.federation = remote = FakeRemote()
    await _join(database, ALICE, stream=1)
    if tracked:
        await _join(database, CAROL, stream=2)
    return service, remote, hs.get(DeviceListService), hs.get(RemoteDevicesStore)


def edu(device_id, stream_id, prev, **extra) -> dict:
    return {"user_id": ALICE, "device_id": device_id, "stream_id": stream_id, "prev_id": prev, **extra}


@pytest_twisted.ensureDeferred
async def test_updates_of_users_sharing_no_room_with_a_local_user_are_ignored(database):
    service, remote, changes, store = await _service(database, tracked=False)
    await service.on_device_list_update(THERE, edu("D2", 6, [5], keys=keys("D2")))
    await service.wait_idle()
    assert (remote.calls, changes.changes, await store.get_held_users()) == (0, [], [])
    answer, rest = await service.query_cached({ALICE: []})
    assert (answer["device_keys"], rest, remote.calls) == ({}, {ALICE: []}, 0)


@pytest_twisted.ensureDeferred
async def test_an_edu_from_another_server_about_the_user_is_ignored(database):
    service, remote, _changes, store = await _service(database)
    await service.on_device_list_update("evil.example", edu("D2", 6, [5], keys=keys("D2")))
    await service.wait_idle()
    assert (remote.calls, await store.get_held_users()) == (0, [])


@pytest_twisted.ensureDeferred
async def test_first_query_fetches_once_and_later_queries_come_from_the_cache(database):
    service, remote, _changes, _store = await _service(database)
    answer, rest = await service.query_cached({ALICE: []})
    assert rest == {} and remote.calls == 1
    assert answer["device_keys"] == {ALICE: {"D1": {**keys("D1"), "unsigned": {"device_display_name": "phone"}}}}
    assert (await service.query_cached({ALICE: ["OTHER"]}))[0]["device_keys"] == {ALICE: {}}
    assert remote.calls == 1


@pytest_twisted.ensureDeferred
async def test_updates_in_sequence_apply_without_a_fetch_and_duplicates_are_ignored(database):
    service, remote, changes, store = await _service(database)
    await service.query_cached({ALICE: []})
    changes.changes.clear()
    await service.on_device_list_update(THERE, edu("D2", 6, [5], keys=keys("D2"), device_display_name="laptop"))
    await service.on_device_list_update(THERE, edu("D1", "7", ["6"], deleted=True))  # string IDs too
    await service.on_device_list_update(THERE, edu("D2", 6, [5], keys=keys("D2")))  # delivered again
    await service.wait_idle()
    assert remote.calls == 1
    assert changes.changes == [(ALICE, "D2", None), (ALICE, "D1", None)]
    held = (await store.get_fresh_lists([ALICE]))[ALICE]
    assert (held.stream_id, held.devices) == ("7", {"D2": (keys("D2"), "laptop")})


@pytest_twisted.ensureDeferred
async def test_a_gap_or_an_empty_prev_id_resyncs_and_a_failed_resync_is_retried(database):
    service, remote, changes, store = await _service(database)
    await service.query_cached({ALICE: []})
    remote.body = {**remote.body, "stream_id": 9}
    await service.on_device_list_update(THERE, edu("D3", 9, [8], keys=keys("D3")))  # 6..8 were lost
    await service.wait_idle()
    assert remote.calls == 2 and (await store.get_fresh_lists([ALICE]))[ALICE].stream_id == "9"
    await service.on_device_list_update(THERE, edu("D4", 10, []))  # empty prev_id: Synapse resyncs too
    await service.wait_idle()
    assert remote.calls == 3
    remote.down = True
    await service.on_device_list_update(THERE, edu("D5", 11, [10]))  # held 9, not 10: gap
    await service.wait_idle()
    assert remote.calls == 4 and await store.get_stale_users() == [ALICE]
    # Stale is never served; the fetch fails again and, the server not answering, it is a failure
    # (no second request to it with /user/keys/query).
    answer, rest = await service.query_cached({ALICE: [], "@bob:there.example": []})
    assert (answer["device_keys"], rest, remote.calls) == ({}, {}, 5)
    assert answer["failures"] == {THERE: {"status": 503, "message": "there.example is down"}}
    remote.down = False
    remote.body = {**remote.body, "stream_id": 11,
                   "devices": remote.body["devices"] + [{"device_id": "D5", "keys": keys("D5")}]}
    changes.changes.clear()
    await service.retry_stale()
    assert await store.get_stale_users() == [] and changes.changes == [(ALICE, None, None)]
    held = (await store.get_fresh_lists([ALICE]))[ALICE]
    assert (held.stream_id, sorted(held.devices)) == ("11", ["D1", "D5"])
    await service.retry_stale()  # nothing stale: no fetch
    assert remote.calls == 6


@pytest_twisted.ensureDeferred
async def test_an_update_for_a_tracked_user_whose_list_is_not_held_fetches_it(database):
    service, remote, changes, store = await _service(database)
    await service.on_device_list_update(THERE, edu("D1", 5, [4], keys=keys("D1")))
    await service.wait_idle()
    assert remote.calls == 1 and list(await store.get_fresh_lists([ALICE])) == [ALICE]
    assert changes.changes == [(ALICE, None, None)]


@pytest_twisted.ensureDeferred
async def test_signing_key_update_replaces_the_held_master_key(database):
    service, _remote, changes, _store = await _service(database)
    await service.query_cached({ALICE: []})
    master = {"user_id": ALICE, "usage": ["master"], "keys": {"ed25519:M": "M"}}
    changes.changes.clear()
    await service.on_signing_key_update(THERE, {"user_id": ALICE, "master_key": master})
    await service.on_signing_key_update(THERE, {"user_id": ALICE, "master_key": master})
    await service.on_signing_key_update(THERE, {"user_id": ALICE, "master_key": {"user_id": "@x:y", "keys": {}}})
    assert changes.changes == [(ALICE, None, None)]
    assert (await service.query_cached({ALICE: []}))[0]["master_keys"] == {ALICE: master}


@pytest_twisted.ensureDeferred
async def test_the_list_is_dropped_when_the_last_local_user_leaves(database):
    service, _remote, _changes, store = await _service(database)
    await service.query_cached({ALICE: []})
    await service.sweep_rooms([ROOM])
    assert await store.get_held_users() == [ALICE]
    await _join(database, CAROL, "leave", 3)
    service._on_notify("events", 3, [ROOM], [CAROL])
    await service.wait_idle()
    assert await store.get_held_users() == []


@pytest_twisted.ensureDeferred
async def test_start_up_sweep_drops_lists_of_users_no_longer_tracked(database):
    service, _remote, _changes, store = await _service(database)
    await service.query_cached({ALICE: []})
    await store.replace_list("@gone:there.example", "1", {}, {}, 1)
    await service.sweep_held()
    assert await store.get_held_users() == [ALICE]


@pytest_twisted.ensureDeferred
async def test_an_update_arriving_during_a_fetch_is_followed_by_another_fetch(database):
    from twisted.internet import defer
    service, remote, _changes, store = await _service(database)
    started, release = defer.Deferred(), defer.Deferred()

    async def slow(destination, user_id, timeout_ms):
        remote.calls += 1
        if remote.calls == 1:
            started.callback(None)
            await release
            return {"user_id": ALICE, "stream_id": 5, "devices": [{"device_id": "D1", "keys": keys("D1")}]}
        return {"user_id": ALICE, "stream_id": 6, "devices": [{"device_id": "D1", "keys": keys("D1")},
                                                             {"device_id": "D2", "keys": keys("D2")}]}
    remote.get_user_devices = slow
    query = defer.ensureDeferred(service.query_cached({ALICE: []}))
    await started
    # The answer being fetched predates D2; its EDU arrives now, while the list is being fetched.
    await service.on_device_list_update(THERE, edu("D2", 6, [5], keys=keys("D2")))
    release.callback(None)
    await query
    await service.wait_idle()
    assert remote.calls == 2
    held = (await store.get_fresh_lists([ALICE]))[ALICE]
    assert (held.stream_id, sorted(held.devices)) == ("6", ["D1", "D2"])


@pytest_twisted.ensureDeferred
async def test_a_server_answering_the_fetch_with_an_error_is_asked_with_user_keys_query(database):
    service, remote, _changes, _store = await _service(database)

    class Refused(Exception):
        code = 404

    async def refuse(destination, user_id, timeout_ms):
        raise Refused("404 M_UNRECOGNIZED")
    remote.get_user_devices = refuse
    answer, rest = await service.query_cached({ALICE: ["D1"]})
    assert (answer["device_keys"], answer["failures"], rest) == ({}, {}, {ALICE: ["D1"]})


@pytest_twisted.ensureDeferred
async def test_prev_ids_may_name_any_update_applied_since_the_fetch(database):
    service, remote, _changes, store = await _service(database)
    await service.query_cached({ALICE: []})  # held at 5
    await service.on_device_list_update(THERE, edu("D2", 6, [5], keys=keys("D2")))
    await service.on_device_list_update(THERE, edu("D3", 7, [5, 6], keys=keys("D3")))
    await service.wait_idle()
    held = (await store.get_fresh_lists([ALICE]))[ALICE]
    assert (remote.calls, held.stream_id, sorted(held.devices)) == (1, "7", ["D1", "D2", "D3"])
    await service.on_device_list_update(THERE, edu("D4", 8, [7, 4], keys=keys("D4")))  # 4: never seen
    await service.wait_idle()
    assert remote.calls == 2
