"""E2eeStore on SQLite and PostgreSQL: keys, claims, streams, inbox and backups behave the same."""
from __future__ import annotations

from types import SimpleNamespace

import pytest_twisted

from homeserver.storage.e2ee_store import E2eeStore, RoomKey, SignatureRow

ALICE, BOB, CAROL = "@alice:test", "@bob:test", "@carol:test"


def _store(database) -> E2eeStore:
    return E2eeStore(SimpleNamespace(db=database))


def _newer(old: RoomKey, new: RoomKey) -> bool:
    return new.first_message_index < old.first_message_index


async def _membership(database, room_id, user_id, membership, stream):
    def txn_fn(txn):
        txn.execute("INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, stream_ordering)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET membership ="
                    " excluded.membership, stream_ordering = excluded.stream_ordering",
                    (room_id, user_id, membership, f"$e{stream}", user_id, stream))
    await database.run("membership", txn_fn)


@pytest_twisted.ensureDeferred
async def test_device_keys_change_only_when_different_and_join_display_names(database):
    store = _store(database)
    await database.run("dev", lambda txn: txn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)",
        (ALICE, "DEV1", "phone", 1)))
    keys = {"user_id": ALICE, "device_id": "DEV1", "keys": {"ed25519:DEV1": "x"}}
    assert await store.set_device_keys(ALICE, "DEV1", keys, 10, 1) is True
    assert await store.set_device_keys(ALICE, "DEV1", dict(keys), 11, 2) is False
    assert await store.get_device_keys(ALICE, "DEV1") == keys
    assert await store.query_device_keys({ALICE: [], BOB: []}) == {ALICE: {"DEV1": (keys, "phone")}, BOB: {}}
    assert await store.query_device_keys({ALICE: ["OTHER"]}) == {ALICE: {}}
    assert await store.get_device_list_changes(0, 2, CAROL) == ({ALICE}, set())
    assert await store.get_device_list_stream(0, 5) == [(1, ALICE, "DEV1")]
    assert (await store.get_user_device_list_position(ALICE), await store.get_user_device_list_position(BOB)) == (1, 0)


@pytest_twisted.ensureDeferred
async def test_one_time_key_conflict_stores_nothing_and_same_key_is_skipped(database):
    store = _store(database)
    k1, k2 = {"key": "one"}, {"key": "two"}
    assert await store.add_one_time_keys(ALICE, "D", [("signed_curve25519", "A", k1)], 1) == []
    assert await store.add_one_time_keys(ALICE, "D", [("signed_curve25519", "A", k1),
                                                      ("signed_curve25519", "B", k2)], 2) == []
    assert await store.add_one_time_keys(ALICE, "D", [("signed_curve25519", "C", k1),
                                                      ("signed_curve25519", "A", k2)], 3) == ["signed_curve25519:A"]
    assert await store.count_one_time_keys(ALICE, "D") == {"signed_curve25519": 2}


@pytest_twisted.ensureDeferred
async def test_claims_take_oldest_key_once_then_fallback_marked_used(database):
    store = _store(database)
    await store.add_one_time_keys(ALICE, "D", [("signed_curve25519", "Z", {"key": "old"})], 1)
    await store.add_one_time_keys(ALICE, "D", [("signed_curve25519", "A", {"key": "new"})], 2)
    await store.set_fallback_keys(ALICE, "D", [("signed_curve25519", "F", {"key": "fb", "fallback": True})])
    assert await store.get_unused_fallback_key_types(ALICE, "D") == ["signed_curve25519"]
    want = [(ALICE, "D", "signed_curve25519")]
    assert await store.claim_keys(want) == [(ALICE, "D", "signed_curve25519:Z", {"key": "old"})]
    assert await store.claim_keys(want) == [(ALICE, "D", "signed_curve25519:A", {"key": "new"})]
    assert await store.count_one_time_keys(ALICE, "D") == {}
    fallback = (ALICE, "D", "signed_curve25519:F", {"key": "fb", "fallback": True})
    assert await store.claim_keys(want) == [fallback]
    assert await store.claim_keys(want) == [fallback]
    assert await store.get_unused_fallback_key_types(ALICE, "D") == []
    # The same fallback key again keeps it used; a new one is unused.
    await store.set_fallback_keys(ALICE, "D", [("signed_curve25519", "F", {"key": "fb", "fallback": True})])
    assert await store.get_unused_fallback_key_types(ALICE, "D") == []
    await store.set_fallback_keys(ALICE, "D", [("signed_curve25519", "G", {"key": "fb2", "fallback": True})])
    assert await store.get_unused_fallback_key_types(ALICE, "D") == ["signed_curve25519"]
    assert await store.claim_keys([(BOB, "X", "signed_curve25519")]) == []


