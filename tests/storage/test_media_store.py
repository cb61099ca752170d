"""The media tables (0070_media.sql) on both engines, and the content-addressed file store."""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from types import SimpleNamespace

import pytest
import pytest_twisted

from homeserver.media.filestore import MediaFileStore
from homeserver.storage.media_store import LocalMedia, MediaStore, RemoteMedia, ThumbnailRecord

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture
def store(database):
    return MediaStore(SimpleNamespace(db=database))


def uploaded(media_id="m1", user="@alice:test", ts=1000, length=10, sha=SHA_A) -> LocalMedia:
    return LocalMedia(media_id, user, ts, None, ts, "image/png", "cat.png", length, sha, True, None)


def pending(media_id="p1", user="@alice:test", ts=1000, expires=5000) -> LocalMedia:
    return LocalMedia(media_id, user, ts, expires, None, None, None, None, None, True, None)


@pytest_twisted.ensureDeferred
async def test_uploaded_media_round_trips(store):
    await store.insert_local_media(uploaded())
    got = await store.get_local_media("m1")
    assert got == uploaded() and got.uploaded and got.authenticated is True
    assert await store.get_local_media("nope") is None


@pytest_twisted.ensureDeferred
async def test_created_id_is_completed_once_by_its_owner(store):
    await store.insert_local_media(pending())
    got = await store.get_local_media("p1")
    assert not got.uploaded and not got.expired(4999) and got.expired(5000)
    assert not await store.complete_pending_upload("p1", "@mallory:test", 2000, "text/plain", None, 3, SHA_A)
    assert await store.complete_pending_upload("p1", "@alice:test", 2000, "text/plain", "a.txt", 3, SHA_A)
    assert not await store.complete_pending_upload("p1", "@alice:test", 2001, "text/plain", None, 3, SHA_B)
    got = await store.get_local_media("p1")
    assert (got.uploaded_ts, got.sha256, got.upload_name, got.unused_expires_at) == (2000, SHA_A, "a.txt", None)


@pytest_twisted.ensureDeferred
async def test_pending_uploads_count_only_live_unfinished_ids(store):
    await store.insert_local_media(pending("p1", expires=5000))
    await store.insert_local_media(pending("p2", expires=9000))
    await store.insert_local_media(pending("p3", expires=1500))
    await store.insert_local_media(pending("other", user="@bob:test", expires=9000))
    await store.insert_local_media(uploaded("m1"))
    assert await store.get_pending_uploads("@alice:test", 2000) == [5000, 9000]
    assert await store.delete_expired_pending(2000) == 1
    assert await store.get_local_media("p3") is None


@pytest_twisted.ensureDeferred
async def test_uploaded_bytes_since_sums_one_users_recent_uploads(store):
    await store.insert_local_media(uploaded("m1", ts=1000, length=10))
    await store.insert_local_media(uploaded("m2", ts=2000, length=20))
    await store.insert_local_media(uploaded("m3", user="@bob:test", ts=2000, length=40))
    assert await store.get_uploaded_bytes_since("@alice:test", 1500) == 20
    assert await store.get_uploaded_bytes_since("@alice:test", 0) == 30
    assert await store.get_uploaded_bytes_since("@carol:test", 0) == 0


@pytest_twisted.ensureDeferred
async def test_quarantine_is_recorded(store):
    await store.insert_local_media(uploaded())
    assert await store.set_local_quarantine("m1", "@admin:test")
    assert (await store.get_local_media("m1")).quarantined_by == "@admin:test"


@pytest_twisted.ensureDeferred
async def test_deleting_media_frees_the_file_only_when_no_row_shares_it(store):
    await store.insert_local_media(uploaded("m1", sha=SHA_A))
    await store.insert_local_media(uploaded("m2", sha=SHA_A))
    assert await store.delete_local_media("m1") is None
    assert await store.delete_local_media("m2") == SHA_A


@pytest_twisted.ensureDeferred
async def test_thumbnails_are_keyed_by_source_and_request(store):
    rec = ThumbnailRecord(SHA_A, 96, 96, "crop", False, "image/png", 96, 96, 123, SHA_B, 1000)
    assert await store.store_thumbnail(rec)
    assert not await store.store_thumbnail(replace(rec, thumb_length=999))  # first one wins
    assert await store.get_thumbnail(SHA_A, 96, 96, "crop", False) == rec
    assert await store.get_thumbnail(SHA_A, 96, 96, "crop", True) is None
    await store.store_thumbnail(replace(rec, animated=True, content_type="image/webp"))
    assert [t.animated for t in await store.list_thumbnails(SHA_A)] == [False, True]


@pytest_twisted.ensureDeferred
async def test_remote_media_cache_round_trips(store):
    rec = RemoteMedia("other.example", "abc", "image/png", None, 5, SHA_A, 1000, 1000, True, None)
    await store.store_remote_media(rec)
    await store.store_remote_media(replace(rec, media_length=6))  # a racing second fetch is ignored
    await store.touch_remote_media("other.example", "abc", 2000)
    assert await store.get_remote_media("other.example", "abc") == replace(rec, last_access_ts=2000)
    assert await store.get_remote_media("other.example", "zzz") is None


# --- files on disk ------------------------------------------------------------------------

def test_files_are_stored_once_by_sha256(tmp_path):
    files = MediaFileStore(str(tmp_path))
    sha = files.write(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert files.write(b"hello") == sha
    assert files.read(sha) == b"hello"
    stored = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "content") for f in fs]
    assert stored == [files.path_for(sha)]
    assert os.listdir(tmp_path / "tmp") == []


def test_empty_content_is_a_file_too(tmp_path):
    files = MediaFileStore(str(tmp_path))
    sha = files.write(b"")
    assert files.read(sha) == b""


def test_file_paths_only_come_from_digests(tmp_path):
    files = MediaFileStore(str(tmp_path))
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63, "a" * 63 + "/"):
        with pytest.raises(ValueError):
            files.path_for(bad)
    assert files.read("c" * 64) is None
    assert files.delete("c" * 64) is False
