"""Shared fixtures: database engines (SQLite and PostgreSQL) and a running uzel per test module."""
from __future__ import annotations

import os

import pytest

from tests import pg_harness

ENGINES = ["sqlite", "postgres"]


def postgres_dsn_or_skip() -> str:
    server = pg_harness.get_server()
    if not server.admin_dsn:
        if os.environ.get("UZEL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unavailable: {server.error}")
        pytest.skip(f"PostgreSQL unavailable: {server.error}")
    return server.create_database()


def pytest_sessionfinish(session, exitstatus):
    pg_harness.stop_server()


@pytest.fixture(params=ENGINES)
def engine_args(request, tmp_path):
    """(engine, kwargs) for a fresh, empty database on each engine."""
    if request.param == "sqlite":
        return "sqlite", {"path": str(tmp_path / "uzel.db")}
    return "postgres", {"dsn": postgres_dsn_or_skip()}


@pytest.fixture
def database(engine_args):
    """A started Database with the schema applied, on each engine."""
    from homeserver.storage.database import Database
    from homeserver.storage.engines import create_engine
    from homeserver.storage.migrations import prepare_database
    engine, kwargs = engine_args
    db = Database(create_engine(engine, **kwargs), pool_size=3)
    prepare_database(db)
    db.start()
    yield db
    db.close()
