"""SQL for the media repository: local media rows, remote media cache rows, thumbnails and the
URL preview cache.

Schema: storage/schema/0070_media.sql, 0071_media_operations.sql. Policy (limits, expiry, who may upload) lives in
homeserver/media/repository.py; this module only reads and writes rows.
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import Txn

_LOCAL_COLUMNS = ("media_id, user_id, created_ts, unused_expires_at, uploaded_ts, content_type, upload_name, "
                  "media_length, sha256, authenticated, quarantined_by")
_REMOTE_COLUMNS = ("media_origin, media_id, content_type, upload_name, media_length, sha256, created_ts, "
                   "last_access_ts, authenticated, quarantined_by")
_THUMB_COLUMNS = ("source_sha256, width, height, method, animated, content_type, thumb_width, thumb_height, "
                  "thumb_length, thumb_sha256, created_ts")


@dataclass(frozen=True)
class LocalMedia:
    media_id: str
    user_id: str
    created_ts: int
    unused_expires_at: int | None
    uploaded_ts: int | None
    content_type: str | None
    upload_name: str | None
    media_length: int | None
    sha256: str | None
    authenticated: bool
    quarantined_by: str | None

    @property
    def uploaded(self) -> bool:
        return self.uploaded_ts is not None

    def expired(self, now_ms: int) -> bool:
        """A created id whose content never came and whose time ran out (POST /media/v1/create)."""
        return not self.uploaded and self.unused_expires_at is not None and now_ms >= self.unused_expires_at


@dataclass(frozen=True)
class RemoteMedia:
    media_origin: str
    media_id: str
    content_type: str
    upload_name: str | None
    media_length: int
    sha256: str
    created_ts: int
    last_access_ts: int
    authenticated: bool
    quarantined_by: str | None


@dataclass(frozen=True)
class ThumbnailRecord:
    source_sha256: str
    width: int  # the requested box this thumbnail answers
    height: int
    method: str
    animated: bool
    content_type: str
    thumb_width: int  # the real size of the thumbnail
    thumb_height: int
    thumb_length: int
    thumb_sha256: str
    created_ts: int


def _local(row) -> LocalMedia | None:
    if row is None:
        return None
    return LocalMedia(*row[:9], bool(row[9]), row[10])


def _remote(row) -> RemoteMedia | None:
    if row is None:
        return None
    return RemoteMedia(*row[:8], bool(row[8]), row[9])


def _thumb(row) -> ThumbnailRecord:
    return ThumbnailRecord(row[0], row[1], row[2], row[3], bool(row[4]), *row[5:])


class MediaStore:
    def __init__(self, hs):
        self.db = hs.db

    # --- local media -------------------------------------------------------------------------
    async def insert_local_media(self, media: LocalMedia) -> None:
        """Insert a new row (an upload, or a created id with no content yet)."""
        def txn(t: Txn):
            t.execute(f"INSERT INTO local_media ({_LOCAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (media.media_id, media.user_id, media.created_ts, media.unused_expires_at,
                       media.uploaded_ts, media.content_type, media.upload_name, media.media_length,
                       media.sha256, media.authenticated, media.quarantined_by))
        await self.db.run("insert_local_media", txn)

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        def txn(t: Txn):
            return _local(t.execute(f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE media_id = ?",
                                    (media_id,)).fetchone())
        return await self.db.run("get_local_media", txn, readonly=True)

    async def complete_pending_upload(self, media_id: str, user_id: str, now_ms: int, content_type: str,
                                      upload_name: str | None, length: int, sha256: str) -> bool:
        """Give a created id its content; False if it was already uploaded (or is not this user's)."""
        def txn(t: Txn):
            t.execute("UPDATE local_media SET uploaded_ts = ?, content_type = ?, upload_name = ?, "
                      "media_length = ?, sha256 = ?, unused_expires_at = NULL "
                      "WHERE media_id = ? AND user_id = ? AND uploaded_ts IS NULL",
                      (now_ms, content_type, upload_name, length, sha256, media_id, user_id))
            return t.rowcount == 1
        return await self.db.run("complete_pending_upload", txn)

    async def get_pending_uploads(self, user_id: str, now_ms: int) -> list[int]:
        """Expiry times of this user's created ids that are neither uploaded nor expired."""
        def txn(t: Txn):
            rows = t.execute("SELECT unused_expires_at FROM local_media WHERE user_id = ? AND uploaded_ts IS NULL "
                             "AND unused_expires_at > ? ORDER BY unused_expires_at", (user_id, now_ms)).fetchall()
            return [r[0] for r in rows]
        return await self.db.run("get_pending_uploads", txn, readonly=True)

    async def delete_expired_pending(self, now_ms: int) -> int:
        """Forget created ids whose content never came in time; returns how many."""
        def txn(t: Txn):
            t.execute("DELETE FROM local_media WHERE uploaded_ts IS NULL AND unused_expires_at <= ?", (now_ms,))
            return t.rowcount
        return await self.db.run("delete_expired_pending", txn)

    async def get_uploaded_bytes_since(self, user_id: str, since_ms: int) -> int:
        """Bytes this user uploaded at or after since_ms (for media_upload_limits)."""
        def txn(t: Txn):
            return t.scalar("SELECT COALESCE(SUM(media_length), 0) FROM local_media "
                            "WHERE user_id = ? AND uploaded_ts >= ?", (user_id, since_ms)) or 0
        return int(await self.db.run("get_uploaded_bytes_since", txn, readonly=True))

    async def set_local_quarantine(self, media_id: str, quarantined_by: str | None) -> bool:
        def txn(t: Txn):
            t.execute("UPDATE local_media SET quarantined_by = ? WHERE media_id = ?", (quarantined_by, media_id))
            return t.rowcount == 1
        return await self.db.run("set_local_quarantine", txn)

    async def delete_local_media(self, media_id: str) -> str | None:
        """Delete a row; returns its sha256 if no other local or remote row still uses the file."""
        def txn(t: Txn):
            sha = t.scalar("SELECT sha256 FROM local_media WHERE media_id = ?", (media_id,))
            t.execute("DELETE FROM local_media WHERE media_id = ?", (media_id,))
            if sha is None or _sha_in_use(t, sha):
                return None
            return sha
        return await self.db.run("delete_local_media", txn)

    # --- remote media cache --------------------------------------------------------------------
    async def get_remote_media(self, origin: str, media_id: str) -> RemoteMedia | None:
        def txn(t: Txn):
            return _remote(t.execute(f"SELECT {_REMOTE_COLUMNS} FROM remote_media_cache "
                                     "WHERE media_origin = ? AND media_id = ?", (origin, media_id)).fetchone())
        return await self.db.run("get_remote_media", txn, readonly=True)

    async def store_remote_media(self, media: RemoteMedia) -> None:
        def txn(t: Txn):
            t.execute(f"INSERT INTO remote_media_cache ({_REMOTE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                      "ON CONFLICT (media_origin, media_id) DO NOTHING",
                      (media.media_origin, media.media_id, media.content_type, media.upload_name,
                       media.media_length, media.sha256, media.created_ts, media.last_access_ts,
                       media.authenticated, media.quarantined_by))
        await self.db.run("store_remote_media", txn)

    async def touch_remote_media(self, origin: str, media_id: str, now_ms: int) -> None:
        def txn(t: Txn):
            t.execute("UPDATE remote_media_cache SET last_access_ts = ? WHERE media_origin = ? AND media_id = ?",
                      (now_ms, origin, media_id))
        await self.db.run("touch_remote_media", txn)

    # --- thumbnails --------------------------------------------------------------------------
    async def get_thumbnail(self, source_sha256: str, width: int, height: int, method: str,
                            animated: bool) -> ThumbnailRecord | None:
        def txn(t: Txn):
            row = t.execute(f"SELECT {_THUMB_COLUMNS} FROM media_thumbnails WHERE source_sha256 = ? AND width = ? "
                            "AND height = ? AND method = ? AND animated = ?",
                            (source_sha256, width, height, method, animated)).fetchone()
            return _thumb(row) if row else None
        return await self.db.run("get_thumbnail", txn, readonly=True)

    async def list_thumbnails(self, source_sha256: str) -> list[ThumbnailRecord]:
        def txn(t: Txn):
            rows = t.execute(f"SELECT {_THUMB_COLUMNS} FROM media_thumbnails WHERE source_sha256 = ? "
                             "ORDER BY width, height, method, animated", (source_sha256,)).fetchall()
            return [_thumb(r) for r in rows]
        return await self.db.run("list_thumbnails", txn, readonly=True)

    async def store_thumbnail(self, rec: ThumbnailRecord) -> bool:
        """Record a thumbnail; False if one for the same request already exists (a race)."""
        def txn(t: Txn):
            t.execute(f"INSERT INTO media_thumbnails ({_THUMB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                      "ON CONFLICT (source_sha256, width, height, method, animated) DO NOTHING",
                      (rec.source_sha256, rec.width, rec.height, rec.method, rec.animated, rec.content_type,
                       rec.thumb_width, rec.thumb_height, rec.thumb_length, rec.thumb_sha256, rec.created_ts))
            return t.rowcount == 1
        return await self.db.run("store_thumbnail", txn)


    # --- operations: access times, quarantine, deletion ----------------------------------------
    async def touch_local_media(self, media_ids: list[str], now_ms: int) -> None:
        """Record that these local media were just downloaded (batched by the caller)."""
        def txn(t: Txn):
            t.executemany("UPDATE local_media SET last_access_ts = ? WHERE media_id = ?",
                          [(now_ms, m) for m in media_ids])
        await self.db.run("touch_local_media", txn)

    async def set_quarantine(self, origin: str | None, media_id: str, quarantined_by: str | None) -> int:
        """Quarantine (or release, with None) one media item and every local or cached remote
        item with the same content (same SHA-256), as Synapse does; ``origin`` None means local.
        Returns the number of rows changed; 0 when the media is unknown here."""
        def txn(t: Txn):
            if origin is None:
                sha = t.scalar("SELECT sha256 FROM local_media WHERE media_id = ?", (media_id,))
                t.execute("UPDATE local_media SET quarantined_by = ? WHERE media_id = ?", (quarantined_by, media_id))
            else:
                sha = t.scalar("SELECT sha256 FROM remote_media_cache WHERE media_origin = ? AND media_id = ?",
                               (origin, media_id))
                t.execute("UPDATE remote_media_cache SET quarantined_by = ? WHERE media_origin = ? AND media_id = ?",
                          (quarantined_by, origin, media_id))
            changed = t.rowcount
            if sha is not None:
                t.execute("UPDATE local_media SET quarantined_by = ? WHERE sha256 = ?", (quarantined_by, sha))
                t.execute("UPDATE remote_media_cache SET quarantined_by = ? WHERE sha256 = ?", (quarantined_by, sha))
            return changed
        return await self.db.run("set_quarantine", txn)

    async def get_old_local_media(self, before_ts: int, size_gt: int, keep_profiles: bool, server_name: str,
                                  limit: int = 1000) -> list[str]:
        """Uploaded, unquarantined local media last accessed (or uploaded) before ``before_ts`` and
        larger than ``size_gt`` bytes; with ``keep_profiles``, not media used as a user's or a
        room's avatar (Synapse's admin API "Delete local media by date or size")."""
        def txn(t: Txn):
            sql = ("SELECT media_id FROM local_media lm WHERE uploaded_ts IS NOT NULL AND quarantined_by IS NULL "
                   "AND COALESCE(last_access_ts, uploaded_ts, created_ts) < ? AND COALESCE(media_length, 0) > ?")
            args: list = [before_ts, size_gt]
            if keep_profiles:
                mxc = "'mxc://' || ? || '/' || lm.media_id"
                for table in ("profiles", "user_directory", "room_stats"):
                    sql += f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE {table}.avatar_url = {mxc})"
                    args.append(server_name)
            sql += " ORDER BY media_id LIMIT ?"
            args.append(limit)
            return [r[0] for r in t.execute(sql, tuple(args)).fetchall()]
        return await self.db.run("get_old_local_media", txn, readonly=True)

    async def delete_local_media_rows(self, media_ids: list[str]) -> tuple[list[str], list[str]]:
        """Delete local media rows; returns (the ids that existed, the files no row needs any
        more: contents and their thumbnails)."""
        def txn(t: Txn):
            deleted, shas = [], set()
            for media_id in media_ids:
                sha = t.scalar("SELECT sha256 FROM local_media WHERE media_id = ?", (media_id,))
                t.execute("DELETE FROM local_media WHERE media_id = ?", (media_id,))
                if t.rowcount:
                    deleted.append(media_id)
                    if sha is not None:
                        shas.add(sha)
            return deleted, _release_files(t, shas)
        return await self.db.run("delete_local_media_rows", txn)

    async def delete_remote_media_before(self, before_ts: int, limit: int = 1000) -> tuple[int, list[str]]:
        """Drop cached remote media last accessed before ``before_ts`` (Synapse's
        purge_media_cache / remote_media_lifetime); returns (rows deleted, files to remove)."""
        def txn(t: Txn):
            rows = t.execute("SELECT media_origin, media_id, sha256 FROM remote_media_cache "
                             "WHERE last_access_ts < ? ORDER BY last_access_ts LIMIT ?", (before_ts, limit)).fetchall()
            t.executemany("DELETE FROM remote_media_cache WHERE media_origin = ? AND media_id = ?",
                          [(r[0], r[1]) for r in rows])
            return len(rows), _release_files(t, {r[2] for r in rows})
        return await self.db.run("delete_remote_media_before", txn)

    # --- URL previews ------------------------------------------------------------------------
    async def get_url_preview(self, url: str, now_ms: int) -> tuple[str, str | None] | None:
        """(og JSON, media id) of an unexpired cached preview of ``url``."""
        def txn(t: Txn):
            return t.execute("SELECT og, media_id FROM url_preview_cache WHERE url = ? AND expires_ts > ?",
                             (url, now_ms)).fetchone()
        row = await self.db.run("get_url_preview", txn, readonly=True)
        return (row[0], row[1]) if row else None

    async def store_url_preview(self, url: str, og_json: str, media_id: str | None, now_ms: int,
                                expires_ts: int) -> None:
        def txn(t: Txn):
            t.execute("INSERT INTO url_preview_cache (url, og, media_id, download_ts, expires_ts) VALUES (?,?,?,?,?) "
                      "ON CONFLICT (url) DO UPDATE SET og = excluded.og, media_id = excluded.media_id, "
                      "download_ts = excluded.download_ts, expires_ts = excluded.expires_ts",
                      (url, og_json, media_id, now_ms, expires_ts))
        await self.db.run("store_url_preview", txn)

    async def delete_expired_url_previews(self, now_ms: int) -> int:
        def txn(t: Txn):
            t.execute("DELETE FROM url_preview_cache WHERE expires_ts <= ?", (now_ms,))
            return t.rowcount
        return await self.db.run("delete_expired_url_previews", txn)


def _release_files(t: Txn, shas: set[str]) -> list[str]:
    """For content files whose rows were just deleted: drop the thumbnail rows of those no row
    uses any more and return every file (content or thumbnail) nothing references now."""
    candidates: set[str] = set()
    for sha in shas:
        if _sha_in_use(t, sha):
            continue
        candidates.add(sha)
        thumbs = t.execute("SELECT thumb_sha256 FROM media_thumbnails WHERE source_sha256 = ?", (sha,)).fetchall()
        t.execute("DELETE FROM media_thumbnails WHERE source_sha256 = ?", (sha,))
        candidates.update(r[0] for r in thumbs)
    return sorted(c for c in candidates
                  if not _sha_in_use(t, c)
                  and not t.scalar("SELECT 1 FROM media_thumbnails WHERE thumb_sha256 = ? OR source_sha256 = ?",
                                   (c, c)))


def _sha_in_use(t: Txn, sha: str) -> bool:
    return bool(t.scalar("SELECT 1 FROM local_media WHERE sha256 = ? UNION ALL "
                         "SELECT 1 FROM remote_media_cache WHERE sha256 = ?", (sha, sha)))
