"""RemoteDevicesStore on SQLite and PostgreSQL: held remote device lists, incremental updates
guarded by the held stream_id, snapshots, stale marks, tracking and dropping."""
from __future__ import annotations

from types import SimpleNamespace

import pytest_twisted

from homeserver.storage.remote_devices_store import DeviceUpdate, RemoteDevicesStore, RemoteListState
from tests.storage.test_e2ee_store import _membership

ALICE_R, BOB_R = "@alice:remote.example", "@bob:remote.example"
LOCAL = "@carol:here.example"


def _store(database) -> RemoteDevicesStore:
    return RemoteDevicesStore(SimpleNamespace(db=database))


def _keys(user_id: str, device_id: str, tag: str = "k") -> dict:
    return {"user_id": user_id, "device_id": device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {f"ed25519:{device_id}": tag}, "signatures": {}}


@pytest_twisted.ensureDeferred
async def test_snapshot_is_held_fresh_and_reports_whether_it_changed(database):
    store = _store(database)
    devices = {"D1": (_keys(ALICE_R, "D1"), "phone"), "D2": (None, None)}
    master = {"user_id": ALICE_R, "usage": ["master"], "keys": {"ed25519:M": "M"}}
    assert await store.get_fresh_lists([ALICE_R]) == {}
    assert await store.replace_list(ALICE_R, "7", devices, {"master": master}, 1) is True
    held = (await store.get_fresh_lists([ALICE_R, BOB_R]))[ALICE_R]
    assert (held.stream_id, held.devices, held.cross_signing) == ("7", devices, {"master": master})
    assert await store.replace_list(ALICE_R, "8", dict(devices), {"master": master}, 2) is False
    assert await store.get_list_states([ALICE_R, BOB_R]) == {ALICE_R: RemoteListState("8", False)}
    assert await store.replace_list(ALICE_R, "9", {"D1": devices["D1"]}, {}, 3) is True
    held = (await store.get_fresh_lists([ALICE_R]))[ALICE_R]
    assert (held.devices, held.cross_signing) == ({"D1": devices["D1"]}, {})


@pytest_twisted.ensureDeferred
async def test_updates_apply_only_at_the_expected_stream_id_and_deleted_removes_a_device(database):
    store = _store(database)
    await store.replace_list(ALICE_R, "3", {"D1": (_keys(ALICE_R, "D1"), None)}, {}, 1)
    new = DeviceUpdate("D2", "4", _keys(ALICE_R, "D2"), "laptop")
    assert await store.apply_updates(ALICE_R, "2", [new], 2) is False  # the list is at 3, not 2
    assert set((await store.get_fresh_lists([ALICE_R]))[ALICE_R].devices) == {"D1"}
    assert await store.apply_updates(ALICE_R, "3", [new], 2) is True
    assert await store.apply_updates(ALICE_R, "4", [DeviceUpdate("D1", "5", deleted=True),
                                                    DeviceUpdate("D2", "6", _keys(ALICE_R, "D2", "new"), "l2")], 3)
    held = (await store.get_fresh_lists([ALICE_R]))[ALICE_R]
    assert (held.stream_id, held.devices) == ("6", {"D2": (_keys(ALICE_R, "D2", "new"), "l2")})
    assert await store.apply_updates(BOB_R, None, [new], 4) is False  # no list held: nothing written
    assert await store.get_list_states([BOB_R]) == {}


@pytest_twisted.ensureDeferred
async def test_stale_list_is_not_served_nor_updated_until_a_snapshot_replaces_it_and_equal_content_is_no_change(database):
    store = _store(database)
    await store.replace_list(ALICE_R, "3", {"D1": (_keys(ALICE_R, "D1"), None)}, {}, 1)
    await store.mark_stale(ALICE_R, 5)
    await store.mark_stale(BOB_R, 6)  # not held before: a stale placeholder to retry
    assert await store.get_fresh_lists([ALICE_R, BOB_R]) == {}
    assert await store.get_stale_users() == [ALICE_R, BOB_R]
    assert await store.get_list_states([ALICE_R, BOB_R]) == {ALICE_R: RemoteListState("3", True),
                                                              BOB_R: RemoteListState(None, True)}
    assert await store.apply_updates(ALICE_R, "3", [DeviceUpdate("D2", "4", None)], 7) is False
    # The same devices again: fresh now, and not a change.
    assert await store.replace_list(ALICE_R, "3", {"D1": (_keys(ALICE_R, "D1"), None)}, {}, 8) is False
    assert await store.get_stale_users() == [BOB_R]
    assert await store.replace_list(BOB_R, "1", {}, {}, 9) is False  # the placeholder held nothing either
    assert list(await store.get_fresh_lists([ALICE_R])) == [ALICE_R]


