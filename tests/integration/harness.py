"""Run a real uzel process for integration tests, and talk to it over HTTP.

One server per test module, on each database engine::

    from tests.integration.harness import api, make_server_fixture, register_user

    server = make_server_fixture()                              # sqlite and postgres
    guests = make_server_fixture({"allow_guest_access": True}, engines=("sqlite",))

    def test_whoami(server):
        user_id, token, device_id = register_user(server.base_url, "alice", "pw")
        status, body = api(server.base_url, "GET", "/_matrix/client/v3/account/whoami", token)

The config comes from ``uzel generate-config`` (written into a temporary directory), then the
harness sets one plain listener on a free loopback port serving every resource, the database,
open registration without verification, no rate limits and cheap bcrypt, plus the module's
overrides. The server runs as ``python -m homeserver.cli run`` and is stopped by its PID.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import requests
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINES = ("sqlite", "postgres")
SERVER_NAME = "test.local"
START_TIMEOUT_S = 60.0


@dataclass
class UzelServer:
    base_url: str  # http://127.0.0.1:PORT
    server_name: str
    config_path: str
    config: dict  # the YAML written
    engine: str
    shared_secret: str
    log_path: str
    pid: int

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_section(engine: str, data_dir: str) -> dict:
    if engine == "sqlite":
        return {"name": "sqlite3", "args": {"database": os.path.join(data_dir, "homeserver.db")}}
    from tests import pg_harness
    pg = pg_harness.get_server()
    if not pg.admin_dsn:
        if os.environ.get("UZEL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unavailable: {pg.error}")
        pytest.skip(f"PostgreSQL unavailable: {pg.error}")
    return {"name": "psycopg2", "args": {"dsn": pg.create_database(), "cp_min": 1, "cp_max": 5}}


def write_config(data_dir: str, port: int, engine: str = "sqlite", overrides: dict | None = None,
                 server_name: str = SERVER_NAME) -> tuple[str, dict]:
    """Generate a config in ``data_dir`` with ``uzel generate-config`` and adjust it for tests;
    returns (path, the YAML as a dict)."""
    path = os.path.join(data_dir, "homeserver.yaml")
    proc = subprocess.run([sys.executable, "-m", "homeserver.cli", "generate-config", "--server-name", server_name,
                           "--config-path", path, "--client-port", str(port)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"uzel generate-config failed: {proc.stderr or proc.stdout}")
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config.update({
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                       "resources": [{"names": ["client", "federation", "keys", "media"]}]}],
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "database": _database_section(engine, data_dir),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "enable_ratelimiting": False,
        "bcrypt_rounds": 4,
        "log_level": "INFO",
    })
    config.update(overrides or {})
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path, config


def start_server(data_dir: str, engine: str = "sqlite", overrides: dict | None = None,
                 server_name: str = SERVER_NAME) -> tuple[UzelServer, subprocess.Popen]:
    port = free_port()
    path, config = write_config(data_dir, port, engine, overrides, server_name)
    log_path = os.path.join(data_dir, "uzel.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config", path], cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = UzelServer(f"http://127.0.0.1:{port}", server_name, path, config, engine,
                        config.get("registration_shared_secret") or "", log_path, proc.pid)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"uzel exited with {proc.returncode} during start-up:\n{server.log()[-4000:]}")
        try:
            if requests.get(server.base_url + "/_matrix/client/versions", timeout=2).status_code == 200:
                return server, proc
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"uzel did not answer within {START_TIMEOUT_S}s:\n{server.log()[-4000:]}")
        time.sleep(0.1)


def kill_and_restart(server: UzelServer, proc: subprocess.Popen) -> subprocess.Popen:
    """Crash the server (SIGKILL to its PID, no shutdown code runs) and start it again with the
    same config, database and port; the log is appended to. Returns the new process (``server.pid``
    is updated)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    log = open(server.log_path, "ab")
    new = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config", server.config_path],
                           cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server.pid = new.pid
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if new.poll() is not None:
            raise RuntimeError(f"uzel exited with {new.returncode} on restart:\n{server.log()[-4000:]}")
        try:
            if requests.get(server.base_url + "/_matrix/client/versions", timeout=2).status_code == 200:
                return new
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop_server(new)
            raise RuntimeError(f"uzel did not answer within {START_TIMEOUT_S}s after restart:\n{server.log()[-4000:]}")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the process we started (by its PID): SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def running_server(engine: str = "sqlite", overrides: dict | None = None,
                   server_name: str = SERVER_NAME) -> Iterator[UzelServer]:
    """Generator for fixtures: yields a started server, stops it and removes its files after."""
    data_dir = tempfile.mkdtemp(prefix="uzel-it-")
    proc = None
    try:
        server, proc = start_server(data_dir, engine, overrides, server_name)
        yield server
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def make_server_fixture(overrides: dict | None = None, engines=ENGINES):
    """A module-scoped fixture running one server per engine for the module's tests."""
    @pytest.fixture(scope="module", params=list(engines))
    def _server(request):
        yield from running_server(request.param, overrides)
    return _server


# --- client helpers ----------------------------------------------------------------------------

def api(base: str, method: str, path: str, token: str | None = None, json: Any = None, *,
        params: dict | None = None, headers: dict | None = None, data: bytes | None = None,
        timeout: float = 30) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON body or None). ``path`` starts with /_matrix/..."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    resp = requests.request(method, base + path, json=json, params=params, headers=h, data=data, timeout=timeout)
    try:
        body = resp.json()
    except ValueError:
        body = None
    return resp.status_code, body


def register_user(base: str, name: str, password: str = "correct horse battery staple", *,
                  device_id: str | None = None) -> tuple[str, str, str]:
    """Register through /register with m.login.dummy; returns (user_id, access_token, device_id)."""
    body: dict = {"username": name, "password": password, "auth": {"type": "m.login.dummy"}}
    if device_id is not None:
        body["device_id"] = device_id
    status, resp = api(base, "POST", "/_matrix/client/v3/register", json=body)
    if status != 200:
        raise AssertionError(f"registering {name} failed: {status} {resp}")
    return resp["user_id"], resp["access_token"], resp["device_id"]


def login(base: str, name: str, password: str, **extra) -> dict:
    """Password login with the m.id.user identifier; returns the /login response."""
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": password}
    body.update(extra)
    status, resp = api(base, "POST", "/_matrix/client/v3/login", json=body)
    if status != 200:
        raise AssertionError(f"login of {name} failed: {status} {resp}")
    return resp


def db_execute(server: UzelServer, sql: str, args: tuple = ()) -> list[tuple]:
    """Run one SQL statement (``?`` placeholders) on the server's database, committed; returns
    the rows. For test set-up the API cannot do (registration tokens, forcing expiry)."""
    db = server.config["database"]
    if db["name"] == "sqlite3":
        import sqlite3
        conn = sqlite3.connect(db["args"]["database"], timeout=30)
        try:
            rows = conn.execute(sql, args).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    import psycopg2
    conn = psycopg2.connect(db["args"]["dsn"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), args)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()
