"""X-Matrix request signatures: building them (outbound) and checking them (inbound).

Source: server-server-api.md "Request Authentication". The header grammar is RFC 9110 section 11.4
(auth-scheme, then comma-separated ``name=value`` auth-params; names case-insensitive; values are
tokens or quoted strings with backslash escapes; for older senders, colons are accepted in
unquoted values). The parsing and signing helpers are pure; :class:`FederationRequestAuth` is the
service inbound federation endpoints call::

    origin = await authenticate_request(hs, request)

It raises 401 ``M_UNAUTHORIZED`` for a missing or malformed header, a wrong ``destination`` or a
bad signature, and 403 ``M_FORBIDDEN`` when the origin is not in ``federation_domain_whitelist``.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from homeserver.http.errors import MatrixError, forbidden, unauthorized
from homeserver.protocol import signing
from homeserver.protocol.ids import parse_server_name

logger = logging.getLogger(__name__)

SCHEME = "X-Matrix"

# RFC 9110 5.6.2 tchar, plus ":" which older senders leave unquoted (spec compatibility note).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:]+")
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class XMatrixAuth:
    """The parameters of one ``Authorization: X-Matrix`` header."""

    origin: str
    destination: str | None  # optional for senders older than v1.3
    key: str
    sig: str


# --- pure: header syntax --------------------------------------------------------------------

def parse_x_matrix(header: str) -> XMatrixAuth:
    """Parse an ``Authorization`` header value with the X-Matrix scheme.

    Raises ValueError naming what is wrong (other scheme, bad syntax, missing origin/key/sig).
    Unknown parameters are ignored; a repeated parameter is an error.
    """
    if not isinstance(header, str):
        raise ValueError("header is not text")
    scheme, sep, rest = header.strip().partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise ValueError("not an X-Matrix header")
    params = _parse_auth_params(rest if sep else "")
    missing = [n for n in ("origin", "key", "sig") if not params.get(n)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return XMatrixAuth(params["origin"], params.get("destination") or None, params["key"], params["sig"])


def _parse_auth_params(s: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(s)

    def skip_ws(j: int) -> int:
        while j < n and s[j] in " \t":
            j += 1
        return j

    i = skip_ws(i)
    if i == n:
        return params
    while True:
        m = _NAME.match(s, i)
        if not m:
            raise ValueError(f"expected a parameter name at position {i}")
        name = m.group(0).lower()
        i = skip_ws(m.end())
        if i >= n or s[i] != "=":
            raise ValueError(f"expected '=' after {name}")
        i = skip_ws(i + 1)
        if i < n and s[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted value for {name}")
                c = s[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError(f"dangling backslash in {name}")
                    out.append(s[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            value = "".join(out)
        else:
            m = _TOKEN.match(s, i)
            if not m:
                raise ValueError(f"expected a value for {name}")
            value = m.group(0)
            i = m.end()
        if name in params:
            raise ValueError(f"parameter {name} given twice")
        params[name] = value
        i = skip_ws(i)
        if i == n:
            return params
        if s[i] != ",":
            raise ValueError(f"expected ',' at position {i}")
        i = skip_ws(i + 1)
        if i == n:
            return params  # tolerate a trailing comma


def _quote(value: str) -> str:
    """Always quoted, as other implementations send; escapes only if ever needed."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_x_matrix(auth: XMatrixAuth) -> str:
    """The header value, written the compatible way (one space, lower-case names, no spaces
    around commas, quoted values)."""
    parts = [f"origin={_quote(auth.origin)}"]
    if auth.destination is not None:
        parts.append(f"destination={_quote(auth.destination)}")
    parts.append(f"key={_quote(auth.key)}")
    parts.append(f"sig={_quote(auth.sig)}")
    return f"{SCHEME} " + ",".join(parts)


# --- pure: what is signed ---------------------------------------------------------------------

def request_json(method: str, uri: str, origin: str, destination: str | None,
                 content: Any = None) -> dict:
    """The object a request signature covers (step 1): method, uri (path and query), origin,
    destination (when known) and the parsed body (when there is one)."""
    obj: dict[str, Any] = {"method": method.upper(), "uri": uri, "origin": origin}
    if destination is not None:
        obj["destination"] = destination
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(method: str, uri: str, origin: str, destination: str, key: signing.SigningKey,
                 content: Any = None) -> str:
    """The ``Authorization`` header value for an outbound request (step 2)."""
    signed = signing.sign_json(request_json(method, uri, origin, destination, content), origin, key)
    kid = signing.key_id(key)
    return format_x_matrix(XMatrixAuth(origin, destination, kid, signed["signatures"][origin][kid]))


# --- inbound service ---------------------------------------------------------------------------

class FederationRequestAuth:
    """Checks the X-Matrix signature of inbound federation requests (built by ``hs.get``)."""

    def __init__(self, hs):
        self.hs = hs

    @property
    def keyring(self):
        from federation.keyring import Keyring
        return self.hs.get(Keyring)

    async def authenticate_request(self, request) -> str:
        """The verified origin server name of ``request`` (an ``HttpRequest``).

        Every ``Authorization: X-Matrix`` header is read; all must name the same origin and, when
        they carry one, our server name as destination; at least one signature must verify with
        a currently valid key of the origin (fetched through the keyring when unknown).
        """
        raw = request.twisted.requestHeaders.getRawHeaders(b"authorization") or []
        auths: list[XMatrixAuth] = []
        for value in raw:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            if not text.strip().lower().startswith("x-matrix"):
                continue
            try:
                auths.append(parse_x_matrix(text))
            except ValueError as e:
                raise unauthorized(f"Malformed X-Matrix Authorization header: {e}") from None
        if not auths:
            raise unauthorized("Missing X-Matrix Authorization header")
        origin = auths[0].origin
        if any(a.origin != origin for a in auths):
            raise unauthorized("X-Matrix headers name different origins")
        try:
            parse_server_name(origin)
        except ValueError:
            raise unauthorized("X-Matrix origin is not a valid server name") from None
        destination = None
        for a in auths:
            if a.destination is not None:
                if a.destination != self.hs.hostname:
                    raise unauthorized(f"X-Matrix destination {a.destination!r} is not this server")
                destination = a.destination
        whitelist = self.hs.config.federation_domain_whitelist
        if whitelist is not None and origin not in whitelist:
            raise forbidden("Federation with this server is not allowed")

        content = None
        if request.body.strip():
            try:
                content = json.loads(request.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise MatrixError(400, "M_NOT_JSON", "Content not JSON.") from None
        uri = request.twisted.uri.decode("ascii", "replace")
        obj = request_json(request.method, uri, origin, destination, content)
        obj["signatures"] = {origin: {a.key: a.sig for a in auths}}
        try:
            await self.keyring.verify_json_for_server(origin, obj, valid_at_ts=self.hs.clock_ms())
        except signing.SignatureError as e:
            logger.info("rejected request from %s to %s: %s", origin, uri.split("?")[0], e)
            raise unauthorized(f"Invalid request signature: {e}") from None
        request.twisted.authenticated_entity = origin
        return origin


async def authenticate_request(hs, request) -> str:
    """Shortcut for ``hs.get(FederationRequestAuth).authenticate_request(request)``."""
    return await hs.get(FederationRequestAuth).authenticate_request(request)
