"""Start a fresh Synapse and a fresh uzel on loopback under identical conditions, for bench/run.py.

Both servers get: a plain HTTP client listener on 127.0.0.1, the same database engine (SQLite file,
or a new PostgreSQL database on one shared PostgreSQL server from tests/pg_harness.py), open
registration without verification, every rate limit lifted, presence off, no TLS, no key servers,
logging at WARNING to a file. Synapse is installed from PyPI into its own venv
(``$UZEL_SYNAPSE_VENV`` or /work/.cache/synapse-venv), never inside the repository.

Processes are stopped only through their own PIDs (``Popen.terminate``/``kill``). Memory is read
from /proc/<pid>/status: VmRSS (now) and VmHWM (peak since start) of the server's main process —
Synapse runs as one process by default, and so does uzel.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SYNAPSE_VENV = "/work/.cache/synapse-venv"
SYNAPSE_PACKAGES = ("matrix-synapse", "psycopg2-binary")

# Registration (not measured) hashes a password on both servers; cheap hashes keep set-up short.
BCRYPT_ROUNDS = 4

# A rate limit nobody reaches: Synapse has no single off switch, so every rc_* key gets this.
_UNLIMITED = {"per_second": 1_000_000, "burst_count": 1_000_000}
SYNAPSE_RATELIMITS = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_3pid_validation": _UNLIMITED,
    "rc_admin_redaction": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_federation": {"window_size": 1000, "sleep_limit": 1_000_000, "sleep_delay": 1,
                      "reject_limit": 1_000_000, "concurrent": 1_000_000},
}


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of one process from /proc/<pid>/status; {} when it is gone."""
    result: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    result[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return result


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- database provisioning ------------------------------------------------------------------

@dataclass
class Database:
    """Where one server keeps its data: a SQLite file path, or PostgreSQL connection keywords."""

    engine: str  # "sqlite" | "postgres"
    sqlite_path: str | None = None
    pg: dict[str, str] = field(default_factory=dict)  # host, port, user, dbname (libpq keywords)

    def synapse_section(self) -> dict:
        if self.engine == "sqlite":
            return {"name": "sqlite3", "args": {"database": self.sqlite_path}}
        args = {"user": self.pg.get("user", "postgres"), "host": self.pg.get("host", "127.0.0.1"),
                "port": int(self.pg.get("port", 5432)), "database": self.pg["dbname"],
                "cp_min": 5, "cp_max": 10}
        if self.pg.get("password"):
            args["password"] = self.pg["password"]
        return {"name": "psycopg2", "args": args}

    def url(self) -> str:
        """The ``uzel generate-config --database-url`` form."""
        if self.engine == "sqlite":
            return "sqlite:///" + self.sqlite_path.lstrip("/")
        auth = self.pg.get("user", "postgres")
        if self.pg.get("password"):
            auth += ":" + self.pg["password"]
        return (f"postgresql://{auth}@{self.pg.get('host', '127.0.0.1')}:{self.pg.get('port', 5432)}"
                f"/{self.pg['dbname']}")


class DatabaseProvider:
    """Hands out one fresh database per server: SQLite files in the work dir, or new databases
    on one PostgreSQL server (``$UZEL_TEST_POSTGRES`` or a private one from tests/pg_harness.py)."""

    def __init__(self, engine: str, workdir: str):
        if engine not in ("sqlite", "postgres"):
            raise ValueError(f"unknown engine {engine!r}")
        self.engine = engine
        self.workdir = workdir
        self._pg = None

    def start(self) -> None:
        if self.engine == "postgres":
            sys.path.insert(0, REPO_ROOT)
            from tests.pg_harness import PostgresServer

            self._pg = PostgresServer()
            if not self._pg.start():
                raise ServerStartError(f"PostgreSQL: {self._pg.error}")

    def new_database(self, name: str) -> Database:
        if self.engine == "sqlite":
            return Database("sqlite", sqlite_path=os.path.join(self.workdir, name, "homeserver.db"))
        dsn = self._pg.create_database()
        if "=" not in dsn or "://" in dsn:
            raise ServerStartError("the benchmark needs a key=value PostgreSQL DSN")
        return Database("postgres", pg=dict(p.split("=", 1) for p in dsn.split()))

    def stop(self) -> None:
        if self._pg is not None:
            self._pg.stop()
            self._pg = None


# --- a server process -----------------------------------------------------------------------

class ServerProcess:
    """One homeserver process on 127.0.0.1:<port>. Subclasses write the config and the command."""

    name = "server"

    def __init__(self, workdir: str, database: Database):
        self.workdir = os.path.join(workdir, self.name)
        os.makedirs(self.workdir, exist_ok=True)
        self.database = database
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(16)
        self.log_path = os.path.join(self.workdir, "server.log")
        self.proc: subprocess.Popen | None = None
        self.version = "?"
        self.cpus: set[int] | None = None  # CPU affinity of the server (all its threads), None: any

    # subclasses
    def prepare(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    # common
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 180.0) -> None:
        self.prepare()
        out = open(os.path.join(self.workdir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=self.environment(),
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=self._set_affinity)
        out.close()
        self.wait_ready(timeout)

    def _set_affinity(self) -> None:  # runs in the child before exec: every thread inherits it
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def wait_ready(self, timeout: float) -> None:
        """Poll GET /_matrix/client/versions until it answers 200; fail if the process exits."""
        deadline = time.monotonic() + timeout
        url = self.base_url + "/_matrix/client/versions"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                                       + self.log_tail())
            try:
                status, _ = _http_get(url, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise ServerStartError(f"{self.name} did not answer {url} within {timeout:.0f} s:\n" + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory_kb(self) -> dict[str, int]:
        return read_memory_kb(self.proc.pid) if self.alive() else {}

    def log_tail(self, lines: int = 30) -> str:
        text = []
        for path in (os.path.join(self.workdir, "stdout.log"), self.log_path):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text.extend(f.read().splitlines()[-lines:])
            except OSError:
                pass
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's own PID, then SIGKILL it if it has not exited within timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class SynapseServer(ServerProcess):
    """Synapse from its own venv: ``python -m synapse.app.homeserver -c homeserver.yaml``."""

    name = "synapse"

    def __init__(self, workdir: str, database: Database, venv: str):
        super().__init__(workdir, database)
        self.python = os.path.join(venv, "bin", "python")

    def config(self) -> dict:
        log_config = os.path.join(self.workdir, "log_config.yaml")
        return {
            "server_name": "localhost",
            "pid_file": os.path.join(self.workdir, "homeserver.pid"),
            "public_baseurl": self.base_url + "/",
            "listeners": [{
                "port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
            }],
            "database": self.database.synapse_section(),
            "log_config": log_config,
            "media_store_path": os.path.join(self.workdir, "media_store"),
            "signing_key_path": os.path.join(self.workdir, "localhost.signing.key"),
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "presence": {"enabled": False},
            "enable_metrics": False,
            "url_preview_enabled": False,
            "bcrypt_rounds": BCRYPT_ROUNDS,
            **SYNAPSE_RATELIMITS,
        }

    def prepare(self) -> None:
        os.makedirs(os.path.join(self.workdir, "media_store"), exist_ok=True)
        if self.database.engine == "sqlite":
            os.makedirs(os.path.dirname(self.database.sqlite_path), exist_ok=True)
        log_config = {
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain",
                                  "filename": self.log_path}},
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        with open(os.path.join(self.workdir, "log_config.yaml"), "w") as f:
            yaml.safe_dump(log_config, f)
        self.config_path = os.path.join(self.workdir, "homeserver.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config(), f, sort_keys=False)
        subprocess.run([self.python, "-m", "synapse.app.homeserver", "-c", self.config_path, "--generate-keys"],
                       cwd=self.workdir, check=True, capture_output=True, timeout=120)
        self.version = subprocess.run([self.python, "-c", "import synapse; print(synapse.__version__)"],
                                      capture_output=True, text=True, timeout=60).stdout.strip() or "?"

    def command(self) -> list[str]:
        return [self.python, "-m", "synapse.app.homeserver", "-c", self.config_path]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        return env


class UzelServer(ServerProcess):
    """uzel from this checkout: ``uzel generate-config`` then ``uzel run``, on the caller's Python."""

    name = "uzel"

    def __init__(self, workdir: str, database: Database, python: str | None = None):
        super().__init__(workdir, database)
        self.python = python or sys.executable

    def prepare(self) -> None:
        if self.database.engine == "sqlite":
            os.makedirs(os.path.dirname(self.database.sqlite_path), exist_ok=True)
        self.config_path = os.path.join(self.workdir, "homeserver.yaml")
        subprocess.run([self.python, "-m", "homeserver.cli", "generate-config", "--server-name", "localhost",
                        "--config-path", self.config_path, "--data-dir", self.workdir,
                        "--client-port", str(self.port), "--bind-address", "127.0.0.1",
                        "--public-baseurl", self.base_url + "/",
                        "--database-url", self.database.url(), "--force"],
                       cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
        with open(self.config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config.update({
            "registration_shared_secret": self.shared_secret,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "enable_ratelimiting": False,
            "presence": {"enabled": False},
            "trusted_key_servers": [],
            "report_stats": False,
            "url_preview_enabled": False,
            "bcrypt_rounds": BCRYPT_ROUNDS,
            "log_level": "WARNING",
            "log_file": self.log_path,
        })
        for listener in config.get("listeners") or []:
            listener["bind_addresses"] = ["127.0.0.1"]
        with open(self.config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        try:
            from importlib.metadata import version
            self.version = version("uzel")
        except Exception:
            self.version = "dev"
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True).stdout.strip()
        if commit:
            self.version += f" ({commit})"

    def command(self) -> list[str]:
        return [self.python, "-m", "homeserver.cli", "run", "--config", self.config_path]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env


# --- the Synapse venv ---------------------------------------------------------------------------

def synapse_venv_path() -> str:
    return os.environ.get("UZEL_SYNAPSE_VENV") or DEFAULT_SYNAPSE_VENV


def ensure_synapse_venv(path: str | None = None, log=print) -> str:
    """A venv with matrix-synapse (and psycopg2-binary) at ``path``; installed from PyPI when
    missing, reused when present. Refuses a path inside the repository. Returns the venv path."""
    path = os.path.abspath(path or synapse_venv_path())
    if os.path.commonpath([path, REPO_ROOT]) == REPO_ROOT:
        raise ServerStartError(f"the Synapse venv must live outside the repository, not at {path}")
    python = os.path.join(path, "bin", "python")
    probe = [python, "-c", "import synapse, psycopg2; print(synapse.__version__)"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return path
    log(f"installing {' '.join(SYNAPSE_PACKAGES)} into {path} (one time) ...")
    if not os.path.exists(python):
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", path], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *SYNAPSE_PACKAGES], check=True)
    subprocess.run(probe, check=True, capture_output=True)
    return path


def describe(server: ServerProcess) -> dict:
    return {"name": server.name, "version": server.version, "url": server.base_url, "pid": server.pid,
            "engine": server.database.engine}


if __name__ == "__main__":  # manual check: start one server and print its URL and memory
    import tempfile

    which = sys.argv[1] if len(sys.argv) > 1 else "synapse"
    engine = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    tmp = tempfile.mkdtemp(prefix="uzel-bench-")
    provider = DatabaseProvider(engine, tmp)
    provider.start()
    db = provider.new_database(which)
    srv = SynapseServer(tmp, db, ensure_synapse_venv()) if which == "synapse" else UzelServer(tmp, db)
    try:
        srv.start()
        print(json.dumps({**describe(srv), "memory_kb": srv.memory_kb()}))
    finally:
        srv.stop()
        provider.stop()
        shutil.rmtree(tmp, ignore_errors=True)
