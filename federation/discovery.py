"""Resolving server names to the address, port, ``Host`` header and TLS name to use.

Source: server-server-api.md "Resolving server names" (steps 1-6) and "TLS" (SNI). The decision
rules are pure functions at the top of this module (no I/O; the unit tests drive them as decision
tables); the I/O wrappers below them fetch ``/.well-known/matrix/server`` and query DNS.

The flow, as the outbound client uses it:

1. ``needs_well_known(server_name)``: IP literals and names with an explicit port skip the
   ``.well-known`` lookup (steps 1, 2).
2. Otherwise :class:`WellKnownResolver` gives the delegated name (step 3) or ``None`` (error:
   steps 4-6 apply to the original name). The *effective name* is the delegated name or the
   original one.
3. ``plan_connection(effective_name)`` says what the ``Host`` header and certificate name are and
   whether to connect directly or look up SRV records (``_matrix-fed._tcp`` then the deprecated
   ``_matrix._tcp``), falling back to port 8448.
4. ``targets_from_srv(plan, srv_results)`` turns SRV answers into an ordered list of
   (host, port) to try; the endpoint then resolves each host (A/AAAA) and connects.

Note on names: X-Matrix ``origin``/``destination`` always use the original server name
(server-server-api.md "Request Authentication"); only the connection uses the effective name.
"""
from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from homeserver.protocol.ids import parse_server_name

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT = 8448
# server-server-api.md step 3: sensible default 24 hours, maximum 48 hours, errors up to an hour.
WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600 * 1000
WELL_KNOWN_MAX_CACHE_MS = 48 * 3600 * 1000
WELL_KNOWN_ERROR_CACHE_MS = 3600 * 1000
# Shorter than an hour for the first failures (exponential back-off up to the hour).
WELL_KNOWN_FIRST_ERROR_CACHE_MS = 5 * 60 * 1000
WELL_KNOWN_MAX_REDIRECTS = 5
WELL_KNOWN_MAX_BODY = 50 * 1024
WELL_KNOWN_TIMEOUT_S = 10.0

SRV_SERVICES = ("_matrix-fed._tcp", "_matrix._tcp")  # the second is deprecated (steps 3.4, 5)


class WellKnownError(ValueError):
    """The ``.well-known`` response is unusable (bad JSON, missing or invalid ``m.server``)."""


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class ConnectionPlan:
    """How to reach one effective server name (after ``.well-known`` delegation, if any).

    ``direct`` is set when no SRV lookup is needed (IP literal or explicit port); otherwise
    ``srv_names`` are tried in order and ``fallback`` is used when none has records.
    Hosts are bare (IPv6 without brackets).
    """

    server_name: str
    host_header: str
    tls_name: str  # the name (or IP) the certificate must be valid for
    direct: tuple[str, int] | None
    srv_names: tuple[str, ...]
    fallback: tuple[str, int]

    @property
    def sni(self) -> str | None:
        """The TLS server name indication to send; none for an IP (server-server-api.md "TLS")."""
        return None if is_ip_address(self.tls_name) else self.tls_name


# --- pure decision rules --------------------------------------------------------------------

def is_ip_address(host: str) -> bool:
    """Whether ``host`` (brackets allowed around IPv6) is an IP literal."""
    try:
        ipaddress.ip_address(strip_brackets(host))
        return True
    except ValueError:
        return False


def strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def needs_well_known(server_name: str) -> bool:
    """Steps 1 and 2: IP literals and names with an explicit port are used as they are."""
    host, port = parse_server_name(server_name)
    return port is None and not is_ip_address(host)


def parse_well_known(body: bytes) -> str:
    """The delegated server name in a ``/.well-known/matrix/server`` body (step 3).

    The body is JSON whatever its Content-Type (wellknown.yaml). Raises :class:`WellKnownError`
    when it is not a JSON object with a valid ``m.server`` server name.
    """
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WellKnownError("response is not JSON") from None
    if not isinstance(doc, dict):
        raise WellKnownError("response is not a JSON object")
    m_server = doc.get("m.server")
    if not isinstance(m_server, str):
        raise WellKnownError("m.server is missing or not a string")
    try:
        parse_server_name(m_server)
    except ValueError as e:
        raise WellKnownError(f"m.server is not a valid server name: {e}") from None
    return m_server


