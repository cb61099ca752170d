"""Media operations on both engines: quarantine by content, deleting local media with its
thumbnails and files, delete-by-age going by the last access, keeping avatars, purging the remote
cache and media_retention (homeserver/media/repository.py, storage 0071_media_operations.sql)."""
from __future__ import annotations

import io
import os

import pytest_twisted
from PIL import Image

from tests.storage.test_media_store import CountingFetcher, _errcode, _repo

DAY = 86_400_000


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (500, 400), (5, 6, 7)).save(buf, "PNG")
    return buf.getvalue()


def _files(repo) -> set[str]:
    return {f for _, _, fs in os.walk(repo.files.root) for f in fs}


async def _upload(repo, data: bytes, ctype="text/plain", user="@a:test") -> str:
    return (await repo.upload(user, data, ctype, None)).rsplit("/", 1)[1]


@pytest_twisted.ensureDeferred
async def test_quarantine_covers_every_item_with_the_same_content_and_can_be_lifted(database, tmp_path):
    hs, repo = _repo(database, tmp_path)
    first, second = await _upload(repo, b"bad"), await _upload(repo, b"bad")
    other = await _upload(repo, b"fine")
    repo.set_remote_fetcher(CountingFetcher(b"bad"))
    await repo.download("remote.example", "r1")
    assert await repo.quarantine("test", first, "@admin:test") == 1
    for server, media_id in (("test", first), ("test", second), ("remote.example", "r1")):
        assert await _errcode(repo.download(server, media_id)) == (404, "M_NOT_FOUND")
    assert (await repo.download("test", other)).data == b"fine"
    await repo.quarantine("test", second, None)
    assert (await repo.download("test", first)).data == b"bad"
    assert await repo.quarantine("test", "unknownMedia", "@admin:test") == 0


@pytest_twisted.ensureDeferred
async def test_deleting_media_removes_thumbnails_and_files_only_when_unused(database, tmp_path):
    hs, repo = _repo(database, tmp_path, max_upload_size=10_000_000)
    image = _png()
    first, second = await _upload(repo, image, "image/png"), await _upload(repo, image, "image/png")
    await repo.wait_for_background_work()
    sha = (await repo.store.get_local_media(first)).sha256
    files_with_thumbs = _files(repo)
    assert len(files_with_thumbs) > 1 and await repo.store.list_thumbnails(sha)
    assert await repo.delete_local_media([first]) == [first]
    assert _files(repo) == files_with_thumbs  # the second upload still uses the content
    assert await repo.delete_local_media([second, "neverExisted"]) == [second]
    assert _files(repo) == set() and await repo.store.list_thumbnails(sha) == []
    assert await _errcode(repo.download("test", second)) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_delete_by_age_goes_by_last_access_size_and_keeps_avatars_and_quarantined(database, tmp_path):
    hs, repo = _repo(database, tmp_path)
    old_unused = await _upload(repo, b"x" * 100)
    old_but_read = await _upload(repo, b"y" * 100)
    small = await _upload(repo, b"z")
    avatar = await _upload(repo, b"a" * 100)
    quarantined = await _upload(repo, b"q" * 100)
    pending_uri, _ = await repo.create("@a:test")
    await database.run("avatar", lambda t: t.execute(
        "INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, ?)",
        ("@a:test", "a", f"mxc://test/{avatar}")))
    await repo.quarantine("test", quarantined, "@admin:test")
    hs.now += 10 * DAY
    await repo.download("test", old_but_read)  # recorded in memory, flushed by delete_old_local_media
    deleted = await repo.delete_old_local_media(hs.now - DAY, size_gt=50, keep_profiles=True)
    assert deleted == [old_unused]
    assert await repo.delete_old_local_media(hs.now - DAY, size_gt=50, keep_profiles=False) == [avatar]
    assert await repo.delete_old_local_media(hs.now - DAY, size_gt=0) == [small]
    assert await repo.store.get_local_media(pending_uri.rsplit("/", 1)[1]) is not None
    assert await repo.store.get_local_media(quarantined) is not None


@pytest_twisted.ensureDeferred
async def test_remote_cache_purge_forgets_items_not_read_since_and_refetches_them(database, tmp_path):
    hs, repo = _repo(database, tmp_path)
    fetcher = CountingFetcher(b"remote")
    repo.set_remote_fetcher(fetcher)
    await repo.download("remote.example", "stale")
    hs.now += DAY
    await repo.download("remote.example", "fresh")
    assert await repo.purge_remote_media_cache(hs.now - 1000) == 1
    assert await repo.store.get_remote_media("remote.example", "stale") is None
    assert await repo.store.get_remote_media("remote.example", "fresh") is not None
    assert (await repo.download("remote.example", "stale")).data == b"remote" and fetcher.calls == 3


@pytest_twisted.ensureDeferred
async def test_media_retention_applies_both_lifetimes(database, tmp_path):
    hs, repo = _repo(database, tmp_path, local_media_lifetime_ms=30 * DAY, remote_media_lifetime_ms=7 * DAY)
    repo.set_remote_fetcher(CountingFetcher(b"remote"))
    local = await _upload(repo, b"local")
    await repo.download("remote.example", "r")
    hs.now += 8 * DAY
    await repo.apply_retention()
    assert await repo.store.get_remote_media("remote.example", "r") is None
    assert await repo.store.get_local_media(local) is not None
    hs.now += 23 * DAY
    await repo.apply_retention()
    assert await repo.store.get_local_media(local) is None
    assert _files(repo) == set()
