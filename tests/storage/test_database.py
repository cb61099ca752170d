"""The database layer behaves the same on SQLite and PostgreSQL."""
import pytest
import pytest_twisted

from homeserver.storage.database import Database
from homeserver.storage.engines import create_engine
from homeserver.storage.migrations import SchemaTooNewError, code_schema_version, prepare_database


@pytest_twisted.ensureDeferred
async def test_transaction_commits_and_returns_result(database):
    def write(txn):
        txn.execute("INSERT INTO server_meta (key, value) VALUES (?, ?)", ("k", "v"))
        return txn.rowcount

    assert await database.run("write", write) == 1
    assert await database.run("read", lambda t: t.scalar("SELECT value FROM server_meta WHERE key = ?", ("k",)),
                              readonly=True) == "v"


@pytest_twisted.ensureDeferred
async def test_failed_transaction_rolls_back(database):
    def write_then_fail(txn):
        txn.execute("INSERT INTO server_meta (key, value) VALUES (?, ?)", ("gone", "v"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await database.run("fail", write_then_fail)
    assert await database.run("read", lambda t: t.scalar("SELECT COUNT(*) FROM server_meta WHERE key = 'gone'")) == 0


@pytest_twisted.ensureDeferred
async def test_integrity_error_is_recognised(database):
    await database.run("w", lambda t: t.execute("INSERT INTO server_meta (key, value) VALUES ('a', '1')"))
    with pytest.raises(Exception) as exc:
        await database.run("w", lambda t: t.execute("INSERT INTO server_meta (key, value) VALUES ('a', '2')"))
    assert database.is_integrity_error(exc.value)


@pytest_twisted.ensureDeferred
async def test_after_commit_callbacks_run_only_after_commit(database):
    seen = []

    def ok(txn):
        txn.call_after_commit(seen.append, "ok")

    def bad(txn):
        txn.call_after_commit(seen.append, "bad")
        raise ValueError

    await database.run("ok", ok)
    with pytest.raises(ValueError):
        await database.run("bad", bad)
    assert seen == ["ok"]


def test_migrations_are_idempotent_and_refuse_newer_schema(engine_args):
    engine, kwargs = engine_args
    db = Database(create_engine(engine, **kwargs))
    assert prepare_database(db)  # applies everything on an empty database
    assert prepare_database(db) == []  # and nothing the second time
    db.run_sync("bump", lambda t: t.execute("INSERT INTO schema_version (version) VALUES (?)",
                                             (code_schema_version(engine) + 1,)))
    with pytest.raises(SchemaTooNewError):
        prepare_database(db)


def test_percent_sign_in_sql_literals_survives_postgres_rewrite(engine_args):
    engine, kwargs = engine_args
    db = Database(create_engine(engine, **kwargs))
    prepare_database(db)
    db.run_sync("w", lambda t: t.execute("INSERT INTO server_meta (key, value) VALUES (?, ?)", ("p", "100%")))
    assert db.run_sync("r", lambda t: t.scalar("SELECT value FROM server_meta WHERE value LIKE '%\\%' ESCAPE '\\'")) == "100%"


@pytest_twisted.ensureDeferred
async def test_sqlite_wal_is_checkpointed_in_the_background_not_by_commits(tmp_path):
    """The writer never checkpoints (wal_autocheckpoint=0); after enough commits the database's
    own checkpoint thread copies the WAL back, so the WAL does not grow without bound."""
    from twisted.internet import reactor, task

    from homeserver.storage import database as database_module
    db = Database(create_engine("sqlite", path=str(tmp_path / "wal.db")))
    db.start()
    try:
        writer = await db.run("autocheckpoint", lambda txn: txn.scalar("PRAGMA wal_autocheckpoint"))
        assert writer == 0
        await db.run("create", lambda txn: txn.execute("CREATE TABLE t (x BLOB)"))
        for i in range(database_module.CHECKPOINT_EVERY_COMMITS + 5):
            await db.run("insert", lambda txn: txn.execute("INSERT INTO t (x) VALUES (?)", (b"x" * 3000,)))
        for _ in range(200):
            if db.checkpoints:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        assert db.checkpoints >= 1
        import sqlite3
        probe = sqlite3.connect(str(tmp_path / "wal.db"))
        busy, log, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert busy == 0 and log == copied
        assert await db.run("count", lambda txn: txn.scalar("SELECT count(*) FROM t"), readonly=True) \
            == database_module.CHECKPOINT_EVERY_COMMITS + 5
    finally:
        db.close()


def test_sqlite_compact_tables_migration_keeps_every_row(tmp_path, monkeypatch):
    """0018/0047 rebuild tables (INTEGER PRIMARY KEY, WITHOUT ROWID) on a database that already
    has rows: every row survives, and the rebuilt tables have no extra rowid b-tree."""
    from homeserver.storage import migrations
    db = Database(create_engine("sqlite", path=str(tmp_path / "old.db")))
    everything = migrations.available_migrations("sqlite")
    monkeypatch.setattr(migrations, "available_migrations",
                        lambda engine: [m for m in everything if m[0] not in (18, 47)])
    prepare_database(db)

    def fill(txn):
        txn.execute("INSERT INTO events (event_nid, event_id, stream_ordering, room_id, room_version, type,"
                    " state_key, sender, depth, origin_server_ts, received_ts, outlier, rejected_reason,"
                    " soft_failed, state_group_before, state_group, json)"
                    " VALUES (7, '$e', 3, '!r', '12', 'm.room.message', NULL, '@a:x', 2, 5, 6, ?, NULL, ?, 1, 1, '{}')",
                    (False, False))
        txn.execute("INSERT INTO event_edges VALUES ('$e', '$p')")
        txn.execute("INSERT INTO room_memberships VALUES ('!r', '@a:x', 'join', '$m', '@a:x', 2)")
        txn.execute("INSERT INTO notification_counts VALUES ('@a:x', '!r', 'main', 4, 1)")
    db.run_sync("fill", fill)
    monkeypatch.setattr(migrations, "available_migrations", lambda engine: everything)
    assert prepare_database(db) == [18, 47]

    def check(txn):
        assert txn.execute("SELECT event_nid, event_id, stream_ordering, json FROM events").fetchall() \
            == [(7, "$e", 3, "{}")]
        assert txn.execute("SELECT * FROM event_edges").fetchall() == [("$e", "$p")]
        assert txn.execute("SELECT membership FROM room_memberships").fetchall() == [("join",)]
        assert txn.execute("SELECT notif_count FROM notification_counts").fetchall() == [(4,)]
        events_indexes = {r[1] for r in txn.execute("PRAGMA index_list(events)").fetchall()}
        assert "events_room_depth" not in events_indexes and len(events_indexes) == 5
        assert txn.execute("PRAGMA index_list(event_edges)").fetchall()[0][1] == "event_edges_prev"
        assert "WITHOUT ROWID" in txn.scalar("SELECT sql FROM sqlite_master WHERE name = 'event_edges'")
    db.run_sync("check", check)


@pytest_twisted.ensureDeferred
async def test_read_now_sees_committed_writes_and_on_sqlite_runs_without_a_thread_hop(database):
    import threading

    await database.run("create", lambda txn: txn.execute("CREATE TABLE r (x INTEGER)"))
    await database.run("insert", lambda txn: txn.execute("INSERT INTO r (x) VALUES (7)"))
    seen = []

    def read(txn):
        seen.append(threading.current_thread() is threading.main_thread())
        return txn.scalar("SELECT x FROM r")
    assert await database.read_now("read", read) == 7
    assert seen == [database.engine_name == "sqlite"]
    await database.run("update", lambda txn: txn.execute("UPDATE r SET x = 8"))
    assert await database.read_now("read", read) == 8


@pytest_twisted.ensureDeferred
async def test_batched_writes_are_sent_before_reads_rowcount_and_commit(database):
    """Txn.batch_writes (one round trip for many writes on PostgreSQL) changes nothing a
    transaction can observe: reads see the earlier writes, rowcount is the last write's, and
    everything is committed; a failing batched write fails the transaction."""
    await database.run("create", lambda txn: txn.execute("CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT)"))

    def work(txn):
        txn.batch_writes()
        txn.execute("INSERT INTO b (k, v) VALUES (?, ?)", (1, "it's"))
        txn.executemany("INSERT INTO b (k, v) VALUES (?, ?)", [(2, "two"), (3, "three")])
        seen = txn.scalar("SELECT COUNT(*) FROM b")
        txn.execute("UPDATE b SET v = ? WHERE k >= ?", ("x", 2))
        changed = txn.rowcount
        txn.execute("DELETE FROM b WHERE k = ?", (3,))
        return seen, changed
    assert await database.run("work", work) == (3, 2)
    assert await database.run("read", lambda txn: txn.execute("SELECT k, v FROM b ORDER BY k").fetchall(),
                              readonly=True) == [(1, "it's"), (2, "x")]

    def failing(txn):
        txn.batch_writes()
        txn.execute("INSERT INTO b (k, v) VALUES (?, ?)", (9, "nine"))
        txn.execute("INSERT INTO b (k, v) VALUES (?, ?)", (1, "duplicate"))
    with pytest.raises(Exception) as info:
        await database.run("failing", failing)
    assert database.is_integrity_error(info.value)
    assert await database.run("read", lambda txn: txn.scalar("SELECT COUNT(*) FROM b"), readonly=True) == 2


@pytest_twisted.ensureDeferred
async def test_a_write_in_a_read_only_transaction_is_refused_on_postgres(database):
    """PostgreSQL reads run in autocommit mode, where several writes would not be one
    transaction: a write there is a programming error and says so (SQLite's reader connections
    are read-only and refuse it themselves)."""
    await database.run("create", lambda txn: txn.execute("CREATE TABLE w (x INTEGER)"))
    with pytest.raises(Exception) as info:
        await database.run("sneaky", lambda txn: txn.execute("INSERT INTO w (x) VALUES (1)"), readonly=True)
    if database.engine_name == "postgres":
        assert isinstance(info.value, RuntimeError) and "read-only transaction sneaky" in str(info.value)
    assert await database.run("count", lambda txn: txn.scalar("SELECT COUNT(*) FROM w"), readonly=True) == 0
