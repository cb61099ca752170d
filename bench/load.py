"""The client side of the benchmark: an asyncio HTTP load generator and Matrix client-API helpers.

* ``make_client(base_url)`` returns an ``HttpClient``: aiohttp when it is installed (keep-alive
  connection pool, one event loop), otherwise http.client connections in a thread pool.
* ``Matrix`` wraps the client-server calls the scenarios use (register, createRoom, send, join,
  sync, messages). Each call checks the status and the body shape; a failure raises ``ApiError``,
  and a route the server does not have (404/405 ``M_UNRECOGNIZED``, or a non-JSON 404/405) raises
  ``EndpointMissing`` so that the scenario reports "n/a (404)" instead of an error count.
* ``run_load(op, count=, concurrency=, time_limit=)`` runs ``op(i)`` up to ``count`` times with
  ``concurrency`` workers, starting no new operation after ``time_limit`` seconds, and records
  each operation's latency in a ``Stats``. An operation that raises is an error, never a success.
"""
from __future__ import annotations

import asyncio
import collections
import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

try:
    import aiohttp
except ImportError:  # pragma: no cover - depends on the environment
    aiohttp = None

CLIENT_PREFIX = "/_matrix/client/v3"
DEFAULT_TIMEOUT = 60.0


# --- errors and responses -------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    raw: bytes
    latency: float  # seconds


class ApiError(Exception):
    """A request that failed: transport error, timeout, non-2xx status, or a malformed body."""

    def __init__(self, what: str, response: Response | None = None):
        self.response = response
        detail = ""
        if response is not None:
            errcode = response.body.get("errcode") if isinstance(response.body, dict) else None
            detail = f" -> {response.status} {errcode or response.raw[:80]!r}"
        super().__init__(what + detail)

    @property
    def kind(self) -> str:
        """A short label for error tallies: 'HTTP 500 M_UNKNOWN', 'timeout', 'bad body'."""
        r = self.response
        if r is None:
            return str(self.args[0]).split(":")[0][:60]
        errcode = r.body.get("errcode") if isinstance(r.body, dict) else None
        return f"HTTP {r.status}" + (f" {errcode}" if errcode else "")


class EndpointMissing(Exception):
    """The server does not serve this route (yet)."""

    def __init__(self, method: str, path: str, status: int):
        self.method, self.path, self.status = method, path, status
        super().__init__(f"{method} {path}: {status}")


def _is_unrecognized(resp: Response) -> bool:
    if resp.status not in (404, 405, 501):
        return False
    if not isinstance(resp.body, dict):
        return True
    return resp.body.get("errcode") == "M_UNRECOGNIZED"


# --- HTTP clients ---------------------------------------------------------------------------------

