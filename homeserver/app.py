"""The HomeServer object: builds the database, keys and services once and wires them.

Services and stores are built lazily and once, by class: ``hs.get(RoomService)`` calls
``RoomService(hs)`` the first time and returns the same object afterwards. Endpoint modules
under ``homeserver/api/client/`` and ``federation/api/`` are found automatically; each defines
``register_routes(hs, router)``.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import time
from typing import Any, Awaitable, Callable, TypeVar

from homeserver.http.router import Router
from homeserver.http.server import MatrixResource, UzelSite
from homeserver.protocol import signing
from homeserver.storage.database import Database
from homeserver.storage.engines import create_engine
from homeserver.storage.migrations import prepare_database

logger = logging.getLogger(__name__)

T = TypeVar("T")

ROUTE_PACKAGES = ("homeserver.api.client", "homeserver.api.admin", "federation.api", "appservices.api")


class HomeServer:
    def __init__(self, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.config = config
        self.reactor = reactor
        self.hostname: str = config.server_name
        self.start_time = time.time()
        db_conf = config.database
        engine = create_engine(db_conf.engine, path=db_conf.path, dsn=db_conf.dsn)
        self.db = Database(engine, pool_size=db_conf.pool_max, reactor=reactor)
        keys = signing.read_signing_keys(config.signing_key_path)
        if not keys:
            raise RuntimeError(f"no signing key in {config.signing_key_path}")
        self.signing_key = keys[0]
        self.router = Router()
        self._instances: dict[type, Any] = {}
        self._startup: list[Callable[[], Awaitable | None]] = []
        self._ports: list = []

    def get(self, cls: type[T]) -> T:
        """The one instance of a service or store class, built on first use as cls(hs)."""
        inst = self._instances.get(cls)
        if inst is None:
            inst = cls(self)
            self._instances[cls] = inst
        return inst

    def on_start(self, fn: Callable[[], Awaitable | None]) -> None:
        """Run fn once the database is ready and before listeners open."""
        self._startup.append(fn)

    def clock_ms(self) -> int:
        return int(time.time() * 1000)

    # --- start-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Migrate the schema, start the database threads and register every endpoint."""
        prepare_database(self.db)
        self.db.start()
        for package in ROUTE_PACKAGES:
            for module in _iter_modules(package):
                register = getattr(module, "register_routes", None)
                if register is not None:
                    register(self, self.router)

    async def start(self) -> None:
        for fn in self._startup:
            result = fn()
            if hasattr(result, "__await__"):
                await result

    def listen(self) -> list:
        from twisted.internet.error import CannotListenError
        max_json = self.config.max_request_body_size
        max_body = max(self.config.max_upload_size, max_json)
        for listener in self.config.listeners:
            resource = MatrixResource(self.router, set(listener.resources), max_body_size=max_body,
                                      max_json_size=max_json)
            site = UzelSite(resource, max_body_size=max_body, x_forwarded=listener.x_forwarded)
            for addr in listener.bind_addresses:
                try:
                    if listener.tls:
                        from twisted.internet import ssl  # pyOpenSSL only with a TLS listener
                        ctx = ssl.DefaultOpenSSLContextFactory(listener.tls_private_key_path,
                                                               listener.tls_certificate_path)
                        port = self.reactor.listenSSL(listener.port, site, ctx, interface=addr)
                    else:
                        port = self.reactor.listenTCP(listener.port, site, interface=addr)
                except CannotListenError:
                    # "::" usually takes IPv4 as well, so a following "0.0.0.0" may fail to bind.
                    if addr == "0.0.0.0" and "::" in listener.bind_addresses:
                        continue
                    raise
                self._ports.append(port)
                logger.info("listening on %s:%d (%s)", addr, listener.port, ", ".join(sorted(listener.resources)))
        return self._ports


def _iter_modules(package_name: str):
    try:
        package = importlib.import_module(package_name)
    except ModuleNotFoundError:
        return
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        yield importlib.import_module(f"{package_name}.{info.name}")


def setup_logging(config) -> None:
    level = getattr(logging, str(getattr(config, "log_level", "INFO")).upper(), logging.INFO)
    fmt = getattr(config, "log_format", "text")
    handler: logging.Handler
    log_file = getattr(config, "log_file", None)
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    if fmt == "json":
        import json

        class _Json(logging.Formatter):
            def format(self, record):
                return json.dumps({"ts": record.created, "level": record.levelname, "logger": record.name,
                                   "msg": record.getMessage()})
        handler.setFormatter(_Json())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(config) -> None:
    """Start uzel in the foreground (``uzel run``)."""
    from homeserver import lean_reactor
    reactor = lean_reactor.install()  # before anything imports the reactor: pyOpenSSL only once TLS is used
    from twisted.internet import defer

    setup_logging(config)
    from homeserver import process_memory
    process_memory.start_heap_trim()  # freed memory back to the OS every few seconds (issue 9)
    if config.database.engine == "sqlite":
        process_memory.limit_sqlite_heap()  # one budget for every connection's page cache (issue 9)
    hs = HomeServer(config, reactor)
    hs.setup()

    async def _start():
        await hs.start()
        hs.listen()
        logger.info("uzel %s serving as %s", _version(), hs.hostname)

    def _failed(f):
        logger.error("start-up failed: %s", f.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(_start()).addErrback(_failed))
    reactor.run()


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("uzel")
    except Exception:
        return "dev"
