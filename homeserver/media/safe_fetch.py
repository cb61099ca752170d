"""Fetching URLs that users chose, without letting them reach what they must not (URL previews).

client-server-api/modules/content_repo.md, Security considerations, and authed-content-repo.yaml
``preview_url``: the server fetches an arbitrary URL on a user's behalf, so every connection is
checked (server-side request forgery):

* only ``http`` and ``https`` URLs, at every hop;
* the host is resolved here and each address checked with ``ip_allowed`` (for previews
  ``Config.url_preview_ip_allowed``: url_preview_ip_range_whitelist, else not in
  url_preview_ip_range_blacklist) *before* connecting, and the connection goes to the address that
  was checked — a DNS name cannot switch to a private address between check and use
  (homeserver/http/outbound.py, shared with federation and push gateways);
* redirects are followed by this module (at most ``max_redirects``), and every target goes through
  the same checks (and ``url_allowed``, the url_preview_url_blacklist);
* a ``Content-Length`` over ``max_size`` is refused before reading, and the body is cut off (and
  the request failed) as soon as it passes ``max_size``;
* the whole exchange, every hop included, has one deadline (``timeout_s``).

Failures are :class:`MatrixError` for the client: 403 M_FORBIDDEN "IP address blocked" (Synapse's
text) or "URL blocked", 502 M_TOO_LARGE, 504 M_UNKNOWN on timeout, 502 M_UNKNOWN otherwise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.web._newclient import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from homeserver.http.errors import MatrixError, invalid_param
from homeserver.http.outbound import AddressDenied, CheckedEndpointFactory

logger = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_MAX_DISCARD = 64 * 1024
MAX_URL_LENGTH = 2048


def normalise_url(url: str) -> str:
    """A URL as sent on the wire: IDNA host, percent-encoded path and query, no fragment. Raises
    400 M_INVALID_PARAM for what is not an absolute http(s) URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or any(ord(c) < 0x21 for c in url):
        raise invalid_param("url must be an absolute http or https URL")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
        if host is None:
            raise ValueError("no host")
        if ":" in host:  # IPv6 literal
            netloc = f"[{host}]"
        else:
            netloc = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise invalid_param("url must be an absolute http or https URL") from None
    if parts.scheme.lower() not in ("http", "https") or parts.username or parts.password:
        raise invalid_param("url must be an absolute http or https URL")
    if port is not None:
        netloc += f":{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=?-._~")
    return urlunsplit((parts.scheme.lower(), netloc, path, query, ""))


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class FetchedUrl:
    """The final answer: where it came from after redirects, its status, type and (if it was read)
    its body."""

    url: str
    code: int
    content_type: str | None
    body: bytes | None


def ip_blocked() -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", "IP address blocked")


def too_large(max_size: int) -> MatrixError:
    return MatrixError(502, "M_TOO_LARGE", f"Requested file is too large > {max_size} bytes")


class _Collector(Protocol):
    """Gathers a response body up to ``max_size`` bytes; beyond, stops the transfer and fails with
    _TooLarge (or, with ``discard``, just stops)."""

    def __init__(self, max_size: int, discard: bool = False):
        self.max_size = max_size
        self.discard = discard
        self.parts: list[bytes] = []
        self.size = 0
        self.finished: defer.Deferred = defer.Deferred(self._cancel)

    def _cancel(self, _d) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self.size += len(data)
        if self.size > self.max_size:
            self.transport.stopProducing()
            if self.discard:
                self.finished.callback(b"")
            else:
                self.finished.errback(_TooLarge())
            return
        self.parts.append(data)

    def connectionLost(self, reason) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(reason)


def _header(response, name: bytes) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


class SafeHttpClient:
    def __init__(self, reactor, ip_allowed: Callable[[str], bool], *, max_redirects: int = 5,
                 timeout_s: float = 20.0, user_agent: str = "uzel URL preview"):
        self.reactor = reactor
        self.max_redirects = max_redirects
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        # Imported here: twisted.web.client imports pyOpenSSL (issue 9, memory).
        from twisted.web.client import Agent, HTTPConnectionPool
        pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = Agent.usingEndpointFactory(reactor, CheckedEndpointFactory(reactor, ip_allowed), pool=pool)

    async def get(self, url: str, *, max_size: int, read_body: Callable[[str | None], bool],
                  url_allowed: Callable[[str], bool] = lambda _u: True) -> FetchedUrl:
        """GET ``url`` following redirects; the body is read (at most ``max_size`` bytes) only if
        ``read_body(content_type)`` says so."""
        d = defer.ensureDeferred(self._get(url, max_size, read_body, url_allowed))
        timed_out: list[bool] = []

        def on_deadline() -> None:
            timed_out.append(True)
            d.cancel()  # the cancellation may surface as any error of the request in flight
        deadline = self.reactor.callLater(self.timeout_s, on_deadline)
        try:
            return await d
        except Exception as e:
            if timed_out:
                raise MatrixError(504, "M_UNKNOWN", "Timed out fetching the URL") from None
            raise self._client_error(e, url, max_size) from None
        finally:
            if deadline.active():
                deadline.cancel()

    @staticmethod
    def _client_error(e: Exception, url: str, max_size: int) -> MatrixError:
        if isinstance(e, MatrixError):
            return e
        if isinstance(e, AddressDenied):
            return ip_blocked()
        if isinstance(e, _TooLarge):
            return too_large(max_size)
        logger.info("URL fetch of %s failed: %r", url, e)
        return MatrixError(502, "M_UNKNOWN", "Failed to fetch the URL")

    async def _get(self, url: str, max_size: int, read_body, url_allowed) -> FetchedUrl:
        for _hop in range(self.max_redirects + 1):
            self._check_url(url, url_allowed)
            headers = Headers({b"User-Agent": [self.user_agent.encode()], b"Accept-Language": [b"en"],
                               b"Accept": [b"text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.8"]})
            response = await self._agent.request(b"GET", url.encode("ascii"), headers)
            location = _header(response, b"Location")
            if response.code in REDIRECT_CODES and location:
                await self._discard(response)
                try:
                    url = normalise_url(urljoin(url, location.strip()))
                except MatrixError:
                    raise MatrixError(502, "M_UNKNOWN", "The URL redirects to an unsupported location") from None
                continue
            content_type = _header(response, b"Content-Type")
            if response.code != 200 or not read_body(content_type):
                await self._discard(response)
                return FetchedUrl(url, response.code, content_type, None)
            length = response.length
            if isinstance(length, int) and length > max_size:
                await self._discard(response)
                raise _TooLarge()
            collector = _Collector(max_size)
            response.deliverBody(collector)
            body = await collector.finished
            return FetchedUrl(url, response.code, content_type, body)
        raise MatrixError(502, "M_UNKNOWN", f"Too many redirects (more than {self.max_redirects})")

    @staticmethod
    def _check_url(url: str, url_allowed) -> None:
        try:
            parts = urlsplit(url)
            url.encode("ascii")
            host = parts.hostname
        except (ValueError, UnicodeEncodeError):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise MatrixError(400, "M_INVALID_PARAM", "Only http and https URLs can be fetched")
        if not url_allowed(url):
            raise MatrixError(403, "M_FORBIDDEN", "URL blocked")

    @staticmethod
    async def _discard(response) -> None:
        collector = _Collector(_MAX_DISCARD, discard=True)
        response.deliverBody(collector)
        try:
            await collector.finished
        except Exception:
            pass