@pytest_twisted.ensureDeferred
async def test_cross_signing_update_needs_a_held_list_and_reports_changes(database):
    store = _store(database)
    master = {"user_id": ALICE_R, "usage": ["master"], "keys": {"ed25519:M": "M"}}
    assert await store.set_cross_signing(ALICE_R, {"master": master}) is False
    await store.replace_list(ALICE_R, "1", {}, {}, 1)
    assert await store.set_cross_signing(ALICE_R, {"master": master}) is True
    assert await store.set_cross_signing(ALICE_R, {"master": dict(master)}) is False
    ssk = {"user_id": ALICE_R, "usage": ["self_signing"], "keys": {"ed25519:S": "S"}}
    assert await store.set_cross_signing(ALICE_R, {"self_signing": ssk}) is True
    held = (await store.get_fresh_lists([ALICE_R]))[ALICE_R]
    assert held.cross_signing == {"master": master, "self_signing": ssk}


@pytest_twisted.ensureDeferred
async def test_tracked_means_joined_to_a_room_with_a_joined_local_user(database):
    store = _store(database)
    await _membership(database, "!a:x", ALICE_R, "join", 1)
    await _membership(database, "!a:x", LOCAL, "join", 2)
    await _membership(database, "!b:x", BOB_R, "join", 3)
    await _membership(database, "!b:x", "@dave:other.here.example", "join", 4)  # a lookalike domain
    await _membership(database, "!c:x", BOB_R, "join", 5)
    await _membership(database, "!c:x", LOCAL, "leave", 6)
    assert await store.users_sharing_room_with_local([ALICE_R, BOB_R], "here.example") == {ALICE_R}
    await _membership(database, "!a:x", LOCAL, "leave", 7)
    assert await store.users_sharing_room_with_local([ALICE_R, BOB_R], "here.example") == set()


@pytest_twisted.ensureDeferred
async def test_drop_forgets_the_list_and_held_users_are_found_by_room(database):
    store = _store(database)
    await _membership(database, "!a:x", ALICE_R, "leave", 1)
    await store.replace_list(ALICE_R, "1", {"D1": (_keys(ALICE_R, "D1"), None)},
                             {"master": {"user_id": ALICE_R, "keys": {}}}, 1)
    await store.replace_list(BOB_R, "1", {}, {}, 1)
    assert await store.held_users_in_rooms(["!a:x", "!zz:x"]) == [ALICE_R]
    assert await store.get_held_users() == [ALICE_R, BOB_R]
    await store.drop_lists([ALICE_R])
    assert await store.get_held_users() == [BOB_R]
    assert await store.get_fresh_lists([ALICE_R]) == {}
    assert await store.replace_list(ALICE_R, "2", {}, {}, 2) is True  # starts empty again
    assert (await store.get_fresh_lists([ALICE_R]))[ALICE_R].cross_signing == {}


@pytest_twisted.ensureDeferred
async def test_local_device_updates_are_numbered_per_user_for_other_servers(database):
    from homeserver.storage.e2ee_store import E2eeStore
    store = E2eeStore(SimpleNamespace(db=database))
    me, other = "@me:here.example", "@other:here.example"
    await store.add_device_list_changes([(me, "B", None), (me, "A", None), (other, "X", None)], 1)
    await store.add_device_list_changes([(me, None, None)], 2)  # cross-signing: not numbered
    await store.add_device_list_changes([(me, "A", other)], 3)  # private signature row: not numbered
    await store.add_device_list_changes([(me, "C", None)], 4)
    assert await store.get_device_update_sequence(me, 1) == (0, ["A", "B"])
    assert await store.get_device_update_sequence(me, 2) == (2, [])
    assert await store.get_device_update_sequence(me, 4) == (2, ["C"])
    assert await store.get_device_update_sequence(other, 4) == (1, [])
    assert [await store.count_device_updates(me, p) for p in (0, 1, 3, 4)] == [0, 2, 2, 3]
    await database.run("dev", lambda txn: txn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)", (me, "A", "a", 1)))
    assert await store.get_existing_devices(me, ["A", "B"]) == {"A": "a"}
