"""The media repository: uploads, created-then-uploaded ids, downloads and thumbnails.

client-server-api/modules/content_repo.md and data/api/client-server/{content-repo,authed-content-repo}.yaml.
Bytes go to disk by SHA-256 (:mod:`homeserver.media.filestore`), rows to ``local_media`` /
``remote_media_cache`` / ``media_thumbnails`` (:mod:`homeserver.storage.media_store`). Decoding and
resizing (:mod:`homeserver.media.thumbnailer`) and file I/O run in reactor worker threads; at most
two images are decoded at once.

Configuration read here (Synapse's names): ``max_upload_size``, ``media_store_path``,
``enable_authenticated_media`` (media uploaded while it is on is never served on the deprecated
unauthenticated endpoints), ``max_image_pixels``, ``max_pending_media_uploads``,
``unused_expiration_time`` (ms), ``media_upload_limits`` (a list of ``time_period_ms`` /
``max_bytes`` quotas per user), ``dynamic_thumbnails`` and ``media_retention`` (local and remote
media lifetimes, applied hourly; config/schema.py holds the defaults).

Operations (Synapse's admin API, homeserver/api/admin/media.py): :meth:`quarantine`,
:meth:`delete_local_media`, :meth:`delete_old_local_media`, :meth:`purge_remote_media_cache`,
:meth:`apply_retention`. Downloads of local media record their last access (batched, written at
most every ``_ACCESS_FLUSH_S``), which delete-by-age and ``local_media_lifetime`` go by.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from twisted.internet import defer, task, threads
from twisted.python.failure import Failure

from homeserver.http.errors import MatrixError, forbidden, invalid_param, limit_exceeded, not_found, too_large
from homeserver.protocol.ids import is_valid_server_name, random_string
from homeserver.storage.media_store import LocalMedia, MediaStore, RemoteMedia, ThumbnailRecord

from . import thumbnailer
from .filestore import MediaFileStore
from .remote import NoRemoteMedia, RemoteMediaFetcher, remote_too_large

logger = logging.getLogger(__name__)

# content_repo.md, "Matrix Content (mxc://) URIs": the media-id grammar.
MEDIA_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
MEDIA_ID_LENGTH = 24  # generated ids: 24 random letters (~141 bits)
MAX_MEDIA_ID_LENGTH = 255

# authed-content-repo.yaml, timeout_ms: default 20 s; "SHOULD impose a maximum" (Synapse: 60 s).
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000

# Thumbnails of non-standard sizes are cached up to this many per source; beyond, they are
# rendered for the request and not kept (a client cannot fill the disk by asking many sizes).
MAX_CACHED_THUMBNAILS_PER_SOURCE = 32

_PURGE_INTERVAL_S = 3600.0
_ACCESS_FLUSH_S = 30.0
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class MediaContent:
    """Bytes to serve and what they are."""

    data: bytes
    content_type: str
    upload_name: str | None


@dataclass(frozen=True)
class MediaUploadLimit:
    """One ``media_upload_limits`` entry: at most ``max_bytes`` per user per ``time_period_ms``."""

    time_period_ms: int
    max_bytes: int


@dataclass(frozen=True)
class _Source:
    sha256: str
    content_type: str
    upload_name: str | None
    remote: bool


# --- request values (pure) -----------------------------------------------------------------------

def is_valid_media_id(media_id: str) -> bool:
    return 0 < len(media_id) <= MAX_MEDIA_ID_LENGTH and MEDIA_ID_RE.fullmatch(media_id) is not None


def check_mxc_parts(server_name: str, media_id: str) -> None:
    """content_repo.md, Security considerations: server names must be valid server names and
    media ids only ``A-Za-z0-9_-`` (this refuses ``..``, ``/`` and every encoded variant)."""
    if not is_valid_server_name(server_name):
        raise invalid_param("Invalid server name")
    if not is_valid_media_id(media_id):
        raise invalid_param("Invalid media ID: only A-Z, a-z, 0-9, '_' and '-' are allowed")


def normalise_content_type(value: str | None) -> str:
    """The Content-Type to record for an upload. content-repo.yaml: optional, defaults to
    application/octet-stream; a value that is not a printable-ASCII ``type/subtype`` is treated as
    absent (authed-content-repo.yaml allows octet-stream when the type is obviously wrong)."""
    if value is None:
        return OCTET_STREAM
    value = value.strip()
    if (not value or len(value) > 255 or any(not 0x20 <= ord(c) < 0x7F for c in value)
            or "/" not in value.split(";", 1)[0]):
        return OCTET_STREAM
    return value


def check_file_name(name: str | None) -> str | None:
    """An upload or download file name: None if empty; 400 M_INVALID_PARAM for control
    characters or more than 255 characters. File names never reach the disk."""
    if not name:
        return None
    if len(name) > 255 or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise invalid_param("Invalid file name")
    return name


def parse_timeout_ms(value: str | None) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_MS
    try:
        timeout = int(value)
    except ValueError:
        raise invalid_param("timeout_ms must be an integer") from None
    if timeout < 0:
        raise invalid_param("timeout_ms must not be negative")
    return min(timeout, MAX_TIMEOUT_MS)


def nearest_standard_size(width: int, height: int, method: str) -> thumbnailer.ThumbnailSpec:
    """With ``dynamic_thumbnails: false``: the pre-generated size answering a request no standard
    size serves exactly — the smallest of the method's sizes covering the box (whatever its aspect
    ratio), else the largest of them."""
    sizes = [s for s in thumbnailer.STANDARD_SIZES if s.method == method]
    covering = [s for s in sizes if s.width >= width and s.height >= height]
    if covering:
        return min(covering, key=lambda s: (s.width * s.height, s.width))
    return max(sizes, key=lambda s: (s.width * s.height, s.width))


def _upload_limits(raw: Any) -> tuple[MediaUploadLimit, ...]:
    out = []
    for item in raw or ():
        if isinstance(item, MediaUploadLimit):
            out.append(item)
        elif isinstance(item, dict):
            out.append(MediaUploadLimit(int(item["time_period_ms"]), int(item["max_bytes"])))
        else:
            out.append(MediaUploadLimit(int(item.time_period_ms), int(getattr(item, "max_bytes", None)
                                                                      or getattr(item, "max_size"))))
    return tuple(out)


class MediaRepository:
    def __init__(self, hs):
        self.hs = hs
        self.reactor = hs.reactor
        self.store = hs.get(MediaStore)
        cfg = hs.config
        self.files = MediaFileStore(cfg.media_store_path)
        self.max_upload_size: int = cfg.max_upload_size
        self.authenticated_only: bool = cfg.enable_authenticated_media
        self.max_image_pixels: int = cfg.max_image_pixels
        self.max_pending_uploads: int = cfg.max_pending_media_uploads
        self.unused_expiration_ms: int = cfg.unused_expiration_time
        self.upload_limits = _upload_limits(cfg.media_upload_limits)
        self.dynamic_thumbnails: bool = cfg.dynamic_thumbnails
        self.remote_fetcher: RemoteMediaFetcher = NoRemoteMedia()
        self._upload_waiters: dict[str, list[defer.Deferred]] = {}
        self._inflight: dict[Any, list[defer.Deferred]] = {}
        self._background: set[defer.Deferred] = set()
        self._cpu = defer.DeferredSemaphore(2)
        self._purger: task.LoopingCall | None = None
        self._flusher: task.LoopingCall | None = None
        self._accessed: set[str] = set()  # local media downloaded since the last flush
        self.local_media_lifetime_ms: int | None = getattr(cfg, "local_media_lifetime_ms", None)
        self.remote_media_lifetime_ms: int | None = getattr(cfg, "remote_media_lifetime_ms", None)

    def set_remote_fetcher(self, fetcher: RemoteMediaFetcher) -> None:
        """Install federation's fetcher for other servers' media (see homeserver/media/remote.py)."""
        self.remote_fetcher = fetcher

    async def start(self) -> None:
        """Create the store's directories and forget expired created ids, now and hourly."""
        await self._thread(self.files.ensure_dirs)
        self._purger = task.LoopingCall(lambda: defer.ensureDeferred(self._purge_expired()))
        self._purger.clock = self.reactor
        self._purger.start(_PURGE_INTERVAL_S, now=True)
        self._flusher = task.LoopingCall(lambda: defer.ensureDeferred(self.flush_access_times()))
        self._flusher.clock = self.reactor
        self._flusher.start(_ACCESS_FLUSH_S, now=False)
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stop)

    def _stop(self) -> defer.Deferred:
        for loop in (self._purger, self._flusher):
            if loop is not None and loop.running:
                loop.stop()
        return defer.ensureDeferred(self.flush_access_times())

    async def _purge_expired(self) -> None:
        try:
            n = await self.store.delete_expired_pending(self.hs.clock_ms())
            if n:
                logger.info("forgot %d expired unused media ids", n)
            await self.store.delete_expired_url_previews(self.hs.clock_ms())
            await self.apply_retention()
        except Exception:
            logger.exception("purging expired media failed")

    async def flush_access_times(self) -> None:
        """Write the last-access time of local media downloaded since the last flush."""
        if not self._accessed:
            return
        media_ids, self._accessed = sorted(self._accessed), set()
        try:
            await self.store.touch_local_media(media_ids, self.hs.clock_ms())
        except Exception:
            logger.exception("recording media access times failed")

    # --- uploads ---------------------------------------------------------------------------
    def mxc(self, media_id: str) -> str:
        return f"mxc://{self.hs.hostname}/{media_id}"

    async def upload(self, user_id: str, data: bytes, content_type: str | None, upload_name: str | None) -> str:
        """POST /_matrix/media/v3/upload: store the content and return its mxc:// URI."""
        content_type = normalise_content_type(content_type)
        upload_name = check_file_name(upload_name)
        await self._check_can_upload(user_id, len(data))
        sha256 = await self._thread(self.files.write, data)
        media_id = random_string(MEDIA_ID_LENGTH)
        now = self.hs.clock_ms()
        await self.store.insert_local_media(LocalMedia(
            media_id, user_id, now, None, now, content_type, upload_name, len(data), sha256,
            self.authenticated_only, None))
        self._after_upload(media_id, sha256, content_type)
        return self.mxc(media_id)

    async def create(self, user_id: str) -> tuple[str, int]:
        """POST /_matrix/media/v1/create: reserve an id; returns (mxc URI, unused_expires_at).
        More than max_pending_media_uploads live reservations → 429 M_LIMIT_EXCEEDED."""
        now = self.hs.clock_ms()
        pending = await self.store.get_pending_uploads(user_id, now)
        if len(pending) >= self.max_pending_uploads:
            raise limit_exceeded(max(1, pending[0] - now))
        media_id = random_string(MEDIA_ID_LENGTH)
        expires_at = now + self.unused_expiration_ms
        await self.store.insert_local_media(LocalMedia(
            media_id, user_id, now, expires_at, None, None, None, None, None, self.authenticated_only, None))
        return self.mxc(media_id), expires_at

    async def upload_to_created(self, user_id: str, server_name: str, media_id: str, data: bytes,
                                content_type: str | None, upload_name: str | None) -> None:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: the content of a created id.
        Unknown or expired id → 404; another user's → 403 M_FORBIDDEN; already uploaded → 409
        M_CANNOT_OVERWRITE_MEDIA (content-repo.yaml)."""
        check_mxc_parts(server_name, media_id)
        content_type = normalise_content_type(content_type)
        upload_name = check_file_name(upload_name)
        media = await self.store.get_local_media(media_id) if server_name == self.hs.hostname else None
        if media is None or media.expired(self.hs.clock_ms()):
            raise not_found("Unknown media ID")
        if media.user_id != user_id:
            raise forbidden("This media ID was created by another user")
        if media.uploaded:
            raise _cannot_overwrite()
        await self._check_can_upload(user_id, len(data))
        sha256 = await self._thread(self.files.write, data)
        done = await self.store.complete_pending_upload(media_id, user_id, self.hs.clock_ms(), content_type,
                                                        upload_name, len(data), sha256)
        if not done:
            raise _cannot_overwrite()
        self._after_upload(media_id, sha256, content_type)

    async def _check_can_upload(self, user_id: str, size: int) -> None:
        """content_repo.md, Security considerations: too large → 413 M_TOO_LARGE; over a
        quota → 403 M_FORBIDDEN (content-repo.yaml, upload 403)."""
        if size > self.max_upload_size:
            raise too_large(f"Cannot upload files larger than {self.max_upload_size} bytes")
        now = self.hs.clock_ms()
        for limit in self.upload_limits:
            used = await self.store.get_uploaded_bytes_since(user_id, now - limit.time_period_ms)
            if used + size > limit.max_bytes:
                raise forbidden("Media upload limit exceeded")

    def _after_upload(self, media_id: str, sha256: str, content_type: str) -> None:
        for d in self._upload_waiters.pop(media_id, []):
            if not d.called:
                d.callback(None)
        if thumbnailer.is_thumbnailable_type(content_type):
            self._run_in_background(self._pregenerate_thumbnails(sha256))

    async def store_fetched(self, user_id: str, data: bytes, content_type: str | None,
                            upload_name: str | None) -> str:
        """Store content the server fetched for a user (a URL preview's image) as local media,
        outside the user's upload quota; returns the media id."""
        content_type = normalise_content_type(content_type)
        try:
            upload_name = check_file_name(upload_name)
        except MatrixError:
            upload_name = None
        sha256 = await self._thread(self.files.write, data)
        media_id = random_string(MEDIA_ID_LENGTH)
        now = self.hs.clock_ms()
        await self.store.insert_local_media(LocalMedia(
            media_id, user_id, now, None, now, content_type, upload_name, len(data), sha256,
            self.authenticated_only, None))
        self._after_upload(media_id, sha256, content_type)
        return media_id

    # --- operations (admin API, retention) ---------------------------------------------------
    async def quarantine(self, server_name: str, media_id: str, by: str | None) -> int:
        """Quarantine (``by`` an admin's user id) or release (``by`` None) one media item and
        every other item with the same content; quarantined media is answered 404. Returns the
        number of rows changed (0: not known here, nothing to do — Synapse answers 200 too)."""
        check_mxc_parts(server_name, media_id)
        origin = None if server_name == self.hs.hostname else server_name
        return await self.store.set_quarantine(origin, media_id, by)

    async def delete_local_media(self, media_ids: list[str]) -> list[str]:
        """Delete local media (rows, thumbnails and the files nothing else uses); returns the
        ids that existed."""
        deleted, files = await self.store.delete_local_media_rows(media_ids)
        await self._delete_files(files)
        return deleted

    async def delete_old_local_media(self, before_ts: int, size_gt: int = 0, keep_profiles: bool = True) -> list[str]:
        """Delete uploaded, unquarantined local media last accessed before ``before_ts`` and larger
        than ``size_gt`` bytes, except (``keep_profiles``) avatars of users and rooms."""
        await self.flush_access_times()
        deleted: list[str] = []
        while True:
            batch = await self.store.get_old_local_media(before_ts, size_gt, keep_profiles, self.hs.hostname)
            if not batch:
                return deleted
            deleted += await self.delete_local_media(batch)

    async def purge_remote_media_cache(self, before_ts: int) -> int:
        """Forget cached remote media last accessed before ``before_ts``; it is fetched again
        from its origin when next asked for. Returns how many items were dropped."""
        total = 0
        while True:
            n, files = await self.store.delete_remote_media_before(before_ts)
            await self._delete_files(files)
            total += n
            if n == 0:
                return total

    async def apply_retention(self) -> None:
        """media_retention: drop media not accessed within its lifetime (local media keeps
        avatars, quarantined media and media not yet uploaded)."""
        now = self.hs.clock_ms()
        if self.local_media_lifetime_ms is not None:
            deleted = await self.delete_old_local_media(now - self.local_media_lifetime_ms, 0, keep_profiles=True)
            if deleted:
                logger.info("media_retention: deleted %d local media", len(deleted))
        if self.remote_media_lifetime_ms is not None:
            n = await self.purge_remote_media_cache(now - self.remote_media_lifetime_ms)
            if n:
                logger.info("media_retention: dropped %d cached remote media", n)

    async def _delete_files(self, shas: list[str]) -> None:
        for sha in shas:
            try:
                await self._thread(self.files.delete, sha)
            except Exception:
                logger.exception("deleting media file %s failed", sha)

    # --- downloads -------------------------------------------------------------------------
    async def download(self, server_name: str, media_id: str, *, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                       allow_remote: bool = True, legacy: bool = False) -> MediaContent:
        """The content of mxc://server_name/media_id. ``legacy``: for the deprecated
        unauthenticated endpoints, which never serve media uploaded (or cached) while
        enable_authenticated_media was on (content_repo.md, the "freeze")."""
        source = await self._source(server_name, media_id, timeout_ms, allow_remote, legacy)
        data = await self._read(source.sha256)
        if not source.remote:
            self._accessed.add(media_id)
        return MediaContent(data, source.content_type, source.upload_name)

    async def _source(self, server_name: str, media_id: str, timeout_ms: int, allow_remote: bool,
                      legacy: bool) -> _Source:
        check_mxc_parts(server_name, media_id)
        if server_name == self.hs.hostname:
            media = await self._local_media(media_id, timeout_ms, legacy)
            return _Source(media.sha256, media.content_type or OCTET_STREAM, media.upload_name, False)
        remote = await self._remote_media(server_name, media_id, timeout_ms, allow_remote, legacy)
        return _Source(remote.sha256, remote.content_type, remote.upload_name, True)

    async def _local_media(self, media_id: str, timeout_ms: int, legacy: bool) -> LocalMedia:
        media = await self.store.get_local_media(media_id)
        if media is None or media.quarantined_by or media.expired(self.hs.clock_ms()) \
                or (legacy and media.authenticated):
            raise not_found()
        if not media.uploaded:
            media = await self._wait_for_upload(media_id, timeout_ms)
        return media

    async def _wait_for_upload(self, media_id: str, timeout_ms: int) -> LocalMedia:
        """Wait (at most timeout_ms) for a created id's content; 504 M_NOT_YET_UPLOADED if it
        does not come (authed-content-repo.yaml, notYetUploaded)."""
        d: defer.Deferred = defer.Deferred()
        waiters = self._upload_waiters.setdefault(media_id, [])
        waiters.append(d)
        timer = self.reactor.callLater(timeout_ms / 1000.0, lambda: d.called or d.callback(None))
        try:
            media = await self.store.get_local_media(media_id)  # it may have come meanwhile
            if media is not None and not media.uploaded and timeout_ms > 0:
                await d
                media = await self.store.get_local_media(media_id)
        finally:
            if timer.active():
                timer.cancel()
            if d in waiters:
                waiters.remove(d)
            if not waiters and self._upload_waiters.get(media_id) is waiters:
                del self._upload_waiters[media_id]
        if media is None or media.quarantined_by:
            raise not_found()
        if not media.uploaded:
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
        return media

    async def _remote_media(self, origin: str, media_id: str, timeout_ms: int, allow_remote: bool,
                            legacy: bool) -> RemoteMedia:
        cached = await self.store.get_remote_media(origin, media_id)
        if cached is None:
            if not allow_remote:
                raise not_found()
            cached = await self._single_flight(("remote", origin, media_id),
                                               lambda: self._fetch_remote(origin, media_id, timeout_ms))
        else:
            await self.store.touch_remote_media(origin, media_id, self.hs.clock_ms())
        if cached.quarantined_by or (legacy and cached.authenticated):
            raise not_found()
        return cached

    async def _fetch_remote(self, origin: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        fetched = await self.remote_fetcher.fetch(origin, media_id, max_size=self.max_upload_size,
                                                  timeout_ms=timeout_ms)
        if len(fetched.data) > self.max_upload_size:
            raise remote_too_large(self.max_upload_size)
        try:
            upload_name = check_file_name(fetched.upload_name)
        except MatrixError:
            upload_name = None
        sha256 = await self._thread(self.files.write, fetched.data)
        now = self.hs.clock_ms()
        content_type = normalise_content_type(fetched.content_type)
        await self.store.store_remote_media(RemoteMedia(
            origin, media_id, content_type, upload_name, len(fetched.data), sha256, now, now,
            self.authenticated_only, None))
        stored = await self.store.get_remote_media(origin, media_id)
        if thumbnailer.is_thumbnailable_type(content_type):
            self._run_in_background(self._pregenerate_thumbnails(stored.sha256, remote=True))
        return stored

    async def _read(self, sha256: str) -> bytes:
        data = await self._thread(self.files.read, sha256)
        if data is None:
            logger.error("media file %s is missing from the store", sha256)
            raise not_found()
        return data

    # --- thumbnails --------------------------------------------------------------------------
    async def thumbnail(self, server_name: str, media_id: str, width: int, height: int, method: str,
                        animated: bool = False, *, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                        allow_remote: bool = True, legacy: bool = False) -> MediaContent:
        """A thumbnail for a width x height box (content_repo.md, "Thumbnails"): a pre-generated
        standard size when one is at least as large as asked (with the asked aspect ratio for
        crop), else one rendered for this box and cached. Not an image we decode → 400 M_UNKNOWN;
        over max_image_pixels → 413 M_TOO_LARGE (502 for remote media)."""
        if width < 1 or height < 1:
            raise invalid_param("width and height must be positive integers")
        if method not in thumbnailer.METHODS:
            raise invalid_param("method must be 'crop' or 'scale'")
        source = await self._source(server_name, media_id, timeout_ms, allow_remote, legacy)
        if not source.remote:
            self._accessed.add(media_id)
        if not thumbnailer.is_thumbnailable_type(source.content_type):
            raise _cannot_thumbnail()
        spec = thumbnailer.pick_standard_size(width, height, method)
        if spec is None and not self.dynamic_thumbnails:
            spec = nearest_standard_size(width, height, method)
        box_w, box_h = (spec.width, spec.height) if spec else (width, height)
        rec = await self._thumbnail_record(source.sha256, box_w, box_h, method, animated, source.remote,
                                           cache=spec is not None)
        data = await self._read(rec.thumb_sha256)
        return MediaContent(data, rec.content_type, None)

    async def _thumbnail_record(self, sha256: str, width: int, height: int, method: str, animated: bool,
                                remote: bool, *, cache: bool) -> ThumbnailRecord:
        rec = await self.store.get_thumbnail(sha256, width, height, method, animated)
        if rec is not None:
            return rec
        if not cache:
            cache = len(await self.store.list_thumbnails(sha256)) < MAX_CACHED_THUMBNAILS_PER_SOURCE
        return await self._single_flight(
            ("thumb", sha256, width, height, method, animated),
            lambda: self._generate_thumbnail(sha256, width, height, method, animated, remote, cache))

    async def _generate_thumbnail(self, sha256: str, width: int, height: int, method: str, animated: bool,
                                  remote: bool, cache: bool) -> ThumbnailRecord:
        data = await self._read(sha256)
        try:
            rec = await self._cpu.run(threads.deferToThreadPool, self.reactor, self.reactor.getThreadPool(),
                                      self._render, sha256, data, width, height, method, animated)
        except thumbnailer.ImageTooLarge:
            if remote:
                raise MatrixError(502, "M_TOO_LARGE", "Content is too large to thumbnail") from None
            raise MatrixError(413, "M_TOO_LARGE", "Content is too large to thumbnail") from None
        except thumbnailer.ThumbnailError as e:
            logger.info("cannot thumbnail %s: %s", sha256, e)
            raise _cannot_thumbnail() from None
        if cache and not await self.store.store_thumbnail(rec):
            # Another request stored one first; serve that so every client sees the same bytes.
            rec = await self.store.get_thumbnail(sha256, width, height, method, animated) or rec
        return rec

    def _render(self, sha256: str, data: bytes, width: int, height: int, method: str,
                animated: bool) -> ThumbnailRecord:
        """(worker thread) Decode, resize and store a thumbnail file; or point at the original when
        it already fits the box and no animation has to be removed."""
        info = thumbnailer.probe(data, max_pixels=self.max_image_pixels)
        now = self.hs.clock_ms()
        if thumbnailer.output_size(info, width, height, method) is None and (animated or not info.animated):
            return ThumbnailRecord(sha256, width, height, method, animated, info.content_type,
                                   info.width, info.height, len(data), sha256, now)
        thumb = thumbnailer.make_thumbnail(data, width, height, method, animated=animated,
                                           max_pixels=self.max_image_pixels)
        thumb_sha = self.files.write(thumb.data)
        return ThumbnailRecord(sha256, width, height, method, animated, thumb.content_type,
                               thumb.width, thumb.height, len(thumb.data), thumb_sha, now)

    async def _pregenerate_thumbnails(self, sha256: str, remote: bool = False) -> None:
        """content_repo.md: "Servers SHOULD produce thumbnails with the following dimensions"."""
        for spec in thumbnailer.STANDARD_SIZES:
            try:
                await self._thumbnail_record(sha256, spec.width, spec.height, spec.method, False, remote,
                                             cache=True)
            except MatrixError as e:
                logger.info("no thumbnails for %s: %s", sha256, e.msg)
                return
            except Exception:
                logger.exception("generating thumbnails for %s failed", sha256)
                return

    async def wait_for_background_work(self) -> None:
        """Wait until thumbnails being generated after uploads are done (tests, shutdown)."""
        while self._background:
            await defer.DeferredList(list(self._background), consumeErrors=True)

    # --- helpers -------------------------------------------------------------------------------
    def _thread(self, fn: Callable, *args) -> defer.Deferred:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def _run_in_background(self, coro: Awaitable) -> None:
        d = defer.ensureDeferred(coro)
        self._background.add(d)

        def done(result):
            self._background.discard(d)
            if isinstance(result, Failure):
                logger.error("media background work failed: %s", result.getTraceback())
        d.addBoth(done)

    async def _single_flight(self, key: Any, make: Callable[[], Awaitable]) -> Any:
        """Run make() once for concurrent callers with the same key; all get its result. The
        work is not tied to any caller: one client going away does not cancel it for the rest."""
        d: defer.Deferred = defer.Deferred()
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiters.append(d)
        else:
            self._inflight[key] = waiters = [d]
            defer.ensureDeferred(make()).addBoth(self._finish_flight, key, waiters)
        return await d

    def _finish_flight(self, result: Any, key: Any, waiters: list[defer.Deferred]) -> None:
        if self._inflight.get(key) is waiters:
            del self._inflight[key]
        for d in waiters:
            if d.called:  # that caller went away
                continue
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


def _cannot_overwrite() -> MatrixError:
    return MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")


def _cannot_thumbnail() -> MatrixError:
    # authed-content-repo.yaml, thumbnail 400: "Cannot generate thumbnails for the requested content".
    return MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")