def well_known_cache_ms(headers: Mapping[str, str], now_ms: int) -> int:
    """How long to cache a successful ``.well-known`` answer, from its cache headers.

    ``Cache-Control: no-store/no-cache`` → not cached (0); ``max-age`` wins over ``Expires``;
    neither → 24 h. Capped at 48 h (step 3). ``headers`` keys are lower-case.
    """
    cache_control = headers.get("cache-control", "")
    directives: dict[str, str | None] = {}
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"') or None
    if "no-store" in directives or "no-cache" in directives:
        return 0
    period: int | None = None
    if directives.get("max-age") is not None:
        try:
            period = max(0, int(directives["max-age"])) * 1000  # type: ignore[arg-type]
        except ValueError:
            period = None
    if period is None and headers.get("expires"):
        try:
            expires = email.utils.parsedate_to_datetime(headers["expires"])
            period = max(0, int(expires.timestamp() * 1000) - now_ms)
        except (TypeError, ValueError, IndexError, OverflowError):
            period = 0  # RFC 9111 5.3: an invalid Expires means "already expired"
    if period is None:
        period = WELL_KNOWN_DEFAULT_CACHE_MS
    return min(period, WELL_KNOWN_MAX_CACHE_MS)


def well_known_error_cache_ms(consecutive_failures: int) -> int:
    """Back-off for failed lookups: 5 min, doubling, at most an hour (step 3)."""
    n = max(1, consecutive_failures)
    return min(WELL_KNOWN_FIRST_ERROR_CACHE_MS * (2 ** min(n - 1, 10)), WELL_KNOWN_ERROR_CACHE_MS)


def plan_connection(effective_name: str) -> ConnectionPlan:
    """Where and how to connect for ``effective_name`` (steps 1, 2, 3.1-3.5, 4-6).

    The ``Host`` header is the effective name as written (with its port, if any); the certificate
    must be valid for its host part; an IP literal or explicit port means a direct connection;
    otherwise SRV ``_matrix-fed._tcp`` then ``_matrix._tcp`` for the host, then port 8448.
    """
    host, port = parse_server_name(effective_name)
    bare = strip_brackets(host)
    if is_ip_address(host):
        return ConnectionPlan(effective_name, effective_name, bare,
                              (bare, port or DEFAULT_FEDERATION_PORT), (), (bare, port or DEFAULT_FEDERATION_PORT))
    if port is not None:
        return ConnectionPlan(effective_name, effective_name, host, (host, port), (), (host, port))
    return ConnectionPlan(effective_name, effective_name, host, None,
                          tuple(f"{service}.{host}" for service in SRV_SERVICES),
                          (host, DEFAULT_FEDERATION_PORT))


def order_srv_records(records: Iterable[SrvRecord],
                      rng: Callable[[], float] | None = None) -> list[tuple[str, int]]:
    """(host, port) pairs in the order RFC 2782 says to try them.

    Lowest priority first; within a priority, a weighted random order (weight 0 records have a
    small chance). A lone record with target ``.`` means "service not offered": no targets.
    """
    recs = [r for r in records]
    if len(recs) == 1 and recs[0].target in (".", ""):
        return []
    recs = [r for r in recs if r.target not in (".", "")]
    rand = rng or random.random
    out: list[tuple[str, int]] = []
    for priority in sorted({r.priority for r in recs}):
        group = sorted((r for r in recs if r.priority == priority), key=lambda r: -r.weight)
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                chosen = group[0]
            else:
                pick = rand() * total
                acc = 0
                chosen = group[-1]
                for r in group:
                    acc += r.weight
                    if pick < acc:
                        chosen = r
                        break
            group.remove(chosen)
            out.append((chosen.target.rstrip("."), chosen.port))
    return out


def targets_from_srv(plan: ConnectionPlan, srv_results: Mapping[str, Sequence[SrvRecord]],
                     rng: Callable[[], float] | None = None) -> list[tuple[str, int]]:
    """The (host, port) pairs to try for ``plan``, given the answers to its SRV lookups.

    ``srv_results`` maps each looked-up SRV name to its records (absent or empty: no records).
    The first SRV name with usable records wins (``_matrix-fed`` before ``_matrix``).
    """
    if plan.direct is not None:
        return [plan.direct]
    for name in plan.srv_names:
        records = srv_results.get(name) or ()
        if records:
            ordered = order_srv_records(records, rng)
            if ordered:
                return ordered
    return [plan.fallback]


def resolve(server_name: str, well_known: str | None,
            srv_results: Mapping[str, Sequence[SrvRecord]] | None = None,
            rng: Callable[[], float] | None = None) -> tuple[ConnectionPlan, list[tuple[str, int]]]:
    """The whole decision for ``server_name``: its connection plan and the targets to try.

    ``well_known`` is the ``m.server`` value of a valid ``.well-known`` answer, or ``None`` when the
    lookup failed or was not made (it is ignored where steps 1/2 apply).
    """
    effective = server_name
    if needs_well_known(server_name) and well_known is not None:
        effective = well_known
    plan = plan_connection(effective)
    return plan, targets_from_srv(plan, srv_results or {}, rng)


