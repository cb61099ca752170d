"""URL previews: ``GET /_matrix/client/v1/media/preview_url`` (authed-content-repo.yaml
getUrlPreviewAuthed; client-server-api/modules/content_repo.md).

Off unless ``url_preview_enabled``; then ``url_preview_ip_range_blacklist`` is required by the
config loader (as in Synapse). A preview is made by fetching the URL through
:class:`~homeserver.media.safe_fetch.SafeHttpClient` (address checks on every hop, at most 5
redirects, ``max_spider_size``, a deadline) and reading it:

* an HTML page → its OpenGraph data (:func:`homeserver.media.opengraph.parse_html`); its
  ``og:image`` is fetched the same safe way, stored as local media and answered as an ``mxc://``
  URI with ``og:image:type``, ``og:image:width``/``height`` and ``matrix:image:size`` (an image
  that cannot be fetched or decoded is left out);
* an image → the same ``og:image`` fields for the image itself;
* anything else → a basic preview (``og:url``, ``og:title`` from the file name, ``og:type``), the
  body never read.

Results are cached in ``url_preview_cache`` for :data:`CACHE_MS` and concurrent requests for one URL
share one fetch. ``ts`` (a time for which the client wants the preview) is validated; the newest
preview is always served.
"""
from __future__ import annotations

import functools
import json
import logging
import posixpath
from urllib.parse import unquote, urlsplit

from homeserver.http.errors import MatrixError, forbidden
from homeserver.storage.media_store import MediaStore

from . import opengraph, thumbnailer
from .repository import MediaRepository
from .safe_fetch import SafeHttpClient, normalise_url

logger = logging.getLogger(__name__)

CACHE_MS = 3600 * 1000
FETCH_TIMEOUT_S = 20.0
MAX_REDIRECTS = 5


class UrlPreviewer:
    def __init__(self, hs):
        self.hs = hs
        cfg = hs.config
        self.repo: MediaRepository = hs.get(MediaRepository)
        self.store: MediaStore = hs.get(MediaStore)
        self.max_size: int = cfg.max_spider_size
        self.url_blacklist = tuple(cfg.url_preview_url_blacklist)
        self.client = SafeHttpClient(hs.reactor, cfg.url_preview_ip_allowed, max_redirects=MAX_REDIRECTS,
                                     timeout_s=FETCH_TIMEOUT_S)

    def url_allowed(self, url: str) -> bool:
        return not opengraph.url_is_blacklisted(url, self.url_blacklist)

    async def preview(self, user_id: str, url: str) -> dict:
        """The preview of ``url`` for ``user_id`` (whose the stored og:image becomes)."""
        url = normalise_url(url)
        if not self.url_allowed(url):
            raise forbidden("URL blocked")
        cached = await self.store.get_url_preview(url, self.hs.clock_ms())
        if cached is not None:
            return json.loads(cached[0])
        return await self.repo._single_flight(("preview", url), lambda: self._generate(user_id, url))

    async def _generate(self, user_id: str, url: str) -> dict:
        page = await self.client.get(url, max_size=self.max_size, url_allowed=self.url_allowed,
                                     read_body=lambda ct: opengraph.is_html(ct) or opengraph.is_image(ct))
        if page.code != 200:
            raise MatrixError(502, "M_UNKNOWN", f"The URL answered with HTTP status {page.code}")
        media_id = None
        if page.body is None:
            og: dict = opengraph.basic_preview(page.url, page.content_type)
        elif opengraph.is_image(page.content_type):
            og = {"og:url": page.url}
            image = await self._store_image(user_id, page.body, page.content_type, page.url)
            if image is not None:
                media_id, fields = image
                og.update(fields)
                og.setdefault("og:title", _file_name(page.url) or page.url)
        else:
            og = opengraph.parse_html(page.body, page.content_type, page.url)
            if "og:image" in og:
                image = await self._fetch_image(user_id, og.pop("og:image"))
                if image is not None:
                    media_id, fields = image
                    og.update(fields)
        now = self.hs.clock_ms()
        await self.store.store_url_preview(url, json.dumps(og), media_id, now, now + CACHE_MS)
        return og

    async def _fetch_image(self, user_id: str, image_url: str) -> tuple[str, dict] | None:
        try:
            image_url = normalise_url(image_url)
            fetched = await self.client.get(image_url, max_size=self.max_size, url_allowed=self.url_allowed,
                                            read_body=opengraph.is_image)
        except MatrixError as e:
            logger.info("preview image %s not fetched: %s", image_url, e.msg)
            return None
        if fetched.code != 200 or fetched.body is None:
            return None
        return await self._store_image(user_id, fetched.body, fetched.content_type, fetched.url)

    async def _store_image(self, user_id: str, data: bytes, content_type: str | None,
                           url: str) -> tuple[str, dict] | None:
        """Store a fetched image as local media; (media id, its og:image fields), or None when the
        bytes are not an image Pillow can read."""
        try:
            info = await self.repo._thread(functools.partial(thumbnailer.probe, max_pixels=self.repo.max_image_pixels),
                                           data)
        except thumbnailer.ThumbnailError:
            return None
        media_id = await self.repo.store_fetched(user_id, data, info.content_type, _file_name(url))
        return media_id, {
            "og:image": self.repo.mxc(media_id),
            "og:image:type": info.content_type,
            "og:image:width": info.width,
            "og:image:height": info.height,
            "matrix:image:size": len(data),
        }


def _file_name(url: str) -> str | None:
    name = posixpath.basename(unquote(urlsplit(url).path))
    return name or None
