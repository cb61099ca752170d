"""Outbound federation requests: discovery, TLS, IP deny list, X-Matrix signing, JSON in and out.

``hs.get(FederationClient)`` gives the one client. Its methods::

    await client.get_json(destination, path, args=None)
    await client.put_json(destination, path, data=None, args=None)
    await client.post_json(destination, path, data=None, args=None)

``path`` is the full, already percent-encoded path (``/_matrix/federation/v1/event/%24abc``);
``args`` is a dict of query parameters (values: str, int or lists of them). They return the
response's JSON object and raise :class:`FederationError` for an error status (code, errcode,
msg from the remote body) or :class:`FederationUnreachable` when no answer came (DNS, refused or
blocked connection, TLS failure, timeout); :class:`FederationDenied` (a subclass of
FederationUnreachable) when configuration forbids the destination.

Rules applied to every request (server-server-api.md "Resolving server names", "TLS",
"Request Authentication"):

* the destination is resolved by federation/discovery.py; the ``Host`` header is the effective
  (possibly delegated) server name and the TLS certificate must be valid for its host part, with
  SNI sent unless it is an IP address;
* certificates are verified against the system's trust store unless
  ``federation_verify_certificates: false``;
* every resolved IP address is checked against ``ip_range_blacklist`` / ``ip_range_whitelist``
  before connecting (so a DNS name pointing at 127.0.0.1 is refused by default;
  homeserver/http/outbound.py, shared with URL previews and push gateways);
* destinations outside ``federation_domain_whitelist`` (when set) are refused before any I/O;
* requests carry ``Authorization: X-Matrix`` signed with our key over method, uri (path and
  query), origin, destination and the JSON body.

Test switch (uzel-specific, not in Synapse): ``federation_client_plain_http_destinations``, a
list of server names (``host:port`` or IP literals) that are contacted over plain HTTP at that
host and port, without ``.well-known``/SRV and without TLS. The IP deny list still applies. It
exists so that test suites can federate uzel instances on loopback; never set it in production.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from homeserver.http.outbound import AddressDenied, TlsPolicy, connect_checked
from homeserver.protocol.ids import parse_server_name

from . import discovery
from .discovery import DnsResolver, TwistedDnsResolver, WellKnownResolver
from .request_auth import sign_request

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
MAX_RESPONSE_SIZE = 64 * 1024 * 1024
_SCHEME_FEDERATION = b"matrix-federation"


class FederationError(Exception):
    """The remote server answered with an error status (or an unusable body)."""

    def __init__(self, code: int, errcode: str, msg: str, body: Any = None):
        super().__init__(f"{code} {errcode}: {msg}")
        self.code = code
        self.errcode = errcode
        self.msg = msg
        self.body = body


class FederationUnreachable(Exception):
    """No response from the destination: resolution, connection, TLS or timeout failure."""

    def __init__(self, destination: str, reason: str):
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


class FederationDenied(FederationUnreachable):
    """Configuration forbids contacting the destination (domain whitelist or IP deny list)."""


class _BlockedAddress(Exception):
    pass


# --- endpoints ---------------------------------------------------------------------------------

@implementer(IStreamClientEndpoint)
class _ResolvingEndpoint:
    """Resolves the targets of one connection plan, checks each address, connects to the first
    that answers; wraps the connection in TLS for ``tls_name`` when given."""

    def __init__(self, owner: "_EndpointFactory", plan: discovery.ConnectionPlan, use_tls: bool):
        self._owner = owner
        self._plan = plan
        self._use_tls = use_tls

    def connect(self, protocol_factory):
        return defer.ensureDeferred(self._connect(protocol_factory))

    async def _connect(self, protocol_factory):
        owner, plan = self._owner, self._plan
        srv_results: dict[str, list[discovery.SrvRecord]] = {}
        if plan.direct is None:
            for name in plan.srv_names:  # stop at the first name that has records
                records = await owner.dns.srv(name)
                srv_results[name] = records
                if records:
                    break
        targets = discovery.targets_from_srv(plan, srv_results)
        blocked: list[str] = []
        last_error: Exception | None = None
        for host, port in targets:
            addresses = [host] if discovery.is_ip_address(host) else await owner.dns.addresses(host)
            if not addresses:
                continue
            try:
                return await connect_checked(owner.reactor, host, addresses, port, protocol_factory,
                                             ip_allowed=owner.ip_allowed, tls=owner.tls if self._use_tls else None,
                                             tls_name=plan.tls_name)
            except AddressDenied as e:
                blocked.extend(e.addresses)
            except Exception as e:  # try the next target
                last_error = e
        if last_error is not None:
            raise last_error
        if blocked:
            raise _BlockedAddress(f"{plan.server_name} resolves only to blocked addresses ({', '.join(blocked)})")
        raise ConnectionError(f"no address found for {plan.server_name}")


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """Endpoints for ``matrix-federation://<effective name>`` (SRV discovery, TLS),
    ``https://host[:port]`` (``.well-known``, TLS) and ``http://host:port`` (plain test switch)."""

    def __init__(self, reactor, dns: DnsResolver, ip_allowed, tls: TlsPolicy, *, allow_http: bool):
        self.reactor = reactor
        self.dns = dns
        self.ip_allowed = ip_allowed
        self.tls = tls
        self.allow_http = allow_http

    def endpointForURI(self, uri):
        netloc = uri.netloc.decode("ascii")
        if uri.scheme == _SCHEME_FEDERATION:
            return _ResolvingEndpoint(self, discovery.plan_connection(netloc), use_tls=True)
        if uri.scheme in (b"https", b"http"):
            if uri.scheme == b"http" and not self.allow_http:
                raise _BlockedAddress("plain HTTP is not allowed here")
            host, port = parse_server_name(netloc)
            bare = discovery.strip_brackets(host)
            port = port or (443 if uri.scheme == b"https" else 80)
            plan = discovery.ConnectionPlan(netloc, netloc, bare, (bare, port), (), (bare, port))
            return _ResolvingEndpoint(self, plan, use_tls=uri.scheme == b"https")
        raise _BlockedAddress(f"unsupported URI scheme {uri.scheme!r}")


