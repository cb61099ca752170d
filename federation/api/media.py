"""Media for other servers (content_repository.yaml): ``GET /_matrix/federation/v1/media/download/{mediaId}``
and ``/media/thumbnail/{mediaId}``, answered as ``multipart/mixed`` (JSON metadata, then the bytes)."""
from __future__ import annotations

from homeserver.http.errors import invalid_param
from homeserver.http.server import RawResponse
from homeserver.media import headers as media_headers
from homeserver.media.repository import MediaRepository, parse_timeout_ms

from ..handlers.remote_reads import multipart_body
from .common import int_arg, origin_of

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    def repo() -> MediaRepository:
        return hs.get(MediaRepository)

    async def download(request, mediaId: str):
        """GET /_matrix/federation/v1/media/download/{mediaId}?timeout_ms: our local media only."""
        await origin_of(hs, request)
        content = await repo().download(hs.hostname, mediaId, timeout_ms=parse_timeout_ms(request.arg("timeout_ms")),
                                        allow_remote=False)
        body, ctype = multipart_body(b"{}", content.data, content.content_type,
                                     media_headers.content_disposition(content.content_type, content.upload_name))
        return RawResponse(200, body, ctype)

    async def thumbnail(request, mediaId: str):
        """GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width&height&method&animated&timeout_ms."""
        await origin_of(hs, request)
        width, height = int_arg(request, "width", 0), int_arg(request, "height", 0)
        if width < 1 or height < 1:
            raise invalid_param("width and height must be positive integers")
        content = await repo().thumbnail(hs.hostname, mediaId, width, height, request.arg("method") or "scale",
                                         (request.arg("animated") or "false").lower() == "true",
                                         timeout_ms=parse_timeout_ms(request.arg("timeout_ms")), allow_remote=False)
        body, ctype = multipart_body(b"{}", content.data, content.content_type, None)
        return RawResponse(200, body, ctype)

    router.add("GET", f"{V1}/media/download/{{mediaId}}", download, "federation")
    router.add("GET", f"{V1}/media/thumbnail/{{mediaId}}", thumbnail, "federation")
