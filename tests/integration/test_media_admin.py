"""Synapse's media admin API against a real uzel: quarantine, delete one, delete by age, purge the
remote cache; admins only (homeserver/api/admin/media.py)."""
from __future__ import annotations

import time

import pytest
import requests

from homeserver.accounts.shared_secret import compute_mac
from tests.integration.harness import api, db_execute, make_server_fixture, register_user

server = make_server_fixture(engines=("sqlite",))
ADMIN = "/_synapse/admin/v1"
MEDIA = "/_matrix/client/v1/media"


@pytest.fixture(scope="module")
def admin(server):
    _, body = api(server.base_url, "GET", f"{ADMIN}/register")
    nonce, pw = body["nonce"], "admin password"
    status, resp = api(server.base_url, "POST", f"{ADMIN}/register", json={
        "nonce": nonce, "username": "boss", "password": pw, "admin": True,
        "mac": compute_mac(server.shared_secret, nonce, "boss", pw, True)})
    assert status == 200, resp
    return resp["access_token"]


@pytest.fixture(scope="module")
def alice(server):
    return register_user(server.base_url, "alice")[1]


def upload(server, token, data: bytes) -> str:
    status, body = api(server.base_url, "POST", "/_matrix/media/v3/upload", token, data=data,
                       headers={"Content-Type": "text/plain"})
    assert status == 200, body
    return body["content_uri"].rsplit("/", 1)[1]


def download(server, token, media_id) -> requests.Response:
    return requests.get(f"{server.base_url}{MEDIA}/download/{server.server_name}/{media_id}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("method,path", [
    ("POST", "/media/quarantine/test.local/abc"), ("POST", "/media/unquarantine/test.local/abc"),
    ("DELETE", "/media/test.local/abc"), ("POST", "/media/delete?before_ts=40000000000"),
    ("POST", "/purge_media_cache?before_ts=40000000000"),
])
def test_media_admin_routes_refuse_non_admins(server, alice, method, path):
    status, body = api(server.base_url, method, ADMIN + path, alice)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = api(server.base_url, method, ADMIN + path)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


def test_quarantined_media_is_not_found_until_released(server, admin, alice):
    media_id = upload(server, alice, b"nasty")
    twin = upload(server, alice, b"nasty")
    status, body = api(server.base_url, "POST", f"{ADMIN}/media/quarantine/{server.server_name}/{media_id}", admin)
    assert (status, body) == (200, {})
    assert download(server, alice, media_id).status_code == 404
    assert download(server, alice, twin).status_code == 404  # same content
    api(server.base_url, "POST", f"{ADMIN}/media/unquarantine/{server.server_name}/{media_id}", admin)
    assert download(server, alice, media_id).content == b"nasty"


def test_quarantine_refuses_bad_media_ids(server, admin):
    status, body = api(server.base_url, "POST", f"{ADMIN}/media/quarantine/{server.server_name}/..%2Fetc", admin)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_delete_one_local_media(server, admin, alice):
    media_id = upload(server, alice, b"delete me")
    path = f"{ADMIN}/media/{server.server_name}/{media_id}"
    status, body = api(server.base_url, "DELETE", path, admin)
    assert (status, body) == (200, {"deleted_media": [media_id], "total": 1})
    assert download(server, alice, media_id).status_code == 404
    assert api(server.base_url, "DELETE", path, admin)[0] == 404
    status, body = api(server.base_url, "DELETE", f"{ADMIN}/media/other.example/{media_id}", admin)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_delete_by_age_deletes_media_not_accessed_since(server, admin, alice):
    old, read, small = upload(server, alice, b"o" * 500), upload(server, alice, b"r" * 500), upload(server, alice, b"s")
    long_ago = now_ms() - 10 * 86_400_000
    for media_id in (old, read, small):
        db_execute(server, "UPDATE local_media SET created_ts = ?, uploaded_ts = ? WHERE media_id = ?",
                   (long_ago, long_ago, media_id))
    assert download(server, alice, read).status_code == 200  # accessed now
    status, body = api(server.base_url, "POST", f"{ADMIN}/media/delete", admin,
                       params={"before_ts": str(now_ms() - 86_400_000), "size_gt": "100"})
    assert status == 200 and body == {"deleted_media": [old], "total": 1}
    assert download(server, alice, old).status_code == 404
    assert download(server, alice, read).status_code == 200 and download(server, alice, small).status_code == 200


@pytest.mark.parametrize("params,expected", [
    ({}, (400, "M_MISSING_PARAM")),
    ({"before_ts": "-1"}, (400, "M_INVALID_PARAM")),
    ({"before_ts": "1600000000"}, (400, "M_INVALID_PARAM")),  # seconds, not ms
    ({"before_ts": "40000000000", "size_gt": "big"}, (400, "M_INVALID_PARAM")),
    ({"before_ts": "40000000000", "keep_profiles": "maybe"}, (400, "M_INVALID_PARAM")),
])
def test_delete_by_age_validates_its_parameters(server, admin, params, expected):
    status, body = api(server.base_url, "POST", f"{ADMIN}/media/delete", admin, params=params)
    assert (status, body["errcode"]) == expected


def test_purge_media_cache_forgets_old_remote_media(server, admin):
    db_execute(server, "INSERT INTO remote_media_cache (media_origin, media_id, content_type, media_length, sha256, "
               "created_ts, last_access_ts, authenticated) VALUES (?,?,?,?,?,?,?,?)",
               ("other.example", "cached", "text/plain", 1, "c" * 64, 1000, 1000, True))
    status, body = api(server.base_url, "POST", f"{ADMIN}/purge_media_cache", admin,
                       params={"before_ts": str(now_ms())})
    assert (status, body) == (200, {"deleted": 1})
    assert db_execute(server, "SELECT 1 FROM remote_media_cache WHERE media_id = 'cached'") == []
