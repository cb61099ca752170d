"""Media between two uzel servers, and uzel's federation media endpoints called directly with
signed requests (server-server-api "Content repository", content_repository.yaml: multipart/mixed,
JSON metadata then the bytes). Thumbnails are checked by decoding them with Pillow."""
from __future__ import annotations

import io
import json
import os
from urllib.parse import quote

import pytest
import requests
from PIL import Image

from federation.handlers.remote_reads import parse_multipart
from federation.request_auth import sign_request
from homeserver.protocol.signing import read_signing_keys
from tests.integration.harness import api, register_user
from tests.integration.test_federation_rooms import node_db, nodes  # noqa: F401 (fixture)

FED = "/_matrix/federation/v1/media"


def q(s: str) -> str:
    return quote(s, safe="")


def png(size=(640, 480)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def people(nodes):  # noqa: F811
    a, b = nodes
    return register_user(a.base_url, "alice"), register_user(b.base_url, "bob")


@pytest.fixture(scope="module")
def image_on_a(nodes, people):  # noqa: F811
    a, _ = nodes
    status, resp = api(a.base_url, "POST", "/_matrix/media/v3/upload", people[0][1], data=png(),
                       headers={"Content-Type": "image/png"}, params={"filename": "sunset.png"})
    assert status == 200, resp
    return resp["content_uri"].rsplit("/", 1)[1]


def signed_get(origin_node, target_node, path: str, *, sign: bool = True) -> requests.Response:
    """GET on ``target_node`` signed with ``origin_node``'s own key (read from its data dir)."""
    headers = {}
    if sign:
        key_file = next(os.path.join(origin_node.data_dir, f) for f in os.listdir(origin_node.data_dir)
                        if f.endswith(".signing.key"))
        key = read_signing_keys(key_file)[0]
        headers["Authorization"] = sign_request("GET", path, origin_node.name, target_node.name, key, None)
    return requests.get(target_node.base_url + path, headers=headers, timeout=30)


def test_a_remote_image_downloads_and_thumbnails_through_the_readers_server(nodes, people, image_on_a):  # noqa: F811
    a, b = nodes
    auth = {"Authorization": f"Bearer {people[1][1]}"}
    got = requests.get(f"{b.base_url}/_matrix/client/v1/media/download/{q(a.name)}/{image_on_a}", headers=auth,
                       timeout=60)
    assert got.status_code == 200 and got.content == png(), (got.status_code, got.text[:300])
    assert got.headers["Content-Type"] == "image/png" and "sunset.png" in got.headers["Content-Disposition"]
    for w, h, method, size in ((32, 32, "crop", (32, 32)), (320, 240, "scale", (320, 240)), (50, 80, "crop", (50, 80))):
        r = requests.get(f"{b.base_url}/_matrix/client/v1/media/thumbnail/{q(a.name)}/{image_on_a}", headers=auth,
                         params={"width": w, "height": h, "method": method}, timeout=60)
        assert r.status_code == 200, r.text
        im = Image.open(io.BytesIO(r.content))
        assert im.format == "PNG" and im.size == size


def test_federation_download_is_multipart_json_then_content(nodes, image_on_a):  # noqa: F811
    a, b = nodes
    r = signed_get(b, a, f"{FED}/download/{image_on_a}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    parts = parse_multipart(r.headers["Content-Type"], r.content)
    assert len(parts) == 2
    assert parts[0][0]["content-type"] == "application/json" and json.loads(parts[0][1]) == {}
    assert parts[1][0]["content-type"] == "image/png" and parts[1][1] == png()
    assert 'filename="sunset.png"' in parts[1][0]["content-disposition"]


def test_federation_thumbnail_is_multipart_with_a_decodable_image(nodes, image_on_a):  # noqa: F811
    a, b = nodes
    r = signed_get(b, a, f"{FED}/thumbnail/{image_on_a}?width=96&height=96&method=crop")
    assert r.status_code == 200, r.text
    parts = parse_multipart(r.headers["Content-Type"], r.content)
    im = Image.open(io.BytesIO(parts[1][1]))
    assert im.size == (96, 96) and parts[1][0]["content-type"] == "image/png"


@pytest.mark.parametrize("path,expected", [
    (f"{FED}/download/doesNotExist", (404, "M_NOT_FOUND")),
    (f"{FED}/download/..%2F..%2Fetc%2Fpasswd", (400, "M_INVALID_PARAM")),
    (f"{FED}/thumbnail/IMAGE?width=0&height=10", (400, "M_INVALID_PARAM")),
])
def test_federation_media_bad_requests(nodes, image_on_a, path, expected):  # noqa: F811
    a, b = nodes
    r = signed_get(b, a, path.replace("IMAGE", image_on_a))
    assert (r.status_code, r.json().get("errcode")) == expected


def test_federation_media_needs_a_signed_request(nodes, image_on_a):  # noqa: F811
    a, b = nodes
    r = signed_get(b, a, f"{FED}/download/{image_on_a}", sign=False)
    assert (r.status_code, r.json().get("errcode")) == (401, "M_UNAUTHORIZED")


def test_quarantined_media_is_not_served_over_federation(nodes, people):  # noqa: F811
    a, b = nodes
    status, resp = api(a.base_url, "POST", "/_matrix/media/v3/upload", people[0][1], data=b"bad bytes",
                       headers={"Content-Type": "text/plain"})
    media_id = resp["content_uri"].rsplit("/", 1)[1]
    node_db(a, "UPDATE local_media SET quarantined_by = ? WHERE media_id = ?", ("@admin:x", media_id))
    assert signed_get(b, a, f"{FED}/download/{media_id}").status_code == 404
    got = requests.get(f"{b.base_url}/_matrix/client/v1/media/download/{q(a.name)}/{media_id}",
                       headers={"Authorization": f"Bearer {people[1][1]}"}, timeout=60)
    assert got.status_code == 404
