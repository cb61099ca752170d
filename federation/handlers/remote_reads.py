"""Asking other servers for their room directory and media (the seams
``PublicRoomListService.remote_lister`` and ``MediaRepository.set_remote_fetcher``).

public_rooms.yaml (``POST /publicRooms``, falling back to ``GET`` when a server does not know the
POST form); content_repository.yaml (``GET /_matrix/federation/v1/media/download/{mediaId}``: a
``multipart/mixed`` answer whose first part is JSON metadata and second the content; a
``Location`` part pointing elsewhere is followed once without authentication). A server without
the federation media endpoints (404 ``M_UNRECOGNIZED``, as servers before spec v1.11 answer) is
asked the deprecated ``GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false``
instead (content-repo "Client behaviour"/ server-server-api.md "Content Repository": plain bytes,
Content-Type and Content-Disposition headers).
"""
from __future__ import annotations

import logging
import re
from urllib.parse import quote

from homeserver.http.errors import MatrixError, not_found
from homeserver.http.outbound import CheckedEndpointFactory
from homeserver.media.remote import FetchedMedia, RemoteMediaFetcher, remote_too_large

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*(?:utf-8|UTF-8)''([^;]+)")
_FILENAME = re.compile(r'filename\s*=\s*"?([^";]+)"?')


class RemoteDirectory:
    def __init__(self, hs):
        self.hs = hs

    async def list_rooms(self, server: str, *, limit=None, since=None, search_term=None, room_types=None,
                         include_all_networks=False, third_party_instance_id=None) -> dict:
        from ..client import FederationClient, FederationError, FederationUnreachable
        client = self.hs.get(FederationClient)
        body: dict = {"include_all_networks": include_all_networks}
        if limit:
            body["limit"] = limit
        if since:
            body["since"] = since
        if third_party_instance_id:
            body["third_party_instance_id"] = third_party_instance_id
        flt = {}
        if search_term:
            flt["generic_search_term"] = search_term
        if room_types is not None:
            flt["room_types"] = room_types
        if flt:
            body["filter"] = flt
        try:
            try:
                return await client.post_json(server, f"{FED_V1}/publicRooms", body)
            except FederationError as e:
                if e.code not in (400, 404, 405) or flt:
                    raise
                args = {k: v for k, v in body.items() if k != "filter"}
                return await client.get_json(server, f"{FED_V1}/publicRooms", args)
        except FederationError as e:
            raise MatrixError(e.code if 400 <= e.code < 500 else 502, e.errcode, e.msg) from None
        except FederationUnreachable as e:
            raise MatrixError(502, "M_UNKNOWN", f"{server} is unreachable: {e.reason}") from None