@pytest_twisted.ensureDeferred
async def test_deleting_a_device_drops_its_keys_and_inbox_and_records_a_change(database):
    store = _store(database)
    await store.set_device_keys(ALICE, "D", {"k": 1}, 1, 1)
    await store.add_one_time_keys(ALICE, "D", [("c", "A", "key")], 1)
    await store.set_fallback_keys(ALICE, "D", [("c", "F", "key")])
    await store.add_to_device_messages(BOB, "B", "t1", [(ALICE, "D", 1, {"type": "x"})], [], 5)
    await store.delete_devices_e2e(ALICE, ["D"], 2)
    assert await store.get_device_keys(ALICE, "D") is None
    assert await store.count_one_time_keys(ALICE, "D") == {}
    assert await store.get_unused_fallback_key_types(ALICE, "D") == []
    assert await store.get_to_device(ALICE, "D", 0, 10, 10) == []
    assert await store.get_device_list_stream(1, 2) == [(2, ALICE, "D")]


@pytest_twisted.ensureDeferred
async def test_cross_signing_keys_and_signatures_round_trip(database):
    store = _store(database)
    master = {"user_id": ALICE, "usage": ["master"], "keys": {"ed25519:M": "M"}}
    await store.set_cross_signing_keys(ALICE, {"master": ("M", master)}, 1, 1)
    assert await store.get_cross_signing_keys([ALICE, BOB]) == {ALICE: {"master": master}}
    rows = [SignatureRow(BOB, "ed25519:U", ALICE, "M", "sig1"), SignatureRow(ALICE, "ed25519:S", ALICE, "D", "sig2")]
    await store.add_signatures(rows, [(ALICE, None, BOB), (ALICE, "D", None)], 2)
    assert sorted(await store.get_signatures([ALICE]), key=lambda r: r.signature) == rows
    assert await store.get_device_list_changes(1, 2, BOB) == ({ALICE}, {ALICE})
    assert await store.get_device_list_changes(1, 2, CAROL) == ({ALICE}, set())
    assert await store.get_device_list_changes(0, 1, CAROL) == ({ALICE}, set())


@pytest_twisted.ensureDeferred
async def test_room_sharing_and_membership_changes_from_room_memberships(database):
    store = _store(database)
    await _membership(database, "!r1:test", ALICE, "join", 1)
    await _membership(database, "!r1:test", BOB, "join", 2)
    await _membership(database, "!r2:test", CAROL, "join", 3)
    assert await store.get_users_sharing_room(ALICE) == {ALICE, BOB}
    assert await store.get_joined_rooms(ALICE) == ["!r1:test"]
    assert await store.get_membership_changes(ALICE, 1, 2) == ({BOB}, set())
    await _membership(database, "!r1:test", BOB, "leave", 4)
    assert await store.get_membership_changes(ALICE, 3, 4) == (set(), {BOB})
    await _membership(database, "!r2:test", ALICE, "join", 5)
    assert await store.get_membership_changes(ALICE, 4, 5) == ({ALICE, CAROL}, set())
    await _membership(database, "!r2:test", ALICE, "leave", 6)
    assert await store.get_membership_changes(ALICE, 5, 6) == (set(), {CAROL})
    assert await store.get_membership_changes(ALICE, 6, 6) == (set(), set())


