"""The two database engines behind one schema: SQLite (embedded default) and PostgreSQL.

Queries are written once with ``?`` placeholders; the PostgreSQL engine rewrites them to ``%s``.
Schema files may use ``BLOB`` (``BYTEA`` on PostgreSQL); everything else is the common subset.
"""
from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

_PLACEHOLDER = re.compile(r"\?")


class SqliteEngine:
    name = "sqlite"
    supports_concurrent_writers = False

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)

    def connect(self, readonly: bool = False, *, checkpoint_in_background: bool = False) -> sqlite3.Connection:
        """A connection in WAL mode. ``checkpoint_in_background``: this connection never copies the
        WAL back into the database itself (SQLite would do it inside whichever commit crosses
        1,000 WAL pages, with two fsyncs); :class:`~.database.Database` checkpoints from a thread
        of its own instead."""
        if readonly and self.path != ":memory:":
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                   isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode keeps every commit atomic and durable across a process crash
        # (kill -9); only an OS crash may lose the last transactions.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-32000")
        if checkpoint_in_background:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def begin(self, conn, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    @staticmethod
    def checkpoint(conn) -> tuple[int, int, int]:
        """Copy committed WAL pages into the database without waiting for readers or the writer
        (PASSIVE); (busy, WAL pages, pages copied)."""
        return tuple(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())

    def convert_sql(self, sql: str) -> str:
        return sql

    def convert_schema(self, sql: str) -> str:
        return sql

    def is_integrity_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def binary(self, value: bytes) -> Any:
        return value


class PostgresEngine:
    name = "postgres"
    supports_concurrent_writers = True

    def __init__(self, dsn: str):
        import psycopg2  # noqa: F401  (fail early when the driver is missing)
        self.dsn = dsn
        self._sql_cache: dict[str, str] = {}

    def connect(self, readonly: bool = False):
        import psycopg2
        conn = psycopg2.connect(self.dsn)
        # READ COMMITTED as the session's default, set once here: given to set_session, psycopg2
        # would send SET statements at every autocommit switch (see begin).
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"
                        + (" READ ONLY" if readonly else ""))
        conn.autocommit = False
        return conn

    def begin(self, conn, write: bool) -> None:
        # A write: psycopg2 opens the transaction at its first statement. A read runs in
        # autocommit mode: no BEGIN and COMMIT round trips around its SELECTs, and nothing
        # lost — under READ COMMITTED each statement of a transaction takes its own snapshot
        # anyway, and reads take no locks that would need holding.
        conn.autocommit = not write

    def convert_sql(self, sql: str) -> str:
        out = self._sql_cache.get(sql)
        if out is None:
            out = _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))
            self._sql_cache[sql] = out
        return out

    def convert_schema(self, sql: str) -> str:
        return re.sub(r"\bBLOB\b", "BYTEA", sql)

    def is_integrity_error(self, exc: BaseException) -> bool:
        import psycopg2
        return isinstance(exc, psycopg2.IntegrityError)

    def binary(self, value: bytes) -> Any:
        import psycopg2
        return psycopg2.Binary(value)


def create_engine(engine: str, *, path: str | None = None, dsn: str | None = None):
    if engine == "sqlite":
        return SqliteEngine(path or ":memory:")
    if engine == "postgres":
        return PostgresEngine(dsn or "")
    raise ValueError(f"unknown database engine {engine!r}")
