"""AppServiceStore on SQLite and PostgreSQL: the transaction outbox, per-service IDs that are
never reused, stream positions moved with the transactions, backlogs, and the server-wide
to-device read."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import pytest_twisted

from appservices.store import AppServiceStore, NewTxn

NOW = 1_700_000_000_000


@pytest.fixture
def store(database):
    return AppServiceStore(SimpleNamespace(db=database))


def txn(as_id: str, n: int) -> NewTxn:
    return NewTxn(as_id, json.dumps({"events": [{"n": n}]}), 1, 0)


@pytest_twisted.ensureDeferred
async def test_transactions_get_increasing_ids_per_service_with_positions(store):
    ids = await store.add_txns([txn("a", 1), txn("b", 1), txn("a", 2)], {"events": 7, "receipts": 3}, NOW)
    assert ids == [1, 1, 2]
    assert await store.get_stream_positions() == {"events": 7, "receipts": 3}
    pending = await store.get_pending_txns("a", 10)
    assert [(p.txn_id, json.loads(p.body)["events"][0]["n"]) for p in pending] == [(1, 1), (2, 2)]
    assert pending[0].created_ts == NOW and pending[0].event_count == 1


@pytest_twisted.ensureDeferred
async def test_acknowledged_ids_are_never_reused(store):
    await store.add_txns([txn("a", 1), txn("a", 2)], {"events": 1}, NOW)
    await store.complete_txn("a", 1, NOW + 5)
    await store.complete_txn("a", 2, NOW + 6)
    assert await store.get_pending_txns("a") == []
    assert await store.add_txns([txn("a", 3)], {"events": 2}, NOW) == [3]
    backlog = (await store.get_backlogs(["a"]))["a"]
    assert (backlog.pending, backlog.last_txn_id, backlog.last_acked_txn_id, backlog.last_acked_ts) == \
        (1, 3, 2, NOW + 6)


@pytest_twisted.ensureDeferred
async def test_positions_alone_can_move(store):
    await store.add_txns([], {"events": 5, "presence": 2}, NOW)
    await store.add_txns([], {"events": 9}, NOW)
    assert await store.get_stream_positions() == {"events": 9, "presence": 2}


@pytest_twisted.ensureDeferred
async def test_backlogs_of_unknown_services_are_empty(store):
    await store.add_txns([txn("a", 1)], {}, NOW)
    backlogs = await store.get_backlogs(["a", "never"])
    assert backlogs["a"].pending == 1 and backlogs["a"].oldest_created_ts == NOW
    assert (backlogs["never"].pending, backlogs["never"].last_txn_id) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_failed_write_keeps_neither_transactions_nor_positions(store, database):
    await store.add_txns([txn("a", 1)], {"events": 1}, NOW)
    bad = NewTxn("a", None, 0, 0)  # body NOT NULL: the whole write must roll back
    with pytest.raises(Exception):
        await store.add_txns([txn("a", 2), bad], {"events": 2}, NOW)
    assert [p.txn_id for p in await store.get_pending_txns("a", 10)] == [1]
    assert await store.get_stream_positions() == {"events": 1}
    assert await store.add_txns([txn("a", 2)], {"events": 2}, NOW) == [2]


@pytest_twisted.ensureDeferred
async def test_to_device_rows_of_all_devices_by_stream_range(store, database):
    rows = [("@a:x", "D1", 1, {"type": "m.t", "content": {"n": 1}}), ("@b:x", "D2", 2, {"type": "m.t", "content": {}}),
            ("@a:x", "D3", 3, {"type": "m.t", "content": {"n": 3}})]
    await database.run("seed", lambda t: t.executemany(
        "INSERT INTO e2e_device_inbox (user_id, device_id, stream_id, message_json) VALUES (?, ?, ?, ?)",
        [(u, d, s, json.dumps(m)) for u, d, s, m in rows]))
    got = await store.get_to_device_messages(1, 3, 10)
    assert [(s, u, d) for s, u, d, _ in got] == [(2, "@b:x", "D2"), (3, "@a:x", "D3")]
    assert got[1][3]["content"] == {"n": 3}
    assert len(await store.get_to_device_messages(0, 3, 2)) == 2
