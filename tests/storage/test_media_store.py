"""The media tables (0070_media.sql) on both engines, and the content-addressed file store."""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from types import SimpleNamespace

import pytest
import pytest_twisted

from config.schema import Config
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


# --- the repository's policies over a real database (no HTTP) --------------------------------

class FakeHomeServer:
    """Just what MediaRepository uses: db, config, hostname, a settable clock, the reactor, get()."""

    def __init__(self, db, media_path: str, **config):
        from twisted.internet import reactor
        self.db = db
        self.reactor = reactor
        self.hostname = "test"
        self.now = 1_000_000
        defaults = Config(server_name="test", public_baseurl="http://test/", listeners=(),
                          database=None, signing_key_path="", media_store_path=media_path)  # type: ignore[arg-type]
        self.config = replace(defaults, **{"max_upload_size": 10_000, **config})
        self._instances: dict = {}

    def clock_ms(self) -> int:
        return self.now

    def get(self, cls):
        if cls not in self._instances:
            self._instances[cls] = cls(self)
        return self._instances[cls]


class CountingFetcher:
    def __init__(self, data=b"remote bytes", content_type="text/plain", delay=0.0):
        self.calls = 0
        self.data, self.content_type, self.delay = data, content_type, delay

    async def fetch(self, server_name, media_id, *, max_size, timeout_ms):
        from twisted.internet import reactor, task

        from homeserver.media.remote import FetchedMedia
        self.calls += 1
        if self.delay:
            await task.deferLater(reactor, self.delay, lambda: None)
        return FetchedMedia(self.data, self.content_type, "remote.txt")


def _repo(database, tmp_path, **config):
    from homeserver.media.repository import MediaRepository
    hs = FakeHomeServer(database, str(tmp_path / "media"), **config)
    return hs, hs.get(MediaRepository)


async def _errcode(coro) -> tuple[int, str]:
    from homeserver.http.errors import MatrixError
    try:
        await coro
    except MatrixError as e:
        return e.code, e.errcode
    raise AssertionError("expected a MatrixError")


@pytest_twisted.ensureDeferred
async def test_upload_quota_refuses_with_403_until_the_period_has_passed(database, tmp_path):
    from homeserver.media.repository import MediaUploadLimit
    hs, repo = _repo(database, tmp_path, media_upload_limits=[MediaUploadLimit(60_000, 100)])
    await repo.upload("@a:test", b"x" * 60, "text/plain", None)
    assert await _errcode(repo.upload("@a:test", b"x" * 50, "text/plain", None)) == (403, "M_FORBIDDEN")
    await repo.upload("@b:test", b"x" * 50, "text/plain", None)  # quotas are per user
    hs.now += 60_001
    await repo.upload("@a:test", b"x" * 50, "text/plain", None)


@pytest_twisted.ensureDeferred
async def test_created_id_expires_when_unused(database, tmp_path):
    hs, repo = _repo(database, tmp_path, unused_expiration_time=1000)
    uri, expires_at = await repo.create("@a:test")
    assert expires_at == hs.now + 1000
    media_id = uri.rsplit("/", 1)[1]
    hs.now += 1000
    assert await _errcode(repo.upload_to_created("@a:test", "test", media_id, b"x", None, None)) == (404, "M_NOT_FOUND")
    assert await _errcode(repo.download("test", media_id, timeout_ms=0)) == (404, "M_NOT_FOUND")
    await repo._purge_expired()
    assert await repo.store.get_local_media(media_id) is None


@pytest_twisted.ensureDeferred
async def test_upload_pregenerates_the_standard_thumbnails(database, tmp_path):
    import io

    from PIL import Image
    hs, repo = _repo(database, tmp_path, max_upload_size=10_000_000)
    buf = io.BytesIO()
    Image.new("RGB", (1000, 700), (1, 2, 3)).save(buf, "PNG")
    await repo.upload("@a:test", buf.getvalue(), "image/png", None)
    await repo.wait_for_background_work()
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    sizes = {(t.width, t.height, t.method): (t.thumb_width, t.thumb_height) for t in await repo.store.list_thumbnails(sha)}
    assert sizes == {(32, 32, "crop"): (32, 32), (96, 96, "crop"): (96, 96), (320, 240, "scale"): (320, 224),
                     (640, 480, "scale"): (640, 448), (800, 600, "scale"): (800, 560)}