class HttpClient:
    """``await request(method, path, ...)`` -> Response. Never raises for an HTTP status;
    raises ApiError for transport failures and timeouts."""

    def __init__(self, base_url: str, max_connections: int = 64):
        self.base_url = base_url.rstrip("/")
        self.max_connections = max_connections

    @staticmethod
    def _encode(token: str | None, json_body: Any) -> tuple[dict[str, str], bytes | None]:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return headers, data

    @staticmethod
    def _decode(status: int, raw: bytes, latency: float) -> Response:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return Response(status, body, raw, latency)

    async def request(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
                      params: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Response:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    def url(self, path: str, params: dict[str, Any] | None) -> str:
        if params:
            path += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return path


class AiohttpClient(HttpClient):
    name = "aiohttp"

    def __init__(self, base_url: str, max_connections: int = 64):
        super().__init__(base_url, max_connections)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_connections, force_close=False,
                                             enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(self.base_url, connector=connector, auto_decompress=True,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def request(self, method, path, *, token=None, json_body=None, params=None, timeout=DEFAULT_TIMEOUT):
        headers, data = self._encode(token, json_body)
        session = self._get_session()
        start = time.perf_counter()
        try:
            async with session.request(method, self.url(path, params), data=data, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            raise ApiError(f"timeout: {method} {path} after {timeout:.0f} s") from None
        except aiohttp.ClientError as e:
            raise ApiError(f"connection error: {method} {path}: {e!r}") from None
        return self._decode(status, raw, time.perf_counter() - start)

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None


class ThreadedClient(HttpClient):
    """http.client in a thread pool: one keep-alive connection per worker thread."""

    name = "http.client+threads"

    def __init__(self, base_url: str, max_connections: int = 64):
        super().__init__(base_url, max_connections)
        parts = urllib.parse.urlsplit(self.base_url)
        self._host, self._port = parts.hostname, parts.port or 80
        self._pool = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="bench-http")
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []

    def _blocking(self, method, target, headers, data, timeout):
        conn = getattr(self._local, "conn", None)
        for attempt in (0, 1):
            if conn is None:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
                self._local.conn = conn
                self._all.append(conn)
            start = time.perf_counter()
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                else:
                    conn.timeout = timeout
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                return resp.status, raw, time.perf_counter() - start
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                conn = self._local.conn = None
                if attempt == 1 or method not in ("GET", "PUT"):  # retry idempotent requests once
                    raise ApiError(f"connection error: {method} {target}: {e!r}") from None
            except TimeoutError:
                conn.close()
                self._local.conn = None
                raise ApiError(f"timeout: {method} {target} after {timeout:.0f} s") from None
            except OSError as e:
                conn.close()
                self._local.conn = None
                raise ApiError(f"connection error: {method} {target}: {e!r}") from None
        raise AssertionError("unreachable")

    async def request(self, method, path, *, token=None, json_body=None, params=None, timeout=DEFAULT_TIMEOUT):
        headers, data = self._encode(token, json_body)
        loop = asyncio.get_running_loop()
        status, raw, latency = await loop.run_in_executor(
            self._pool, self._blocking, method, self.url(path, params), headers, data, timeout)
        return self._decode(status, raw, latency)

    async def close(self):
        for conn in self._all:
            conn.close()
        self._pool.shutdown(wait=False)


def make_client(base_url: str, max_connections: int = 64, prefer: str | None = None) -> HttpClient:
    """aiohttp when installed (or ``prefer="aiohttp"``), else http.client in threads."""
    if prefer != "threads" and aiohttp is not None:
        return AiohttpClient(base_url, max_connections)
    return ThreadedClient(base_url, max_connections)


def client_kind() -> str:
    return AiohttpClient.name if aiohttp is not None else ThreadedClient.name


# --- Matrix client-server helpers ------------------------------------------------------------------

@dataclass
class User:
    user_id: str
    token: str
    localpart: str


def q(segment: str) -> str:
    """Percent-encode one path segment (room IDs contain '!' and ':')."""
    return urllib.parse.quote(segment, safe="")


class Matrix:
    """The client-server calls the scenarios need, with status and shape checks."""

    def __init__(self, http: HttpClient, password: str = "bench-password-1"):
        self.http = http
        self.password = password
        self._txn = 0

    async def call(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
                   params: dict | None = None, timeout: float = DEFAULT_TIMEOUT, expect: str | None = None,
                   prefix: str = CLIENT_PREFIX, label: str | None = None) -> Any:
        """One request; returns the JSON body. ``expect`` names a key the body must hold;
        ``label`` is the route template used in messages (default: the path)."""
        resp = await self.http.request(method, prefix + path, token=token, json_body=json_body, params=params,
                                       timeout=timeout)
        label = prefix + (label or path)
        if _is_unrecognized(resp):
            raise EndpointMissing(method, label, resp.status)
        if not 200 <= resp.status < 300:
            raise ApiError(f"{method} {label}", resp)
        if not isinstance(resp.body, dict):
            raise ApiError(f"bad body: {method} {label} returned no JSON object", resp)
        if expect is not None and expect not in resp.body:
            raise ApiError(f"bad body: {method} {label} response lacks {expect!r}", resp)
        return resp.body

    def txn_id(self) -> str:
        self._txn += 1
        return f"b{time.monotonic_ns()}.{self._txn}"

    async def register(self, localpart: str) -> User:
        """POST /register with the dummy auth stage (registration is open on both servers)."""
        body = await self.call("POST", "/register", json_body={
            "username": localpart, "password": self.password, "auth": {"type": "m.login.dummy"},
            "initial_device_display_name": "bench"}, expect="access_token")
        return User(body["user_id"], body["access_token"], localpart)

    async def create_room(self, user: User, **content: Any) -> str:
        body = await self.call("POST", "/createRoom", token=user.token, json_body=content, expect="room_id")
        return body["room_id"]

    async def send_message(self, user: User, room_id: str, text: str) -> str:
        body = await self.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{q(self.txn_id())}",
                               token=user.token, json_body={"msgtype": "m.text", "body": text},
                               expect="event_id", label="/rooms/{roomId}/send/m.room.message/{txnId}")
        return body["event_id"]

    async def join(self, user: User, room_id: str) -> str:
        body = await self.call("POST", f"/join/{q(room_id)}", token=user.token, json_body={}, expect="room_id",
                               label="/join/{roomIdOrAlias}")
        return body["room_id"]

    async def sync(self, user: User, *, since: str | None = None, timeout_ms: int = 0, filter: Any = None,
                   full_state: bool = False, request_timeout: float = DEFAULT_TIMEOUT) -> dict:
        params: dict[str, Any] = {"timeout": timeout_ms}
        if since:
            params["since"] = since
        if filter is not None:
            params["filter"] = filter if isinstance(filter, str) else json.dumps(filter, separators=(",", ":"))
        if full_state:
            params["full_state"] = "true"
        return await self.call("GET", "/sync", token=user.token, params=params, expect="next_batch",
                               timeout=request_timeout)

    async def messages(self, user: User, room_id: str, *, from_token: str | None = None, direction: str = "b",
                       limit: int = 100) -> dict:
        params = {"dir": direction, "limit": limit, "from": from_token}
        return await self.call("GET", f"/rooms/{q(room_id)}/messages", token=user.token, params=params,
                               expect="chunk", label="/rooms/{roomId}/messages")


# --- measuring ------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass
class Stats:
    """Latencies of successful operations, error tallies, and the measured wall time."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: collections.Counter = field(default_factory=collections.Counter)
    first_error: str | None = None
    started: float | None = None
    ended: float | None = None

    def begin(self) -> None:
        self.started = time.perf_counter()

    def end(self) -> None:
        self.ended = time.perf_counter()

    def ok(self, latency: float) -> None:
        self.latencies.append(latency)

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        kind = exc.kind if isinstance(exc, ApiError) else type(exc).__name__
        self.error_kinds[kind] += 1
        if self.first_error is None:
            self.first_error = str(exc)[:300]

    @property
    def duration(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.perf_counter()) - self.started

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        duration = self.duration
        return {
            "count": len(lat),
            "errors": self.errors,
            "ops_s": round(len(lat) / duration, 2) if duration > 0 and lat else 0.0,
            "p50_ms": ms(percentile(lat, 50)),
            "p95_ms": ms(percentile(lat, 95)),
            "p99_ms": ms(percentile(lat, 99)),
            "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
            "duration_s": round(duration, 3),
            "error_kinds": dict(self.error_kinds),
            "first_error": self.first_error,
        }


async def run_load(op: Callable[[int], Awaitable[Any]], *, count: int, concurrency: int, time_limit: float,
                   stats: Stats | None = None) -> Stats:
    """Run ``op(0) .. op(count-1)`` on ``concurrency`` workers; no operation starts after
    ``time_limit`` seconds (those in flight finish, bounded by their request timeouts).

    Each op's latency is measured around the whole call. ``EndpointMissing`` stops the run and is
    re-raised; any other exception counts as an error. Worker ``w`` takes indices w, w+concurrency,
    ... so that ``op`` can pick a per-worker user with ``i % concurrency``.
    """
    stats = stats or Stats()
    deadline = time.perf_counter() + time_limit
    missing: list[EndpointMissing] = []

    async def worker(w: int) -> None:
        for i in range(w, count, concurrency):
            if missing or time.perf_counter() >= deadline:
                return
            start = time.perf_counter()
            try:
                await op(i)
            except EndpointMissing as e:
                missing.append(e)
                return
            except Exception as e:  # noqa: BLE001 - every failure is an error, never a success
                stats.error(e)
            else:
                stats.ok(time.perf_counter() - start)

    stats.begin()
    await asyncio.gather(*(worker(w) for w in range(min(concurrency, count))))
    stats.end()
    if missing:
        raise missing[0]
    return stats


async def gather_limited(factories: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run ``f()`` for each factory with at most ``limit`` in flight, results in order (set-up
    work: the first exception propagates and the rest are not started)."""
    results: list[Any] = [None] * len(factories)
    failed: list[BaseException] = []

    async def worker(w: int) -> None:
        for i in range(w, len(factories), limit):
            if failed:
                return
            try:
                results[i] = await factories[i]()
            except BaseException as e:  # noqa: BLE001
                failed.append(e)
                return

    await asyncio.gather(*(worker(w) for w in range(min(limit, len(factories)))))
    if failed:
        raise failed[0]
    return results