# --- the client --------------------------------------------------------------------------------

class FederationClient:
    def __init__(self, hs, *, dns: DnsResolver | None = None):
        self.hs = hs
        config = hs.config
        self.reactor = hs.reactor
        self.dns = dns or TwistedDnsResolver()
        self.plain_http_destinations = frozenset(config.federation_client_plain_http_destinations)
        self._pool = None
        self._agent = None
        self._well_known: WellKnownResolver | None = None

    def _get_agent(self):
        """The agent (and the shared connection pool and well-known resolver), built on the first
        request: twisted.web.client and treq import pyOpenSSL, which a server that does not
        federate need not load (issue 9, memory)."""
        if self._agent is None:
            from twisted.web.client import Agent, HTTPConnectionPool
            config = self.hs.config
            tls = TlsPolicy(config.federation_verify_certificates)
            self._pool = HTTPConnectionPool(self.reactor, persistent=True)
            self._pool.maxPersistentPerHost = 5
            self._pool.cachedConnectionTimeout = 120
            self._pool.retryAutomatically = False
            factory = _EndpointFactory(self.reactor, self.dns, config.ip_allowed, tls, allow_http=True)
            self._agent = Agent.usingEndpointFactory(self.reactor, factory, pool=self._pool)
            if self._well_known is None:
                wk_factory = _EndpointFactory(self.reactor, self.dns, config.ip_allowed, tls, allow_http=False)
                self._well_known = WellKnownResolver(
                    self.reactor, Agent.usingEndpointFactory(self.reactor, wk_factory, pool=self._pool),
                    self.hs.clock_ms)
        return self._agent

    @property
    def well_known(self) -> WellKnownResolver:
        if self._well_known is None:
            self._get_agent()
        return self._well_known

    @well_known.setter
    def well_known(self, resolver) -> None:
        self._well_known = resolver

    async def close(self) -> None:
        """Drop pooled connections (tests, shutdown)."""
        if self._pool is not None:
            await self._pool.closeCachedConnections()

    # --- public API ---
    async def get_json(self, destination: str, path: str, args: Mapping[str, Any] | None = None, *,
                       timeout_s: float = DEFAULT_TIMEOUT_S, sign: bool = True) -> dict:
        return await self.request_json("GET", destination, path, args, None, timeout_s=timeout_s, sign=sign)

    async def put_json(self, destination: str, path: str, data: Any = None,
                       args: Mapping[str, Any] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        return await self.request_json("PUT", destination, path, args, {} if data is None else data,
                                       timeout_s=timeout_s)

    async def post_json(self, destination: str, path: str, data: Any = None,
                        args: Mapping[str, Any] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        return await self.request_json("POST", destination, path, args, {} if data is None else data,
                                       timeout_s=timeout_s)

    async def request_json(self, method: str, destination: str, path: str, args: Mapping[str, Any] | None,
                           content: Any, *, timeout_s: float = DEFAULT_TIMEOUT_S, sign: bool = True) -> dict:
        """One signed request; the response's JSON object, or FederationError/Unreachable."""
        code, _headers, body = await self._request(method, destination, path, args, content, timeout_s=timeout_s,
                                                   sign=sign, max_size=MAX_RESPONSE_SIZE)
        return _decode_response(code, body)

    async def get_raw(self, destination: str, path: str, args: Mapping[str, Any] | None = None, *,
                      max_size: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[int, dict[str, str], bytes]:
        """A signed GET whose body is not JSON (media): ``(status, headers, body)``; headers by
        lower-case name. A body over ``max_size`` is FederationError 502 M_TOO_LARGE; no answer
        is FederationUnreachable."""
        return await self._request("GET", destination, path, args, None, timeout_s=timeout_s, sign=True,
                                   max_size=max_size)

    async def _request(self, method: str, destination: str, path: str, args: Mapping[str, Any] | None,
                       content: Any, *, timeout_s: float, sign: bool, max_size: int):
        self._check_destination(destination)
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        uri = path + ("?" + encode_query(args) if args else "")
        d = defer.ensureDeferred(self._send(method, destination, uri, content, sign, max_size))
        d.addTimeout(timeout_s, self.reactor)
        try:
            return await d
        except (FederationError, FederationUnreachable):
            raise
        except defer.TimeoutError:
            raise FederationUnreachable(destination, f"timed out after {timeout_s:g}s") from None
        except _BlockedAddress as e:
            raise FederationDenied(destination, str(e)) from None
        except Exception as e:
            raise FederationUnreachable(destination, _describe(e)) from None

    # --- internals ---
    def _check_destination(self, destination: str) -> None:
        try:
            parse_server_name(destination)
        except ValueError as e:
            raise FederationDenied(destination, f"invalid server name: {e}") from None
        whitelist = self.hs.config.federation_domain_whitelist
        if whitelist is not None and destination not in whitelist:
            raise FederationDenied(destination, "not in federation_domain_whitelist")

    async def _send(self, method: str, destination: str, uri: str, content: Any, sign: bool,
                    max_size: int = MAX_RESPONSE_SIZE):
        headers = Headers({b"User-Agent": [b"uzel"]})
        if destination in self.plain_http_destinations:
            url = f"http://{destination}{uri}"
            headers.addRawHeader(b"Host", destination.encode("ascii"))
        else:
            effective = destination
            if discovery.needs_well_known(destination):
                effective = await self.well_known.delegated_name(destination) or destination
            url = f"matrix-federation://{effective}{uri}"
            headers.addRawHeader(b"Host", effective.encode("ascii"))
        if sign:
            auth = sign_request(method, uri, self.hs.hostname, destination, self.hs.signing_key, content)
            headers.addRawHeader(b"Authorization", auth.encode("utf-8"))
        body_producer = None
        if content is not None:
            data = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers.addRawHeader(b"Content-Type", b"application/json")
            from twisted.web.client import FileBodyProducer
            body_producer = FileBodyProducer(io.BytesIO(data))
        response = await self._get_agent().request(method.encode("ascii"), url.encode("ascii"), headers, body_producer)
        chunks: list[bytes] = []
        size = [0]

        def collect(data: bytes) -> None:
            size[0] += len(data)
            if size[0] > max_size:
                raise FederationError(502, "M_TOO_LARGE", "Response from remote server is too large")
            chunks.append(data)

        import treq
        await treq.collect(response, collect)
        resp_headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                        for k, v in response.headers.getAllRawHeaders()}
        return response.code, resp_headers, b"".join(chunks)


def encode_query(args: Mapping[str, Any]) -> str:
    """``k=v&k=v2`` with every character outside the unreserved set percent-encoded."""
    pairs = []
    for key, value in args.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, bool):
                v = "true" if v else "false"
            pairs.append((key, str(v)))
    return urlencode(pairs, quote_via=quote, safe="")


def _decode_response(code: int, body: bytes) -> dict:
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    if 200 <= code < 300:
        if not isinstance(parsed, dict):
            raise FederationError(code, "M_NOT_JSON", "Response is not a JSON object", body)
        return parsed
    if isinstance(parsed, dict) and isinstance(parsed.get("errcode"), str):
        return _raise(code, parsed["errcode"], str(parsed.get("error", "")), parsed)
    return _raise(code, "M_UNKNOWN", f"HTTP {code} from remote server", parsed)


def _raise(code: int, errcode: str, msg: str, body: Any):
    raise FederationError(code, errcode, msg, body)


def _describe(e: Exception) -> str:
    from twisted.web._newclient import ResponseNeverReceived, RequestTransmissionFailed
    if isinstance(e, (ResponseNeverReceived, RequestTransmissionFailed)) and e.reasons:
        return f"{type(e).__name__}: {e.reasons[0].getErrorMessage()}"
    return f"{type(e).__name__}: {e}"
