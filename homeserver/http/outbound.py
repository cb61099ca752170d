"""Outbound connections that check the address they go to (server-side request forgery).

Three kinds of outbound request go where someone outside the server chose: the federation
client (server-server-api.md "Resolving server names"; ``ip_range_blacklist`` /
``ip_range_whitelist``), URL previews (client-server-api/modules/content_repo.md "Security
considerations"; ``url_preview_ip_range_*``) and push gateways (a pusher's URL is set by a
client; ``ip_range_*``). Each resolves the host here, checks every address with the caller's
``ip_allowed`` *before* connecting, and connects to an address that was checked, so a DNS name
cannot switch to a private address between check and use.

This module is only that step: which lists apply, redirects, size limits, timeouts and
connection pools stay with each caller. Application services do not use it: their URL comes
from the admin's registration file and is trusted (appservices/client.py).

* :func:`connect_checked`: connect to the first allowed address of a resolved host.
* :class:`CheckedEndpointFactory`: an ``IAgentEndpointFactory`` for ``http``/``https`` URLs
  (host resolved with ``getaddrinfo``) to build a Twisted ``Agent`` on.
* :class:`TlsPolicy`: certificates verified (the default) or not (federation's
  ``federation_verify_certificates: false``).
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Callable, Sequence

from twisted.internet import defer, threads
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0

IpAllowed = Callable[[str], bool]


class AddressDenied(ConnectionError):
    """Every address of ``host`` is refused by the caller's IP range lists (nothing was contacted)."""

    def __init__(self, host: str, addresses: Sequence[str]):
        super().__init__(f"{host}: every address is denied by the IP range lists ({', '.join(addresses)})")
        self.host = host
        self.addresses = list(addresses)


def ip_literal(host: str) -> str | None:
    """``host`` as a normalised IP address when it is one (brackets around IPv6 allowed), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


# --- TLS -----------------------------------------------------------------------------------------

@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedTLS:
    """TLS without certificate checks, SNI still sent (except to IP addresses)."""

    def __init__(self, options, sni: str | None):
        self._options = options
        self._sni = sni.encode("idna") if sni else None

    def clientConnectionForTLS(self, tls_protocol):
        connection = self._options.clientConnectionForTLS(tls_protocol)
        if self._sni:
            connection.set_tlsext_host_name(self._sni)
        return connection


class TlsPolicy:
    """How TLS connections are made: certificates checked against the system's trust store for
    the host name (``verify=True``), or not checked at all."""

    def __init__(self, verify: bool = True):
        self.verify = verify
        self._unverified_options = None

    def creator(self, tls_name: str):
        """The connection creator for a server that must present a certificate for ``tls_name``."""
        from twisted.internet import ssl  # pyOpenSSL on the first TLS connection (issue 9, memory)
        if self.verify:
            return ssl.optionsForClientTLS(tls_name)
        if self._unverified_options is None:
            self._unverified_options = ssl.CertificateOptions(verify=False)
        return _UnverifiedTLS(self._unverified_options, None if ip_literal(tls_name) else tls_name)


# --- connecting ----------------------------------------------------------------------------------

def tcp_endpoint(reactor, address: str, port: int):
    """A TCP endpoint for one IP address (IPv4 or IPv6) with the shared connect timeout."""
    # Imported here: twisted.internet.endpoints imports pyOpenSSL (issue 9, memory).
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
    cls = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
    return cls(reactor, address, port, timeout=CONNECT_TIMEOUT_S)


async def connect_checked(reactor, host: str, addresses: Sequence[str], port: int, protocol_factory, *,
                          ip_allowed: IpAllowed, tls: TlsPolicy | None = None, tls_name: str | None = None):
    """Connect ``protocol_factory`` to the first of ``addresses`` (the resolved ``host``) that
    ``ip_allowed`` accepts and that answers; with ``tls``, wrapped in TLS for ``tls_name``.

    Raises :class:`AddressDenied` when no address is allowed (none is contacted), else the
    last connection error."""
    allowed = [a for a in addresses if ip_allowed(a)]
    if not allowed:
        raise AddressDenied(host, addresses)
    last_error: Exception | None = None
    for address in allowed:
        endpoint = tcp_endpoint(reactor, address, port)
        if tls is not None:
            from twisted.internet.endpoints import wrapClientTLS
            endpoint = wrapClientTLS(tls.creator(tls_name or host), endpoint)
        try:
            return await endpoint.connect(protocol_factory)
        except Exception as e:  # the next address
            last_error = e
    raise last_error or ConnectionError(f"no address for {host}")


async def resolve(reactor, host: str, port: int) -> list[str]:
    """The IP addresses of ``host`` (itself when it is an IP literal), through the system
    resolver in the reactor's thread pool, in the resolver's order without repeats."""
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    infos = await threads.deferToThreadPool(reactor, reactor.getThreadPool(), socket.getaddrinfo,
                                            host, port, 0, socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@implementer(IStreamClientEndpoint)
class _CheckedEndpoint:
    def __init__(self, factory: CheckedEndpointFactory, host: str, port: int, use_tls: bool):
        self._factory, self._host, self._port, self._use_tls = factory, host, port, use_tls

    def connect(self, protocol_factory):
        return defer.ensureDeferred(self._connect(protocol_factory))

    async def _connect(self, protocol_factory):
        f = self._factory
        addresses = await resolve(f.reactor, self._host, self._port)
        try:
            return await connect_checked(f.reactor, self._host, addresses, self._port, protocol_factory,
                                         ip_allowed=f.ip_allowed, tls=f.tls if self._use_tls else None,
                                         tls_name=ip_literal(self._host) or self._host)
        except AddressDenied as e:
            logger.info("outbound: refusing %s", e)
            raise


@implementer(IAgentEndpointFactory)
class CheckedEndpointFactory:
    """Endpoints for ``http://`` and ``https://`` URLs whose host is resolved here and every
    address checked with ``ip_allowed`` before connecting (https: TLS per ``tls``). Build an
    agent with ``Agent.usingEndpointFactory(reactor, CheckedEndpointFactory(...), pool=...)``."""

    def __init__(self, reactor, ip_allowed: IpAllowed, tls: TlsPolicy | None = None):
        self.reactor = reactor
        self.ip_allowed = ip_allowed
        self.tls = tls or TlsPolicy(verify=True)

    def endpointForURI(self, uri):
        if uri.scheme not in (b"http", b"https"):
            raise ValueError(f"unsupported URI scheme {uri.scheme!r}")
        return _CheckedEndpoint(self, uri.host.decode("idna").strip("[]"), uri.port, uri.scheme == b"https")
