"""Homeserver → application service HTTP calls (application-service-api.md "Homeserver ->
Application Service API"): transactions, user and alias queries, third-party look-ups, ping.

Every request carries ``Authorization: Bearer <hs_token>`` ("Authorisation", v1.4). A 404, 405
or 501 that says the route is unknown (not a query's plain "not found") from a
``/_matrix/app/v1`` path is retried once on the legacy path ("Legacy routes").
The service's URL comes from the homeserver admin's registration file, so it is trusted: no
IP-range blacklist applies (loopback bridges are the common case).
"""
from __future__ import annotations

import io
import json
import logging
import time
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.web.http_headers import Headers

from .registration import AppService

logger = logging.getLogger(__name__)

TXN_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
MAX_RESPONSE_SIZE = 4 * 1024 * 1024


class AppServiceUnreachable(Exception):
    """No HTTP answer: connection refused, DNS, TLS, or (``timed_out``) no answer in time."""

    def __init__(self, service_id: str, reason: str, timed_out: bool = False):
        super().__init__(f"appservice {service_id}: {reason}")
        self.reason = reason
        self.timed_out = timed_out


class AppServiceResponse:
    __slots__ = ("code", "body")

    def __init__(self, code: int, body: bytes):
        self.code = code
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


def _seg(value: str) -> str:
    return quote(value, safe="")