@pytest_twisted.ensureDeferred
async def test_to_device_inbox_is_idempotent_ordered_and_survives_restart_numbering(database):
    store = _store(database)
    local = [(ALICE, "D", 1, {"n": 1}), (ALICE, "D", 2, {"n": 2}), (ALICE, "E", 3, {"n": 3})]
    remote = [(4, "other.test", "m.x", "mid", {"@z:other.test": {"*": {}}})]
    assert await store.add_to_device_messages(BOB, "B", "t1", local, remote, 5) is True
    assert await store.add_to_device_messages(BOB, "B", "t1", [(ALICE, "D", 9, {"n": 9})], [], 5) is False
    assert await store.add_to_device_messages(BOB, "OTHER", "t1", [], [], 5) is True
    assert await store.get_to_device(ALICE, "D", 0, 10, 1) == [(1, {"n": 1})]
    assert await store.get_to_device(ALICE, "D", 1, 10, 10) == [(2, {"n": 2})]
    assert await store.get_outbox("other.test", 0, 10) == [(4, BOB, "m.x", "mid", {"@z:other.test": {"*": {}}})]
    assert await store.delete_to_device(ALICE, "D", 2) == 2
    await store.delete_to_device(ALICE, "E", 3)
    await store.delete_outbox("other.test", 4)
    assert await store.get_to_device(ALICE, "D", 0, 10, 10) == []
    # Every message delivered and deleted: a new store still continues after 4.
    assert _store(database).to_device_ids.current_token() == 4


@pytest_twisted.ensureDeferred
async def test_backup_versions_and_keys_with_replacement_etag_and_wrong_version(database):
    store = _store(database)
    assert await store.get_backup_version(ALICE) is None
    k = RoomKey(5, 0, False, {"c": 1})
    assert (await store.put_room_keys(ALICE, 1, [("!r", "s", k)], _newer)).status == "not_found"
    v1 = await store.create_backup_version(ALICE, "alg", {"pk": 1})
    v2 = await store.create_backup_version(ALICE, "alg", {"pk": 2})
    assert (v1, v2) == (1, 2)
    wrong = await store.put_room_keys(ALICE, 1, [("!r", "s", k)], _newer)
    assert (wrong.status, wrong.current_version) == ("wrong_version", 2)
    ok = await store.put_room_keys(ALICE, 2, [("!r", "s", k), ("!r", "t", k)], _newer)
    assert (ok.status, ok.etag, ok.count) == ("ok", 1, 2)
    worse = await store.put_room_keys(ALICE, 2, [("!r", "s", RoomKey(9, 0, True, {}))], _newer)
    assert (worse.etag, worse.count) == (1, 2)  # nothing changed, etag stays
    better = await store.put_room_keys(ALICE, 2, [("!r", "s", RoomKey(1, 0, False, {"c": 2}))], _newer)
    assert better.etag == 2
    assert (await store.get_room_keys(ALICE, 2, "!r", "s")) == {"!r": {"s": RoomKey(1, 0, False, {"c": 2})}}
    v = await store.get_backup_version(ALICE)
    assert (v.version, v.auth_data, v.etag, v.count) == (2, {"pk": 2}, 2, 2)
    assert await store.update_backup_auth_data(ALICE, 2, {"pk": 3}) is True
    deleted = await store.delete_room_keys(ALICE, 2, "!r", "t")
    assert (deleted.etag, deleted.count) == (3, 1)
    assert await store.delete_backup_version(ALICE, 2) == "deleted"
    assert await store.delete_backup_version(ALICE, 2) == "already_deleted"
    assert await store.delete_backup_version(ALICE, 7) == "not_found"
    assert (await store.get_backup_version(ALICE)).version == 1
    assert await store.get_room_keys(ALICE, 2) is None
    assert await store.create_backup_version(ALICE, "alg", {}) == 3  # versions are never reused
