"""One database layer for everything: transactions run in worker threads.

``await db.run("name", fn, *args)`` calls ``fn(txn, *args)`` inside one transaction on a worker
thread and commits it.  SQLite gets one writer thread (SQLite admits one writer at a time) plus
reader threads on read-only connections (WAL lets them read while the writer writes), and a
thread that checkpoints the WAL; PostgreSQL gets a pool of connections, each used for reads (in
autocommit mode) and writes. The one exception: ``db.read_now`` runs a small indexed SQLite read
on the reactor thread itself, where a thread hand-off would cost more than the read.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from .engines import PostgresEngine, SqliteEngine

logger = logging.getLogger(__name__)


class UnstorableText(ValueError):
    """A text argument the engine cannot store: U+0000 (PostgreSQL text refuses it) or a lone
    surrogate (not encodable as UTF-8). The HTTP layer answers it with 400 M_INVALID_PARAM."""


def _is_unstorable(e: Exception) -> bool:
    return isinstance(e, UnicodeEncodeError) or (isinstance(e, ValueError) and "NUL (0x00)" in str(e))


def _returns_nothing(sql: str) -> bool:
    """An INSERT, UPDATE or DELETE without RETURNING: nothing to read back but its rowcount."""
    head = sql.lstrip()[:6].upper()
    return head in ("INSERT", "UPDATE", "DELETE") and "RETURNING" not in sql.upper()


class Txn:
    """A cursor inside one transaction; SQL is written with ``?`` placeholders."""

    __slots__ = ("_engine", "_cursor", "_after_commit", "name", "_batched", "_no_writes")

    def __init__(self, engine, cursor, name: str):
        self._engine = engine
        self._cursor = cursor
        self._after_commit: list[tuple[Callable, tuple]] = []
        self.name = name
        self._batched: list[bytes] | None = None
        self._no_writes = False  # a PostgreSQL read, run in autocommit mode (Database._run_on)

    @property
    def engine_name(self) -> str:
        return self._engine.name

    def batch_writes(self) -> None:
        """From here on, on PostgreSQL, send the statements that return nothing (INSERT, UPDATE,
        DELETE without RETURNING) together in one round trip: just before the next statement
        that returns rows, before :attr:`rowcount` is read, and at commit. A failing statement
        then raises at that point (the transaction fails all the same). For write-heavy
        transactions such as persisting events (a dozen statements, each a round trip to the
        server otherwise). SQLite has no round trips: no effect."""
        if self._engine.name == "postgres":
            self._batched = []

    def flush(self) -> None:
        """Send the batched statements now (see :meth:`batch_writes`)."""
        if self._batched:
            batch, self._batched = self._batched, []
            self._cursor.execute(b";".join(batch))

    def _batch(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._batched.extend(self._cursor.mogrify(sql, tuple(r)) for r in rows)
        except (ValueError, UnicodeEncodeError) as e:
            if _is_unstorable(e):
                raise UnstorableText(str(e)) from e
            raise

    def execute(self, sql: str, args: Sequence[Any] = ()) -> "Txn":
        if self._no_writes and _returns_nothing(sql):
            raise RuntimeError(f"write in the read-only transaction {self.name}: {sql[:60]}")
        if self._batched is not None:
            if _returns_nothing(sql):
                self._batch(self._engine.convert_sql(sql), [args])
                return self
            self.flush()
        try:
            self._cursor.execute(self._engine.convert_sql(sql), tuple(args))
        except (ValueError, UnicodeEncodeError) as e:
            if _is_unstorable(e):
                raise UnstorableText(str(e)) from e
            raise
        return self

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "", page: int = 500) -> "Txn":
        """``head VALUES (..), (..) tail`` for many rows: on PostgreSQL multi-row statements of up
        to ``page`` rows (one parse and plan per page); on SQLite executemany (one prepared
        statement). Rows of one page must not conflict with each other under an ON CONFLICT
        DO UPDATE tail."""
        if not rows:
            return self
        width = len(rows[0])
        if self._engine.name != "postgres":
            return self.executemany(f"{head} VALUES ({','.join('?' * width)}){tail}", rows)
        one = "(" + ",".join("?" * width) + ")"
        for i in range(0, len(rows), page):
            chunk = rows[i:i + page]
            self.execute(f"{head} VALUES {','.join([one] * len(chunk))}{tail}", [v for r in chunk for v in r])
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> "Txn":
        """Run sql once per row. On PostgreSQL the rows go in pages of statements rather than one
        round trip per row (psycopg2's executemany sends each separately); rowcount is then unreliable."""
        rows = [tuple(r) for r in rows]
        if self._no_writes and _returns_nothing(sql):
            raise RuntimeError(f"write in the read-only transaction {self.name}: {sql[:60]}")
        if rows and self._batched is not None:
            if _returns_nothing(sql):
                self._batch(self._engine.convert_sql(sql), rows)
                return self
            self.flush()
        if rows:
            try:
                sql = self._engine.convert_sql(sql)
                if self._engine.name == "postgres" and len(rows) > 1:
                    from psycopg2.extras import execute_batch
                    execute_batch(self._cursor, sql, rows, page_size=200)
                else:
                    self._cursor.executemany(sql, rows)
            except (ValueError, UnicodeEncodeError) as e:
                if _is_unstorable(e):
                    raise UnstorableText(str(e)) from e
                raise
        return self

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, args).fetchone()
        return row[0] if row else None

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement (with batched writes: the last one batched)."""
        self.flush()
        return self._cursor.rowcount

    def binary(self, value: bytes) -> Any:
        return self._engine.binary(value)

    def call_after_commit(self, fn: Callable, *args) -> None:
        """Run fn(*args) on the reactor thread once this transaction has committed."""
        self._after_commit.append((fn, args))


class _Pool:
    """Worker threads, each holding its own connection for the life of the pool."""

    def __init__(self, engine, size: int, name: str, readonly: bool, **connect_options):
        self.engine = engine
        self.readonly = readonly
        self.connect_options = connect_options
        self.threadpool = ThreadPool(minthreads=1, maxthreads=size, name=name)
        self._local = threading.local()
        self._conns: list = []
        self._lock = threading.Lock()

    def connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.engine.connect(readonly=self.readonly, **self.connect_options)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close_all(self) -> None:
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except Exception:
                    pass
            self._conns.clear()


#: SQLite: checkpoint the WAL after this many write transactions, or this many seconds after the
#: last checkpoint, whichever comes first (the next commit after that triggers it).
CHECKPOINT_EVERY_COMMITS = 200
CHECKPOINT_EVERY_SECONDS = 1.0


class Database:
    def __init__(self, engine: SqliteEngine | PostgresEngine, *, pool_size: int = 5, reactor=None):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.engine = engine
        self._reactor = reactor
        # SQLite on a file: the writer's commits only append to the WAL; a thread of its own
        # copies the WAL back into the database (see _after_write), so no commit waits for that.
        self._checkpointer: _Pool | None = None
        if isinstance(engine, SqliteEngine):
            in_memory = engine.path == ":memory:"
            self._writer = _Pool(engine, 1, "db-writer", readonly=False, checkpoint_in_background=not in_memory)
            self._reader = self._writer if in_memory else _Pool(engine, 2, "db-reader", readonly=True)
            if not in_memory:
                self._checkpointer = _Pool(engine, 1, "db-checkpoint", readonly=False)
        else:
            self._writer = _Pool(engine, max(1, pool_size), "db", readonly=False)
            self._reader = self._writer
        # SQLite on a file: one read-only connection used on the reactor thread by read_now().
        self._inline_conn = None
        self._inline_ok = isinstance(engine, SqliteEngine) and engine.path != ":memory:"
        self._writes_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._checkpointing = False
        self.checkpoints = 0
        self._started = False

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def _pools(self) -> list[_Pool]:
        pools = {id(self._writer): self._writer, id(self._reader): self._reader}
        if self._checkpointer is not None:
            pools[id(self._checkpointer)] = self._checkpointer
        return list(pools.values())

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for pool in self._pools():
            pool.threadpool.start()
        self._reactor.addSystemEventTrigger("during", "shutdown", self.close)

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        for pool in self._pools():
            pool.threadpool.stop()
            pool.close_all()
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None

    def _after_write(self) -> None:
        """Count a committed write; start a background checkpoint when enough have piled up."""
        if self._checkpointer is None:
            return
        self._writes_since_checkpoint += 1
        if self._checkpointing or not self._started:
            return
        if (self._writes_since_checkpoint >= CHECKPOINT_EVERY_COMMITS
                or time.monotonic() - self._last_checkpoint >= CHECKPOINT_EVERY_SECONDS):
            self._checkpointing = True
            self._writes_since_checkpoint = 0
            self._last_checkpoint = time.monotonic()
            d = threads.deferToThreadPool(self._reactor, self._checkpointer.threadpool, self._checkpoint_in_thread)
            d.addErrback(lambda f: logger.warning("WAL checkpoint failed: %s", f.getErrorMessage()))
            d.addBoth(self._checkpoint_done)

    def _checkpoint_in_thread(self) -> tuple[int, int, int]:
        return self.engine.checkpoint(self._checkpointer.connection())

    def _checkpoint_done(self, _result) -> None:
        self._checkpointing = False
        self.checkpoints += 1

    async def run(self, name: str, fn: Callable[..., Any], *args, readonly: bool = False) -> Any:
        """Run fn(txn, *args) in one transaction on a worker thread; returns its result."""
        pool = self._reader if readonly else self._writer
        result, after = await threads.deferToThreadPool(
            self._reactor, pool.threadpool, self._run_in_thread, pool, name, fn, args, not readonly)
        if not readonly:
            self._after_write()
        for cb, cb_args in after:
            try:
                cb(*cb_args)
            except Exception:
                logger.exception("after-commit callback of %s failed", name)
        return result

    async def read_now(self, name: str, fn: Callable[..., Any], *args) -> Any:
        """:meth:`run` for a small indexed read on a hot path (a few rows by key).

        On SQLite the read runs at once on the calling (reactor) thread, on a read-only
        connection of its own: such a read takes tens of microseconds, while handing it to a
        worker thread and back costs a thread wake-up each way (a millisecond when the machine is
        busy). WAL readers never wait for the writer. PostgreSQL reads go over the network,
        so there it is :meth:`run` with ``readonly=True``."""
        if not self._inline_ok or not self._started:
            return await self.run(name, fn, *args, readonly=True)
        conn = self._inline_conn
        if conn is None:
            conn = self._inline_conn = self.engine.connect(readonly=True)
        result, _after = self._run_on(conn, name, fn, args, write=False)
        return result

    def run_sync(self, name: str, fn: Callable[..., Any], *args) -> Any:
        """Run fn(txn, *args) in the calling thread on a fresh connection (CLI, migrations, tests)."""
        conn = self.engine.connect()
        try:
            result, after = self._run_on(conn, name, fn, args, write=True)
        finally:
            conn.close()
        for cb, cb_args in after:
            cb(*cb_args)
        return result

    def _run_in_thread(self, pool: _Pool, name: str, fn, args, write: bool):
        attempts = 0
        while True:
            attempts += 1
            conn = pool.connection()
            try:
                return self._run_on(conn, name, fn, args, write)
            except Exception as e:
                if self._is_retryable(e) and attempts < 5:
                    logger.info("transaction %s: retrying after %s", name, e)
                    time.sleep(0.01 * attempts)
                    continue
                if self._is_connection_lost(e):
                    pool.drop_connection()
                raise

    def _run_on(self, conn, name: str, fn, args, write: bool):
        engine = self.engine
        start = time.monotonic()
        engine.begin(conn, write)
        txn = Txn(engine, conn.cursor(), name)
        if not write and isinstance(engine, PostgresEngine):
            txn._no_writes = True  # PostgreSQL reads run in autocommit mode: a write there would not be atomic
        try:
            result = fn(txn, *args)
            txn.flush()
            conn.commit() if not isinstance(engine, SqliteEngine) else conn.execute("COMMIT")
        except BaseException:
            try:
                conn.rollback() if not isinstance(engine, SqliteEngine) else conn.execute("ROLLBACK")
            except Exception:
                pass
            raise
        elapsed = time.monotonic() - start
        if elapsed > 1.0:
            logger.warning("slow transaction %s: %.3fs", name, elapsed)
        return result, txn._after_commit

    def _is_retryable(self, e: BaseException) -> bool:
        if isinstance(self.engine, PostgresEngine):
            import psycopg2.extensions
            return isinstance(e, psycopg2.extensions.TransactionRollbackError)
        return False

    def _is_connection_lost(self, e: BaseException) -> bool:
        if isinstance(self.engine, PostgresEngine):
            import psycopg2
            return isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError))
        return False

    def is_integrity_error(self, e: BaseException) -> bool:
        return self.engine.is_integrity_error(e)
