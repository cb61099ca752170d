"""The Twisted side of HTTP: request objects, JSON in and out, errors, CORS and the access log.

Handlers are ``async def handler(request: HttpRequest, **path_params)`` returning either
``(status, json_body)`` or a :class:`RawResponse`; they raise :class:`MatrixError` for errors.
No exception ever reaches the client as a stack trace.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.web import server
from twisted.web.resource import Resource

from homeserver.storage.database import UnstorableText

from .errors import MatrixError, bad_json, not_json, too_large, unrecognized
from .router import Router

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("uzel.access")

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, HEAD, POST, PUT, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"X-Requested-With, Content-Type, Authorization, Date",
    b"Access-Control-Expose-Headers": b"Synapse-Trace-Id, Server, ETag",
}


class RawResponse:
    """A non-JSON response (media, well-known files served as bytes)."""

    def __init__(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None):
        self.code = code
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# A \uD800-\uDFFF escape: JSON admits lone surrogates, UTF-8 (and so canonical JSON,
# appendices.md "Canonical JSON") cannot carry them.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class HttpRequest:
    """What a handler sees of a request."""

    __slots__ = ("twisted", "method", "path", "query", "requester", "_body", "_json", "client_ip",
                 "max_json_size")

    def __init__(self, treq: "UzelRequest", method: str, path: str, max_json_size: int = 1024 * 1024):
        self.twisted = treq
        self.method = method
        self.path = path
        raw_query = treq.uri.split(b"?", 1)[1] if b"?" in treq.uri else b""
        self.query: dict[str, list[str]] = parse_qs(raw_query.decode("utf-8", "replace"),
                                                    keep_blank_values=True)
        self.requester = None
        self.max_json_size = max_json_size
        self._body: bytes | None = None
        self._json: Any = None
        self.client_ip = treq.getClientAddress().host if treq.getClientAddress() else "-"

    def header(self, name: str) -> str | None:
        v = self.twisted.getHeader(name)
        return v

    @property
    def body(self) -> bytes:
        if self._body is None:
            content = self.twisted.content
            content.seek(0)
            self._body = content.read()
        return self._body

    def json(self, *, allow_empty: bool = False) -> dict:
        """The body as a JSON object: M_NOT_JSON if it is not JSON, M_BAD_JSON if not an object."""
        if self._json is None:
            body = self.body
            if len(body) > self.max_json_size:
                raise too_large(f"JSON body exceeds {self.max_json_size} bytes")
            if not body.strip():
                if allow_empty:
                    self._json = {}
                    return self._json
                raise not_json("Request body is empty; a JSON object is required")
            try:
                value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise not_json()
            if not isinstance(value, dict):
                raise bad_json("Request body must be a JSON object")
            if _SURROGATE_ESCAPE.search(body) and not _encodable(value):
                raise bad_json("Strings must not contain lone surrogates")
            self._json = value
        return self._json

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])


class UzelRequest(server.Request):
    """A Twisted request that enforces the body size limit while the body arrives."""

    max_body_size = 50 * 1024 * 1024
    # The Matrix APIs take JSON (or raw media) bodies, never HTML form posts: Twisted need not
    # parse a POST's Content-Type (with the email package) to look for form fields.
    _parsePOSTFormSubmission = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.body_too_large = False
        self._received = 0
        self.start_time = time.monotonic()
        self.authenticated_entity: str | None = None

    def gotLength(self, length):
        if length is not None and length > self.max_body_size:
            self.body_too_large = True
            length = 0  # keep nothing; the handler answers M_TOO_LARGE
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.max_body_size:
            self.body_too_large = True
            return
        if not self.body_too_large:
            super().handleContentChunk(data)


class MatrixResource(Resource):
    """The one resource behind a listener; routes by path to the handlers of its resources."""

    isLeaf = True

    def __init__(self, router: Router, resources: set[str], *, max_body_size: int,
                 max_json_size: int = 1024 * 1024):
        super().__init__()
        self.router = router
        self.resources = resources
        self.max_body_size = max_body_size
        self.max_json_size = max_json_size

    def render(self, request: UzelRequest):
        d = defer.ensureDeferred(self._handle(request))
        finished = request.notifyFinish()
        finished.addErrback(lambda f: d.cancel())
        return server.NOT_DONE_YET

    async def _handle(self, request: UzelRequest) -> None:
        method = request.method.decode("ascii", "replace").upper()
        raw_path = request.path.decode("ascii", "replace")
        for k, v in CORS_HEADERS.items():
            request.setHeader(k, v)
        try:
            if method == "OPTIONS":
                return self._respond(request, 200, b"{}", "application/json")
            if request.body_too_large:
                raise too_large(f"Request body exceeds {self.max_body_size} bytes")
            try:
                match = self.router.match(method, raw_path, self.resources)
            except UnicodeDecodeError:
                raise MatrixError(400, "M_INVALID_PARAM", "Path is not valid percent-encoded UTF-8")
            if match.route is None:
                if match.allowed_methods:
                    raise unrecognized(405, "Method not allowed")
                raise unrecognized(404, "Unrecognized request")
            # No identifier, type or key of the API may contain U+0000 (appendices.md "Common
            # Identifier Format"), and PostgreSQL text cannot hold it: refuse it at the door.
            if any("\x00" in v for v in match.params.values()):
                raise MatrixError(400, "M_INVALID_PARAM", "Path parameters must not contain NUL")
            hreq = HttpRequest(request, method, raw_path, self.max_json_size)
            if any("\x00" in k or any("\x00" in v for v in vs) for k, vs in hreq.query.items()):
                raise MatrixError(400, "M_INVALID_PARAM", "Query parameters must not contain NUL")
            result = await match.route.handler(hreq, **match.params)
            if isinstance(result, RawResponse):
                for k, v in result.headers.items():
                    request.setHeader(k, v)
                return self._respond(request, result.code, result.body, result.content_type)
            code, body = result
            return self._respond(request, code, encode_json(body), "application/json")
        except MatrixError as e:
            for k, v in e.headers.items():
                request.setHeader(k, v)
            return self._respond(request, e.code, encode_json(e.to_json()), "application/json")
        except UnstorableText:
            body = encode_json({"errcode": "M_INVALID_PARAM", "error": "Text must not contain U+0000 or lone surrogates"})
            return self._respond(request, 400, body, "application/json")
        except defer.CancelledError:
            return  # client went away
        except Exception:
            logger.error("request %s %s failed", method, raw_path, exc_info=True)
            body = encode_json({"errcode": "M_UNKNOWN", "error": "Internal server error"})
            return self._respond(request, 500, body, "application/json")

    def _respond(self, request: UzelRequest, code: int, body: bytes, content_type: str) -> None:
        if request._disconnected or request.finished:
            return
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        if not request.responseHeaders.hasHeader(b"Cache-Control"):
            request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
        if request.method != b"HEAD":
            request.write(body)
        request.finish()
        elapsed = (time.monotonic() - request.start_time) * 1000
        access_logger.info("%s - %s %s %d %d %.1fms %s", _client_ip(request), request.method.decode(),
                           request.uri.decode("ascii", "replace").split("?")[0], code, len(body), elapsed,
                           request.authenticated_entity or "-")


def _client_ip(request) -> str:
    addr = request.getClientAddress()
    return getattr(addr, "host", "-")


class UzelSite(server.Site):
    def __init__(self, resource: Resource, *, max_body_size: int, x_forwarded: bool = False):
        super().__init__(resource)
        self.max_body_size = max_body_size
        self.x_forwarded = x_forwarded
        self.noisy = False

        site = self

        class _Req(UzelRequest):
            max_body_size = site.max_body_size

        self.requestFactory = _Req

    def log(self, request) -> None:  # our own access log replaces Twisted's
        pass