class AppServiceClient:
    def __init__(self, hs):
        self.hs = hs
        self.reactor = hs.reactor
        self._pool = None
        self._agent = None

    def _get_agent(self):
        """The agent, built on the first request: twisted.web.client and treq import pyOpenSSL,
        which a server without application services need not load (issue 9, memory)."""
        if self._agent is None:
            from twisted.web.client import Agent, HTTPConnectionPool
            self._pool = HTTPConnectionPool(self.reactor, persistent=True)
            self._pool.maxPersistentPerHost = 4
            self._agent = Agent(self.reactor, connectTimeout=CONNECT_TIMEOUT_S, pool=self._pool)
        return self._agent

    # --- one request ------------------------------------------------------------------------------
    async def request(self, service: AppService, method: str, path: str, *, args: Mapping[str, Any] | None = None,
                      body: bytes | None = None, timeout_s: float = QUERY_TIMEOUT_S,
                      legacy_path: str | None = None) -> AppServiceResponse:
        """``method`` ``service.url + path``; when the service does not know the route and there is a
        ``legacy_path``, that path once."""
        resp = await self._request_once(service, method, path, args, body, timeout_s)
        if legacy_path is not None and _route_unknown(resp):
            legacy = await self._request_once(service, method, legacy_path, args, body, timeout_s)
            if legacy.ok:
                return legacy
        return resp

    async def _request_once(self, service: AppService, method: str, path: str, args, body: bytes | None,
                            timeout_s: float) -> AppServiceResponse:
        if service.url is None:
            raise AppServiceUnreachable(service.id, "no url is registered")
        url = service.url + path
        if args:
            url += "?" + urlencode([(k, v) for k, vs in args.items()
                                    for v in (vs if isinstance(vs, (list, tuple)) else [vs])])
        headers = Headers({b"User-Agent": [b"uzel"],
                           b"Authorization": [f"Bearer {service.hs_token}".encode("utf-8")]})
        producer = None
        if body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            from twisted.web.client import FileBodyProducer
            producer = FileBodyProducer(io.BytesIO(body))
        d = defer.ensureDeferred(self._send(method, url, headers, producer))
        d.addTimeout(timeout_s, self.reactor)
        try:
            return await d
        except defer.TimeoutError:
            raise AppServiceUnreachable(service.id, f"no answer within {timeout_s:g}s", timed_out=True) from None
        except AppServiceUnreachable:
            raise
        except Exception as e:
            raise AppServiceUnreachable(service.id, _describe(e)) from None

    async def _send(self, method: str, url: str, headers: Headers, producer) -> AppServiceResponse:
        response = await self._get_agent().request(method.encode("ascii"), url.encode("utf-8"), headers,
                                                   producer)
        chunks: list[bytes] = []
        size = [0]

        def collect(data: bytes) -> None:
            size[0] += len(data)
            if size[0] > MAX_RESPONSE_SIZE:
                raise AppServiceUnreachable("?", "response too large")
            chunks.append(data)

        import treq
        await treq.collect(response, collect)
        return AppServiceResponse(response.code, b"".join(chunks))

    # --- the API ----------------------------------------------------------------------------------
    async def push_transaction(self, service: AppService, txn_id: int, body: str) -> AppServiceResponse:
        """PUT /_matrix/app/v1/transactions/{txnId} (transactions.yaml)."""
        return await self.request(service, "PUT", f"/_matrix/app/v1/transactions/{txn_id}",
                                  body=body.encode("utf-8"), timeout_s=TXN_TIMEOUT_S,
                                  legacy_path=f"/transactions/{txn_id}")

    async def query_user(self, service: AppService, user_id: str) -> bool:
        """GET /_matrix/app/v1/users/{userId} (query_user.yaml): True when the service says it
        exists (it has created it)."""
        try:
            resp = await self.request(service, "GET", f"/_matrix/app/v1/users/{_seg(user_id)}",
                                      legacy_path=f"/users/{_seg(user_id)}")
        except AppServiceUnreachable as e:
            logger.warning("user query for %s failed: %s", user_id, e)
            return False
        return resp.ok

    async def query_alias(self, service: AppService, alias: str) -> bool:
        """GET /_matrix/app/v1/rooms/{roomAlias} (query_room.yaml): True when the service says it
        created the room and alias."""
        try:
            resp = await self.request(service, "GET", f"/_matrix/app/v1/rooms/{_seg(alias)}",
                                      legacy_path=f"/rooms/{_seg(alias)}")
        except AppServiceUnreachable as e:
            logger.warning("alias query for %s failed: %s", alias, e)
            return False
        return resp.ok

    async def query_thirdparty(self, service: AppService, kind: str, protocol: str | None = None,
                               args: Mapping[str, Any] | None = None) -> Any:
        """GET /_matrix/app/v1/thirdparty/{kind}[/{protocol}] (protocols.yaml): the JSON answer,
        or None when the service failed or refused."""
        tail = f"/{kind}" + (f"/{_seg(protocol)}" if protocol is not None else "")
        try:
            resp = await self.request(service, "GET", "/_matrix/app/v1/thirdparty" + tail, args=args,
                                      legacy_path="/_matrix/app/unstable/thirdparty" + tail)
        except AppServiceUnreachable as e:
            logger.warning("third-party %s query failed: %s", kind, e)
            return None
        return resp.json() if resp.ok else None

    async def ping(self, service: AppService, transaction_id: str | None) -> tuple[AppServiceResponse, int]:
        """POST /_matrix/app/v1/ping (ping.yaml); (response, duration in ms). Raises
        AppServiceUnreachable."""
        body: dict = {}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        start = time.monotonic()
        resp = await self.request(service, "POST", "/_matrix/app/v1/ping", body=json.dumps(body).encode("utf-8"),
                                  timeout_s=QUERY_TIMEOUT_S)
        return resp, int((time.monotonic() - start) * 1000)


def _route_unknown(resp: AppServiceResponse) -> bool:
    """405/501, or a 404 that is not a JSON answer of the API itself (a query's "no such user"
    is a 404 with a JSON object; an unknown route is M_UNRECOGNIZED or not JSON)."""
    if resp.code in (405, 501):
        return True
    if resp.code != 404:
        return False
    body = resp.json()
    return not isinstance(body, dict) or body.get("errcode") == "M_UNRECOGNIZED"


def _describe(e: Exception) -> str:
    from twisted.web.client import ResponseNeverReceived
    if isinstance(e, ResponseNeverReceived) and e.reasons:
        return f"no response ({e.reasons[0].getErrorMessage()})"
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:200]
