"""Content repository endpoints (client-server-api/modules/content_repo.md).

Authenticated (data/api/client-server/authed-content-repo.yaml), on the "client" resource:
  GET /_matrix/client/v1/media/config
  GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
  GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
On the "media" resource (content-repo.yaml):
  POST /_matrix/media/v3/upload, POST /_matrix/media/v1/create,
  PUT /_matrix/media/v3/upload/{serverName}/{mediaId}, GET /_matrix/media/v3/config
  and, only while ``enable_authenticated_media`` is false, the deprecated unauthenticated
  GET /_matrix/media/v3/download/... and /_matrix/media/v3/thumbnail/... .
URL previews, GET /_matrix/client/v1/media/preview_url (and the deprecated
/_matrix/media/v3/preview_url with the legacy routes), only with ``url_preview_enabled``; otherwise
no route is registered (as in Synapse), so clients get 404 M_UNRECOGNIZED.
"""
from __future__ import annotations

import logging

from homeserver.accounts.auth import AuthService
from homeserver.accounts.ratelimit import Ratelimiter
from homeserver.http.errors import invalid_param, missing_param
from homeserver.http.params import bool_arg
from homeserver.http.server import RawResponse
from homeserver.media import headers
from homeserver.media.preview import UrlPreviewer
from homeserver.media.repository import (
    MediaContent,
    MediaRepository,
    check_file_name,
    parse_timeout_ms,
)

logger = logging.getLogger(__name__)

LEGACY_VERSIONS = ("v3", "r0")


