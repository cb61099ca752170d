"""A throwaway PostgreSQL server for the test run.

Uses ``$UZEL_TEST_POSTGRES`` (a DSN of a server where the user may CREATE DATABASE) when set;
otherwise starts a private server from the Debian ``postgresql`` package binaries in a temporary
directory on a free loopback port, and stops it at the end of the run.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid


def _find_bindir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    path = shutil.which("initdb")
    return os.path.dirname(path) if path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.admin_dsn: str | None = os.environ.get("UZEL_TEST_POSTGRES") or None
        self._tmp: str | None = None
        self._bindir: str | None = None
        self._run_as: list[str] = []
        self.error: str | None = None

    def start(self) -> bool:
        if self.admin_dsn:
            return True
        bindir = _find_bindir()
        if not bindir:
            self.error = "no PostgreSQL server binaries (install the Debian postgresql package)"
            return False
        self._bindir = bindir
        self._tmp = tempfile.mkdtemp(prefix="uzel-pg-")
        if os.geteuid() == 0:
            # initdb refuses to run as root: run the server as the package's postgres user.
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                self.error = "running as root and there is no 'postgres' user"
                return False
            os.chown(self._tmp, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        datadir = os.path.join(self._tmp, "data")
        port = _free_port()
        try:
            subprocess.run(self._run_as + [os.path.join(bindir, "initdb"), "-D", datadir, "-U", "postgres",
                                           "--auth=trust", "-E", "UTF8", "--locale=C"],
                           check=True, capture_output=True, timeout=120)
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self._tmp} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            subprocess.run(self._run_as + [os.path.join(bindir, "pg_ctl"), "-D", datadir, "-o", opts, "-w",
                                           "-t", "60", "-l", os.path.join(self._tmp, "log"), "start"],
                           check=True, capture_output=True, timeout=90)
        except (subprocess.SubprocessError, OSError) as e:
            self.error = f"could not start PostgreSQL: {e}"
            return False
        self.admin_dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        return True

    def create_database(self) -> str:
        """A new empty database; returns its DSN."""
        import psycopg2
        name = "uzel_test_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        params = dict(p.split("=", 1) for p in self.admin_dsn.split() if "=" in p) if "=" in self.admin_dsn \
            else None
        if params is not None:
            params["dbname"] = name
            return " ".join(f"{k}={v}" for k, v in params.items())
        # URL form
        base = self.admin_dsn.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def stop(self) -> None:
        if self._tmp and self._bindir:
            subprocess.run(self._run_as + [os.path.join(self._bindir, "pg_ctl"), "-D",
                                           os.path.join(self._tmp, "data"), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


_server: PostgresServer | None = None


def get_server() -> PostgresServer:
    """The run's one server, started on first use (also used by tests that start uzel processes)."""
    global _server
    if _server is None:
        _server = PostgresServer()
        _server.start()
    return _server


def stop_server() -> None:
    if _server is not None:
        _server.stop()