class FederationMediaFetcher(RemoteMediaFetcher):
    def __init__(self, hs):
        self.hs = hs

    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> FetchedMedia:
        from ..client import FederationClient, FederationError, FederationUnreachable
        client = self.hs.get(FederationClient)
        path = f"{FED_V1}/media/download/{quote(media_id, safe='')}"
        try:
            code, headers, body = await client.get_raw(server_name, path, {"timeout_ms": timeout_ms},
                                                       max_size=max_size + 64 * 1024,
                                                       timeout_s=max(20.0, timeout_ms / 1000 + 10))
        except FederationError as e:
            if e.errcode == "M_TOO_LARGE":
                raise remote_too_large(max_size) from None
            raise not_found("Remote media could not be fetched") from None
        except FederationUnreachable:
            raise not_found("The media's server cannot be reached") from None
        if code == 504:
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "The remote media is not uploaded yet")
        if _unrecognized(code, body):
            return await self._fetch_legacy(server_name, media_id, max_size=max_size, timeout_ms=timeout_ms)
        if code != 200:
            raise not_found("Remote media not found")
        parts = parse_multipart(headers.get("content-type", ""), body)
        if parts is None or len(parts) < 2:
            raise MatrixError(502, "M_UNKNOWN", "The remote server sent an unreadable media answer")
        part_headers, data = parts[1]
        if "location" in part_headers:
            data, part_headers = await self._follow(part_headers["location"], max_size)
        if len(data) > max_size:
            raise remote_too_large(max_size)
        return FetchedMedia(data, part_headers.get("content-type"), _filename(part_headers.get("content-disposition")))

    async def _fetch_legacy(self, server_name: str, media_id: str, *, max_size: int,
                            timeout_ms: int) -> FetchedMedia:
        """The deprecated unauthenticated download (content-repo v3), ``allow_remote=false``
        so the server does not in turn fetch from elsewhere; a redirect is followed once."""
        from ..client import FederationClient, FederationError, FederationUnreachable
        client = self.hs.get(FederationClient)
        path = f"/_matrix/media/v3/download/{quote(server_name, safe='')}/{quote(media_id, safe='')}"
        try:
            code, headers, body = await client.get_raw(
                server_name, path, {"allow_remote": "false", "allow_redirect": "true", "timeout_ms": timeout_ms},
                max_size=max_size + 1, timeout_s=max(20.0, timeout_ms / 1000 + 10))
        except FederationError as e:
            if e.errcode == "M_TOO_LARGE":
                raise remote_too_large(max_size) from None
            raise not_found("Remote media could not be fetched") from None
        except FederationUnreachable as e:
            logger.info("legacy media download from %s failed: %s", server_name, e)
            raise not_found("The media's server cannot be reached") from None
        if code in (301, 302, 303, 307, 308) and "location" in headers:
            body, headers = await self._follow(headers["location"], max_size)
        elif code == 504:
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "The remote media is not uploaded yet")
        elif code != 200:
            raise not_found("Remote media not found")
        if len(body) > max_size:
            raise remote_too_large(max_size)
        return FetchedMedia(body, headers.get("content-type"), _filename(headers.get("content-disposition")))

    async def _follow(self, url: str, max_size: int) -> tuple[bytes, dict]:
        """GET a location another server pointed to, with the federation IP range lists applied to
        its address (homeserver/http/outbound.py); 404 when it cannot be fetched."""
        import treq
        from twisted.web.client import Agent
        if not url.startswith("https://"):
            raise not_found("Remote media redirects to an unsupported location")
        reactor = self.hs.reactor
        agent = Agent.usingEndpointFactory(reactor, CheckedEndpointFactory(reactor, self.hs.config.ip_allowed))
        try:
            resp = await treq.get(url, agent=agent, timeout=30)
        except Exception as e:
            logger.info("remote media location %s could not be fetched: %s", url, e)
            raise not_found("Remote media could not be fetched from its location") from None
        if resp.code != 200:
            raise not_found("Remote media not found at its location")
        data = await resp.content()
        hdrs = {k.decode("latin-1").lower(): v[-1].decode("latin-1") for k, v in resp.headers.getAllRawHeaders()}
        return data, hdrs


def _unrecognized(code: int, body: bytes) -> bool:
    """Whether an answer says the endpoint is unknown (404/400/405 ``M_UNRECOGNIZED``), not the media."""
    if code not in (400, 404, 405):
        return False
    import json
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("errcode") == "M_UNRECOGNIZED"


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    from urllib.parse import unquote
    m = _FILENAME_STAR.search(disposition)
    if m:
        return unquote(m.group(1).strip())
    m = _FILENAME.search(disposition)
    return m.group(1).strip() if m else None


def parse_multipart(content_type: str, body: bytes) -> list[tuple[dict, bytes]] | None:
    """The parts of a ``multipart/mixed`` body as (lower-case headers, bytes) (pure)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/") or m is None:
        return None
    delimiter = b"--" + m.group(1).encode("latin-1")
    pieces = body.split(delimiter)
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        head, sep, data = piece.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
    return parts


def multipart_body(metadata: bytes, data: bytes, content_type: str, disposition: str | None) -> tuple[bytes, str]:
    """A ``multipart/mixed`` body (JSON metadata, then the content) and its Content-Type (pure)."""
    import secrets
    boundary = secrets.token_hex(16)
    head = [f"--{boundary}", "Content-Type: application/json", "", ""]
    out = "\r\n".join(head).encode() + metadata + b"\r\n"
    part = [f"--{boundary}", f"Content-Type: {content_type}"]
    if disposition:
        part.append(f"Content-Disposition: {disposition}")
    out += ("\r\n".join(part) + "\r\n\r\n").encode("latin-1") + data + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/mixed; boundary={boundary}"