@pytest.mark.parametrize("dynamic, expected", [(True, (200, 100)), (False, (96, 96))])
@pytest_twisted.ensureDeferred
async def test_dynamic_thumbnails_false_answers_with_a_pregenerated_size(database, tmp_path, dynamic, expected):
    import io

    from PIL import Image
    hs, repo = _repo(database, tmp_path, max_upload_size=10_000_000, dynamic_thumbnails=dynamic)
    buf = io.BytesIO()
    Image.new("RGB", (1000, 700), (1, 2, 3)).save(buf, "PNG")
    media_id = (await repo.upload("@a:test", buf.getvalue(), "image/png", None)).rsplit("/", 1)[1]
    await repo.wait_for_background_work()
    thumb = await repo.thumbnail("test", media_id, 200, 100, "crop")  # no standard crop is 2:1
    assert Image.open(io.BytesIO(thumb.data)).size == expected


@pytest_twisted.ensureDeferred
async def test_remote_media_is_fetched_once_then_served_from_the_cache(database, tmp_path):
    from twisted.internet import defer
    hs, repo = _repo(database, tmp_path)
    fetcher = CountingFetcher(delay=0.05)
    repo.set_remote_fetcher(fetcher)
    first, second = await defer.gatherResults([
        defer.ensureDeferred(repo.download("other.example", "abc")),
        defer.ensureDeferred(repo.download("other.example", "abc"))])
    third = await repo.download("other.example", "abc")
    assert fetcher.calls == 1
    assert first.data == second.data == third.data == b"remote bytes"
    assert (third.content_type, third.upload_name) == ("text/plain", "remote.txt")
    cached = await repo.store.get_remote_media("other.example", "abc")
    assert cached.authenticated and cached.media_length == 12


@pytest_twisted.ensureDeferred
async def test_remote_media_rules(database, tmp_path):
    hs, repo = _repo(database, tmp_path, max_upload_size=5)
    assert await _errcode(repo.download("other.example", "abc")) == (404, "M_NOT_FOUND")  # no federation yet
    repo.set_remote_fetcher(CountingFetcher(b"too many bytes"))
    assert await _errcode(repo.download("other.example", "abc")) == (502, "M_TOO_LARGE")
    repo.set_remote_fetcher(CountingFetcher(b"ok"))
    assert await _errcode(repo.download("other.example", "abc", allow_remote=False)) == (404, "M_NOT_FOUND")
    assert (await repo.download("other.example", "abc")).data == b"ok"
    # Cached while authenticated media was on: never served on the deprecated endpoints.
    assert await _errcode(repo.download("other.example", "abc", legacy=True)) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_remote_images_are_thumbnailed_locally(database, tmp_path):
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (400, 400), (9, 9, 9)).save(buf, "JPEG")
    hs, repo = _repo(database, tmp_path, max_upload_size=10_000_000)
    repo.set_remote_fetcher(CountingFetcher(buf.getvalue(), "image/jpeg"))
    thumb = await repo.thumbnail("other.example", "img", 32, 32, "crop")
    assert thumb.content_type == "image/jpeg" and Image.open(io.BytesIO(thumb.data)).size == (32, 32)
    await repo.wait_for_background_work()


@pytest_twisted.ensureDeferred
async def test_quarantined_media_is_not_found(database, tmp_path):
    hs, repo = _repo(database, tmp_path)
    media_id = (await repo.upload("@a:test", b"bad", "text/plain", None)).rsplit("/", 1)[1]
    await repo.store.set_local_quarantine(media_id, "@admin:test")
    assert await _errcode(repo.download("test", media_id)) == (404, "M_NOT_FOUND")
