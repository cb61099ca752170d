"""The seam between the media repository and federation: fetching other servers' media.

client-server-api/modules/content_repo.md: content is downloaded from the recipient's homeserver,
"which must first transfer the content from the origin homeserver". The media repository asks a
:class:`RemoteMediaFetcher` for content it has not cached and stores what it gets
(remote_media_cache). Until federation provides one, :class:`NoRemoteMedia` answers every remote
request with 404 M_NOT_FOUND.

The federation side installs its fetcher with::

    hs.get(MediaRepository).set_remote_fetcher(MyFetcher(hs))

and a fetcher implements ``fetch`` over ``GET /_matrix/federation/v1/media/download/{mediaId}``
(server-server-api "Content repository"), enforcing ``max_size`` while the body arrives.
"""
from __future__ import annotations

from dataclasses import dataclass

from homeserver.http.errors import MatrixError, not_found


@dataclass(frozen=True)
class FetchedMedia:
    """What the origin server sent: the bytes, its Content-Type and its file name (if any)."""

    data: bytes
    content_type: str | None
    upload_name: str | None


class RemoteMediaFetcher:
    """Interface: get ``mxc://server_name/media_id`` from its origin.

    Raise :class:`MatrixError` for failures the client should see: 404 M_NOT_FOUND when the origin
    does not have it (or cannot be reached), 502 M_TOO_LARGE when it is bigger than ``max_size``,
    504 M_NOT_YET_UPLOADED when the origin says so after ``timeout_ms``.
    """

    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> FetchedMedia:
        raise NotImplementedError


class NoRemoteMedia(RemoteMediaFetcher):
    """The fetcher used until federation installs a real one: nothing remote is reachable."""

    async def fetch(self, server_name: str, media_id: str, *, max_size: int, timeout_ms: int) -> FetchedMedia:
        raise not_found("Remote media is not available from this server")


def remote_too_large(max_size: int) -> MatrixError:
    """content_repo.md, Security considerations: remote content too large → 502 M_TOO_LARGE."""
    return MatrixError(502, "M_TOO_LARGE", f"Remote content is larger than {max_size} bytes")
