"""KeysStore on SQLite and PostgreSQL: keys and key documents round-trip; newer fetches win."""
from __future__ import annotations

from types import SimpleNamespace

import pytest_twisted

from federation.keys_store import KeyDocument, KeysStore, StoredKey


def _key(key_id="ed25519:a", vk="AAAA", valid=1000, fetched=10, expired=None, frm="remote.test"):
    return StoredKey("remote.test", key_id, vk, valid, expired, fetched, frm)


@pytest_twisted.ensureDeferred
async def test_stored_keys_and_document_round_trip(database):
    store = KeysStore(SimpleNamespace(db=database))
    doc = KeyDocument("remote.test", "remote.test", 10, 5000, {"server_name": "remote.test", "n": "é"})
    await store.store_server_keys("remote.test", [_key(), _key("ed25519:old", "BBBB", 50, expired=50)], doc)
    keys = await store.get_server_keys("remote.test")
    assert keys["ed25519:a"] == _key()
    assert keys["ed25519:old"].expired_ts == 50
    got = await store.get_key_document("remote.test")
    assert got == doc
    assert await store.get_server_keys("other.test") == {}
    assert await store.get_key_document("other.test") is None


@pytest_twisted.ensureDeferred
async def test_newer_fetch_replaces_key_and_older_fetch_does_not(database):
    store = KeysStore(SimpleNamespace(db=database))
    await store.store_server_keys("remote.test", [_key(valid=1000, fetched=10)],
                                  KeyDocument("remote.test", "remote.test", 10, 1000, {"v": 1}))
    await store.store_server_keys("remote.test", [_key(valid=2000, fetched=20, frm="notary.test")],
                                  KeyDocument("remote.test", "notary.test", 20, 2000, {"v": 2}))
    await store.store_server_keys("remote.test", [_key(valid=500, fetched=5)],
                                  KeyDocument("remote.test", "remote.test", 5, 500, {"v": 0}))
    key = (await store.get_server_keys("remote.test"))["ed25519:a"]
    assert (key.valid_until_ts, key.ts_fetched, key.from_server) == (2000, 20, "notary.test")
    assert (await store.get_key_document("remote.test")).key_json == {"v": 2}
