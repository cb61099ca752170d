"""Versioned schema migrations applied at start-up.

Files in ``homeserver/storage/schema/`` are named ``NNNN_what.sql``; an engine-specific file
``NNNN_what.sqlite.sql`` or ``NNNN_what.postgres.sql`` replaces the common one for that engine.
The database records the highest version applied; a database newer than the code is refused.
"""
from __future__ import annotations

import logging
import os
import re

from .database import Database, Txn

logger = logging.getLogger(__name__)

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schema")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")


class SchemaTooNewError(Exception):
    pass


def available_migrations(engine_name: str) -> list[tuple[int, str, str]]:
    """(version, name, path) per version for this engine, in order."""
    by_version: dict[int, tuple[str, str, str | None]] = {}
    for fname in sorted(os.listdir(SCHEMA_DIR)):
        m = _NAME.match(fname)
        if not m:
            continue
        version, name, only = int(m.group(1)), m.group(2), m.group(3)
        if only and only != engine_name:
            continue
        current = by_version.get(version)
        if current is None or (only and not current[2]):
            by_version[version] = (name, os.path.join(SCHEMA_DIR, fname), only)
    return [(v, n, p) for v, (n, p, _) in sorted(by_version.items())]


def code_schema_version(engine_name: str = "sqlite") -> int:
    migs = available_migrations(engine_name)
    return migs[-1][0] if migs else 0


def _split_statements(sql: str) -> list[str]:
    """Statements of a schema file; ``--`` comments are dropped (schema files keep ``--`` and ``;``
    out of string literals)."""
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _apply(txn: Txn, engine, migrations) -> list[int]:
    txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = txn.scalar("SELECT MAX(version) FROM schema_version") or 0
    newest = migrations[-1][0] if migrations else 0
    if current > newest:
        raise SchemaTooNewError(
            f"the database is at schema version {current}, newer than this uzel ({newest}); "
            "run a newer uzel or restore a backup")
    # Each area numbers its files in its own range, so a file can arrive below versions a database
    # already has: every version not recorded yet is applied, in order.
    done = {r[0] for r in txn.execute("SELECT version FROM schema_version").fetchall()}
    applied = []
    for version, name, path in migrations:
        if version in done:
            continue
        with open(path, encoding="utf-8") as f:
            sql = engine.convert_schema(f.read())
        for stmt in _split_statements(sql):
            txn.execute(stmt)
        txn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        applied.append(version)
        logger.info("applied schema migration %04d_%s", version, name)
    return applied


def prepare_database(db: Database) -> list[int]:
    """Bring the schema up to date (synchronously, before the server starts serving)."""
    migrations = available_migrations(db.engine_name)
    return db.run_sync("prepare_database", _apply, db.engine, migrations)