def register_routes(hs, router) -> None:
    if not getattr(hs.config, "enable_media_repo", True):
        return  # Synapse's meaning: this process does not serve media
    repo = hs.get(MediaRepository)
    hs.on_start(repo.start)
    auth = hs.get(AuthService)
    limiter = hs.get(Ratelimiter)

    async def upload(request):
        """POST /_matrix/media/v3/upload (content-repo.yaml uploadContent): store the body and
        return its mxc:// URI. Too large → 413 M_TOO_LARGE; over a quota → 403 M_FORBIDDEN."""
        requester = await auth.get_requester(request)
        uri = await repo.upload(requester.user_id, request.body, request.header("Content-Type"),
                                request.arg("filename"))
        return 200, {"content_uri": uri}

    async def create(request):
        """POST /_matrix/media/v1/create (content-repo.yaml createContent): reserve an mxc:// URI
        whose content comes later by PUT; rate limited by rc_media_create and by the number of
        pending reservations (429 M_LIMIT_EXCEEDED)."""
        requester = await auth.get_requester(request)
        limiter.check("rc_media_create", requester.user_id, requester=requester)
        uri, expires_at = await repo.create(requester.user_id)
        return 200, {"content_uri": uri, "unused_expires_at": expires_at}

    async def upload_to_created(request, serverName, mediaId):
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId} (content-repo.yaml
        uploadContentToMXC): the content of a created id, once, by its creator."""
        requester = await auth.get_requester(request)
        await repo.upload_to_created(requester.user_id, serverName, mediaId, request.body,
                                     request.header("Content-Type"), request.arg("filename"))
        return 200, {}

    async def config(request):
        """GET /_matrix/client/v1/media/config (authed-content-repo.yaml getConfigAuthed)."""
        await auth.get_requester(request, allow_guest=True)
        return 200, {"m.upload.size": repo.max_upload_size}

    async def download(request, serverName, mediaId, fileName=None):
        """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
        (authed-content-repo.yaml getContentAuthed, getContentOverrideNameAuthed)."""
        await auth.get_requester(request, allow_guest=True)
        return await _download(request, serverName, mediaId, fileName, legacy=False)

    async def thumbnail(request, serverName, mediaId):
        """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
        (authed-content-repo.yaml getContentThumbnailAuthed)."""
        await auth.get_requester(request, allow_guest=True)
        return await _thumbnail(request, serverName, mediaId, legacy=False)

    async def legacy_download(request, serverName, mediaId, fileName=None):
        """GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}] (content-repo.yaml,
        deprecated, unauthenticated); media uploaded under the freeze is 404 here."""
        return await _download(request, serverName, mediaId, fileName, legacy=True)

    async def legacy_thumbnail(request, serverName, mediaId):
        """GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (content-repo.yaml, deprecated)."""
        return await _thumbnail(request, serverName, mediaId, legacy=True)

    async def _download(request, server_name, media_id, file_name, *, legacy):
        file_name = check_file_name(file_name)
        content = await repo.download(server_name, media_id, timeout_ms=parse_timeout_ms(request.arg("timeout_ms")),
                                      allow_remote=bool_arg(request, "allow_remote", True), legacy=legacy)
        return _media_response(content, file_name or content.upload_name)

    async def _thumbnail(request, server_name, media_id, *, legacy):
        width, height = _dimension(request, "width"), _dimension(request, "height")
        content = await repo.thumbnail(server_name, media_id, width, height, request.arg("method") or "scale",
                                       bool_arg(request, "animated", False),
                                       timeout_ms=parse_timeout_ms(request.arg("timeout_ms")),
                                       allow_remote=bool_arg(request, "allow_remote", True), legacy=legacy)
        return RawResponse(200, content.data, content.content_type, headers.thumbnail_headers(content.content_type))

    for v in ("v3", "r0", "v1"):
        router.add("POST", f"/_matrix/media/{v}/upload", upload, "media")
    router.add("PUT", "/_matrix/media/v3/upload/{serverName}/{mediaId}", upload_to_created, "media")
    router.add("POST", "/_matrix/media/v1/create", create, "media")
    for v in LEGACY_VERSIONS:
        router.add("GET", f"/_matrix/media/{v}/config", config, "media")

    base = "/_matrix/client/v1/media"
    router.add("GET", f"{base}/config", config, "client")
    router.add("GET", f"{base}/download/{{serverName}}/{{mediaId}}", download, "client")
    router.add("GET", f"{base}/download/{{serverName}}/{{mediaId}}/{{fileName}}", download, "client")
    router.add("GET", f"{base}/thumbnail/{{serverName}}/{{mediaId}}", thumbnail, "client")

    if not repo.authenticated_only:
        for v in LEGACY_VERSIONS:
            base = f"/_matrix/media/{v}"
            router.add("GET", f"{base}/download/{{serverName}}/{{mediaId}}", legacy_download, "media")
            router.add("GET", f"{base}/download/{{serverName}}/{{mediaId}}/{{fileName}}", legacy_download, "media")
            router.add("GET", f"{base}/thumbnail/{{serverName}}/{{mediaId}}", legacy_thumbnail, "media")
    if hs.config.url_preview_enabled:
        previewer = hs.get(UrlPreviewer)

        async def preview_url(request):
            """GET /_matrix/client/v1/media/preview_url?url=&ts= (authed-content-repo.yaml
            getUrlPreviewAuthed): OpenGraph data of the page; fetches refused by the IP or URL
            deny lists are 403 M_FORBIDDEN, pages over max_spider_size 502 M_TOO_LARGE."""
            requester = await auth.get_requester(request)
            url = request.arg("url")
            if url is None:
                raise missing_param("Missing url")
            ts = request.arg("ts")
            if ts is not None and not (ts.isascii() and ts.isdigit() and len(ts) <= 15):
                raise invalid_param("ts must be a timestamp in milliseconds")
            return 200, await previewer.preview(requester.user_id, url)

        router.add("GET", "/_matrix/client/v1/media/preview_url", preview_url, "client")
        if not repo.authenticated_only:
            for v in LEGACY_VERSIONS:
                router.add("GET", f"/_matrix/media/{v}/preview_url", preview_url, "media")


def _media_response(content: MediaContent, file_name: str | None) -> RawResponse:
    return RawResponse(200, content.data, headers.served_content_type(content.content_type),
                       headers.media_headers(content.content_type, file_name))


def _dimension(request, name: str) -> int:
    """authed-content-repo.yaml, thumbnail 400: non-integer or non-positive dimensions."""
    value = request.arg(name)
    if value is None:
        raise missing_param(f"Missing {name}")
    if not value.isascii() or not value.isdigit():
        raise invalid_param(f"{name} must be a positive integer")
    number = int(value)
    if number < 1 or number > 100_000:
        raise invalid_param(f"{name} must be between 1 and 100000")
    return number