# --- I/O: DNS ----------------------------------------------------------------------------------

class DnsResolver:
    """What discovery needs from DNS. Tests inject a fake with the same two methods."""

    async def srv(self, name: str) -> list[SrvRecord]:  # pragma: no cover - interface
        raise NotImplementedError

    async def addresses(self, host: str) -> list[str]:  # pragma: no cover - interface
        """IP addresses (A and AAAA, CNAMEs followed) of ``host``; empty when none."""
        raise NotImplementedError


class TwistedDnsResolver(DnsResolver):
    """DNS through ``twisted.names`` (hosts file first, then the system's name servers)."""

    def __init__(self, resolver=None):
        self._resolver = resolver

    def _get(self):
        if self._resolver is None:
            from twisted.names import client
            self._resolver = client.createResolver()
        return self._resolver

    async def srv(self, name: str) -> list[SrvRecord]:
        from twisted.names import dns, error
        try:
            answers, _auth, _add = await self._get().lookupService(name)
        except (error.DomainError, error.AuthoritativeDomainError):
            return []  # NXDOMAIN: no records
        except Exception as e:
            logger.info("SRV lookup of %s failed: %s", name, e)
            return []
        return [SrvRecord(a.payload.priority, a.payload.weight, a.payload.port, str(a.payload.target))
                for a in answers if a.type == dns.SRV]

    async def addresses(self, host: str) -> list[str]:
        from twisted.names import dns
        out: list[str] = []
        for lookup, rtype in ((self._get().lookupAddress, dns.A), (self._get().lookupIPV6Address, dns.AAAA)):
            try:
                answers, _auth, _add = await lookup(host)
            except Exception:
                continue
            for a in answers:
                if a.type == rtype:
                    addr = a.payload.dottedQuad() if rtype == dns.A else _ipv6_text(a.payload.address)
                    if addr not in out:
                        out.append(addr)
        return out


def _ipv6_text(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


# --- I/O: .well-known --------------------------------------------------------------------------

class WellKnownResolver:
    """Fetches and caches ``https://<hostname>/.well-known/matrix/server`` (step 3).

    ``agent`` is an IAgent that already enforces TLS verification and the IP deny list (the
    outbound client builds it); redirects are followed up to ``WELL_KNOWN_MAX_REDIRECTS``.
    """

    def __init__(self, reactor, agent, clock_ms: Callable[[], int]):
        from twisted.web.client import RedirectAgent
        self._reactor = reactor
        self._agent = RedirectAgent(agent, redirectLimit=WELL_KNOWN_MAX_REDIRECTS)
        self._clock_ms = clock_ms
        # hostname -> (delegated name or None, expiry ms, consecutive failures)
        self._cache: dict[str, tuple[str | None, int, int]] = {}

    async def delegated_name(self, server_name: str) -> str | None:
        """The ``m.server`` delegation for ``server_name``, or None (error or not applicable)."""
        if not needs_well_known(server_name):
            return None
        host, _ = parse_server_name(server_name)
        now = self._clock_ms()
        cached = self._cache.get(host)
        if cached is not None and cached[1] > now:
            return cached[0]
        failures = cached[2] if cached is not None and cached[0] is None else 0
        try:
            body, headers = await self._fetch(host)
            delegated = parse_well_known(body)
        except Exception as e:
            failures += 1
            logger.info("no usable .well-known for %s: %s", host, e)
            self._cache[host] = (None, now + well_known_error_cache_ms(failures), failures)
            return None
        self._cache[host] = (delegated, now + well_known_cache_ms(headers, now), 0)
        return delegated

    async def _fetch(self, host: str) -> tuple[bytes, dict[str, str]]:
        import treq
        from twisted.web.http_headers import Headers

        url = f"https://{host}/.well-known/matrix/server".encode("ascii")
        d = self._agent.request(b"GET", url, Headers({b"User-Agent": [b"uzel"]}))
        d.addTimeout(WELL_KNOWN_TIMEOUT_S, self._reactor)
        response = await d
        if response.code != 200:
            raise WellKnownError(f"HTTP {response.code}")
        chunks: list[bytes] = []
        size = [0]

        def collect(data: bytes) -> None:
            size[0] += len(data)
            if size[0] > WELL_KNOWN_MAX_BODY:
                raise WellKnownError("response too large")
            chunks.append(data)

        body_d = treq.collect(response, collect)
        body_d.addTimeout(WELL_KNOWN_TIMEOUT_S, self._reactor)
        await body_d
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                   for k, v in response.headers.getAllRawHeaders()}
        return b"".join(chunks), headers
