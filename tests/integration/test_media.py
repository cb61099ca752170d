"""The content repository over HTTP against a real uzel (client-server-api/modules/content_repo.md,
data/api/client-server/{content-repo,authed-content-repo}.yaml)."""
from __future__ import annotations

import io
import os
import socket
import struct
import threading
import time
import zlib
from urllib.parse import urlparse

import pytest
import requests
from PIL import Image

from tests.integration.harness import api, make_server_fixture, register_user

MAX_UPLOAD = 100 * 1024  # small, so "too large" is cheap to test

server = make_server_fixture({"max_upload_size": MAX_UPLOAD})
legacy_server = make_server_fixture({"enable_authenticated_media": False}, engines=("sqlite",))

UPLOAD = "/_matrix/media/v3/upload"
CREATE = "/_matrix/media/v1/create"
MEDIA = "/_matrix/client/v1/media"


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alice(server):
    return register_user(server.base_url, "alice")


@pytest.fixture(scope="module")
def bob(server):
    return register_user(server.base_url, "bob")


def auth(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def upload(server, token, data: bytes, content_type: str | None = "application/octet-stream",
           filename: str | None = None) -> str:
    """Upload; returns the media id."""
    headers = auth(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    params = {"filename": filename} if filename is not None else None
    r = requests.post(server.base_url + UPLOAD, data=data, headers=headers, params=params, timeout=30)
    assert r.status_code == 200, r.text
    uri = r.json()["content_uri"]
    assert uri.startswith(f"mxc://{server.server_name}/")
    return uri.rsplit("/", 1)[1]


def get(server, token, path: str, **params) -> requests.Response:
    return requests.get(server.base_url + path, headers=auth(token), params=params or None, timeout=30)


def download(server, token, media_id: str, file_name: str | None = None, **params) -> requests.Response:
    path = f"{MEDIA}/download/{server.server_name}/{media_id}" + (f"/{file_name}" if file_name else "")
    return get(server, token, path, **params)


def thumbnail(server, token, media_id: str, width, height, method="scale", **params) -> requests.Response:
    return get(server, token, f"{MEDIA}/thumbnail/{server.server_name}/{media_id}", width=width, height=height,
               method=method, **params)


def image_bytes(size=(1000, 700), fmt="JPEG", mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt)
    return buf.getvalue()


def animated_gif(size=(400, 300), frames=3) -> bytes:
    images = [Image.new("RGB", size, (i * 80, 0, 255 - i * 80)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=60, loop=0)
    return buf.getvalue()


def decoded(r: requests.Response) -> Image.Image:
    im = Image.open(io.BytesIO(r.content))
    im.load()
    return im


def error(r: requests.Response) -> tuple[int, str]:
    return r.status_code, r.json().get("errcode")


# --- upload and download ---------------------------------------------------------------------

def test_upload_then_download_returns_the_same_bytes_and_safe_headers(server, alice):
    data = b"hello media repository"
    media_id = upload(server, alice[1], data, "text/plain", "greeting.txt")
    r = download(server, alice[1], media_id)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Disposition"] == 'inline; filename="greeting.txt"'
    assert r.headers["Content-Security-Policy"].startswith("sandbox;")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


def test_download_with_file_name_in_path_overrides_the_upload_name(server, alice):
    media_id = upload(server, alice[1], b"x", "text/plain", "original.txt")
    r = download(server, alice[1], media_id, "other.txt")
    assert r.status_code == 200 and r.headers["Content-Disposition"] == 'inline; filename="other.txt"'


def test_upload_without_content_type_is_served_as_octet_stream_attachment(server, alice):
    media_id = upload(server, alice[1], b"\x00\x01", content_type=None)
    r = download(server, alice[1], media_id)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == "attachment"  # no filename given, none returned


def test_html_is_served_as_attachment_never_inline(server, alice):
    media_id = upload(server, alice[1], b"<script>alert(1)</script>", "text/html", "x.html")
    r = download(server, alice[1], media_id)
    assert r.headers["Content-Disposition"] == 'attachment; filename="x.html"'


@pytest.mark.parametrize("name,param", [
    ("kočka 猫.jpg", "filename*=utf-8''ko%C4%8Dka%20%E7%8C%AB.jpg"),
    ('say "hi".jpg', "filename*=utf-8''say%20%22hi%22.jpg"),  # no quoted-string escaping games
])
def test_non_ascii_or_quoted_file_name_uses_rfc6266_filename_star(server, alice, name, param):
    media_id = upload(server, alice[1], image_bytes((10, 10)), "image/jpeg", name)
    r = download(server, alice[1], media_id)
    assert r.headers["Content-Disposition"] == "inline; " + param


def test_zero_byte_upload_is_accepted_and_downloads_empty(server, alice):
    media_id = upload(server, alice[1], b"", "text/plain")
    r = download(server, alice[1], media_id)
    assert r.status_code == 200 and r.content == b""


def test_head_request_sends_headers_without_body(server, alice):
    media_id = upload(server, alice[1], b"12345", "text/plain")
    r = requests.head(server.base_url + f"{MEDIA}/download/{server.server_name}/{media_id}",
                      headers=auth(alice[1]), timeout=30)
    assert r.status_code == 200 and r.headers["Content-Length"] == "5" and r.content == b""


def test_upload_over_max_upload_size_is_413_too_large(server, alice):
    r = requests.post(server.base_url + UPLOAD, data=b"x" * (MAX_UPLOAD + 1), headers=auth(alice[1]), timeout=30)
    assert error(r) == (413, "M_TOO_LARGE")


def test_upload_over_the_request_body_cap_is_413_too_large(server, alice):
    r = requests.post(server.base_url + UPLOAD, data=b"x" * (2 * 1024 * 1024), headers=auth(alice[1]), timeout=30)
    assert error(r) == (413, "M_TOO_LARGE")


def test_identical_uploads_are_stored_once_on_disk(server, alice):
    data = os.urandom(2048)
    first, second = upload(server, alice[1], data), upload(server, alice[1], data)
    assert first != second
    store = server.config["media_store_path"]
    matches = [f for d, _, fs in os.walk(store) for f in fs if open(os.path.join(d, f), "rb").read() == data]
    assert len(matches) == 1


def test_body_shorter_than_content_length_is_never_stored(server, alice):
    """A client that promises 1000 bytes, sends 10 and hangs up gets no media."""
    url = urlparse(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall((f"POST {UPLOAD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice[1]}\r\n"
                   "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n").encode() + b"0123456789")
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(65536)
    assert b"content_uri" not in answer
    status, body = api(server.base_url, "GET", f"{MEDIA}/config", alice[1])
    assert status == 200  # the server is fine


def test_body_longer_than_content_length_is_cut_at_content_length(server, alice):
    url = urlparse(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall((f"POST {UPLOAD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice[1]}\r\n"
                   "Content-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\n").encode()
                  + b"abcdEXTRA")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    media_id = body.split(b'"content_uri":"', 1)[1].split(b'"', 1)[0].decode().rsplit("/", 1)[1]
    assert download(server, alice[1], media_id).content == b"abcd"


def test_media_config_reports_the_upload_limit(server, alice):
    for path in (f"{MEDIA}/config", "/_matrix/media/v3/config"):
        status, body = api(server.base_url, "GET", path, alice[1])
        assert (status, body) == (200, {"m.upload.size": MAX_UPLOAD})


@pytest.mark.parametrize("method,path", [
    ("POST", UPLOAD), ("POST", CREATE), ("GET", f"{MEDIA}/config"),
    ("GET", f"{MEDIA}/download/test.local/abc"), ("GET", f"{MEDIA}/thumbnail/test.local/abc?width=1&height=1"),
    ("PUT", "/_matrix/media/v3/upload/test.local/abc"),
])
def test_requests_without_access_token_are_401_missing_token(server, method, path):
    r = requests.request(method, server.base_url + path, data=b"x", timeout=30)
    assert error(r) == (401, "M_MISSING_TOKEN")


def test_unknown_media_is_404_not_found(server, alice):
    assert error(download(server, alice[1], "doesNotExist")) == (404, "M_NOT_FOUND")


def test_remote_media_is_404_until_federation_fetches_it(server, alice):
    r = get(server, alice[1], f"{MEDIA}/download/elsewhere.example/abcdef")
    assert error(r) == (404, "M_NOT_FOUND")


# --- path traversal and hostile names --------------------------------------------------------

@pytest.mark.parametrize("media_id", ["..%2F..%2F..%2Fetc%2Fpasswd", "%2E%2E", "abc%00", "a.b", "abc%20def",
                                      "%C3%A9t%C3%A9"])
def test_media_ids_outside_the_grammar_are_refused(server, alice, media_id):
    r = get(server, alice[1], f"{MEDIA}/download/{server.server_name}/{media_id}")
    assert error(r) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("server_name", ["bad_host", "a%2Fb", "exa mple.org", "..%2F..%2F"])
def test_invalid_server_names_are_refused(server, alice, server_name):
    r = get(server, alice[1], f"{MEDIA}/download/{server_name}/abcdef")
    assert error(r) == (400, "M_INVALID_PARAM")


def test_path_traversal_in_upload_file_name_only_ever_names_the_download(server, alice):
    media_id = upload(server, alice[1], b"secret?", "text/plain", "../../../etc/passwd")
    r = download(server, alice[1], media_id)
    assert r.content == b"secret?" and r.headers["Content-Disposition"] == 'inline; filename="../../../etc/passwd"'
    store = server.config["media_store_path"]
    assert sorted(os.listdir(store)) == ["content", "tmp"]


def test_control_characters_in_file_names_are_refused(server, alice):
    r = requests.post(server.base_url + UPLOAD, data=b"x", params={"filename": "a\r\nSet-Cookie: x=y"},
                      headers=auth(alice[1]), timeout=30)
    assert error(r) == (400, "M_INVALID_PARAM")
    media_id = upload(server, alice[1], b"x")
    assert error(download(server, alice[1], media_id, "a%0D%0AX-Evil:%201")) == (400, "M_INVALID_PARAM")


# --- create, then upload -------------------------------------------------------------------------

def create(server, token) -> tuple[str, dict]:
    status, body = api(server.base_url, "POST", CREATE, token)
    assert status == 200, body
    return body["content_uri"].rsplit("/", 1)[1], body


def put(server, token, media_id, data: bytes, content_type="text/plain", server_name=None) -> requests.Response:
    name = server_name or server.server_name
    return requests.put(f"{server.base_url}/_matrix/media/v3/upload/{name}/{media_id}", data=data,
                        headers={**auth(token), "Content-Type": content_type}, timeout=30)


def test_create_then_put_then_download(server, bob):
    media_id, body = create(server, bob[1])
    assert body["content_uri"] == f"mxc://{server.server_name}/{media_id}"
    assert body["unused_expires_at"] > time.time() * 1000 + 23 * 3600 * 1000
    r = put(server, bob[1], media_id, b"later")
    assert (r.status_code, r.json()) == (200, {})
    assert download(server, bob[1], media_id).content == b"later"


def test_second_put_is_409_cannot_overwrite_media(server, bob):
    media_id, _ = create(server, bob[1])
    assert put(server, bob[1], media_id, b"one").status_code == 200
    assert error(put(server, bob[1], media_id, b"two")) == (409, "M_CANNOT_OVERWRITE_MEDIA")


def test_put_by_another_user_is_403_forbidden(server, alice, bob):
    media_id, _ = create(server, bob[1])
    assert error(put(server, alice[1], media_id, b"mine now")) == (403, "M_FORBIDDEN")


def test_put_to_an_id_never_created_is_404(server, bob):
    assert error(put(server, bob[1], "neverCreated", b"x")) == (404, "M_NOT_FOUND")
    media_id, _ = create(server, bob[1])
    assert error(put(server, bob[1], media_id, b"x", server_name="other.example")) == (404, "M_NOT_FOUND")


def test_download_before_upload_times_out_with_504_not_yet_uploaded(server, bob):
    media_id, _ = create(server, bob[1])
    started = time.monotonic()
    r = download(server, bob[1], media_id, timeout_ms=300)
    assert error(r) == (504, "M_NOT_YET_UPLOADED")
    assert time.monotonic() - started >= 0.25
    put(server, bob[1], media_id, b"done")  # free the pending slot for later tests


def test_download_waiting_for_upload_gets_the_content_when_it_arrives(server, bob):
    media_id, _ = create(server, bob[1])
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("r", download(server, bob[1], media_id,
                                                                             timeout_ms=10000)))
    waiter.start()
    time.sleep(0.3)
    assert put(server, bob[1], media_id, b"arrived").status_code == 200
    waiter.join(15)
    assert result["r"].status_code == 200 and result["r"].content == b"arrived"


def test_too_many_pending_uploads_is_429(server):
    _, token, _ = register_user(server.base_url, "carol")
    for _ in range(5):  # Synapse's default max_pending_media_uploads
        create(server, token)
    status, body = api(server.base_url, "POST", CREATE, token)
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0


# --- thumbnails ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jpeg_id(server, alice):
    return upload(server, alice[1], image_bytes((1000, 700)), "image/jpeg", "photo.jpg")


@pytest.mark.parametrize("w,h,method,size", [
    (32, 32, "crop", (32, 32)),
    (64, 64, "crop", (96, 96)),  # the smallest standard size not smaller than asked
    (320, 240, "scale", (320, 224)),
    (700, 500, "scale", (800, 560)),
    (50, 100, "crop", (50, 100)),  # no standard size has that aspect ratio: made for the request
])
def test_jpeg_thumbnails_have_the_expected_size_and_format(server, alice, jpeg_id, w, h, method, size):
    r = thumbnail(server, alice[1], jpeg_id, w, h, method)
    assert r.status_code == 200, r.text
    im = decoded(r)
    assert im.format == "JPEG" and r.headers["Content-Type"] == "image/jpeg" and im.size == size
    assert r.headers["Content-Disposition"] == 'inline; filename="thumbnail.jpg"'
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_thumbnail_larger_than_the_image_serves_the_original(server, alice, jpeg_id):
    r = thumbnail(server, alice[1], jpeg_id, 2000, 2000, "scale")
    assert decoded(r).size == (1000, 700)
    assert r.content == download(server, alice[1], jpeg_id).content


def test_png_with_alpha_thumbnail_is_png(server, alice):
    media_id = upload(server, alice[1], image_bytes((500, 500), "PNG", "RGBA", (0, 0, 255, 100)), "image/png")
    im = decoded(thumbnail(server, alice[1], media_id, 96, 96, "crop"))
    assert im.format == "PNG" and im.mode == "RGBA" and im.size == (96, 96)


def test_webp_source_is_thumbnailed(server, alice):
    media_id = upload(server, alice[1], image_bytes((640, 640), "WEBP"), "image/webp")
    im = decoded(thumbnail(server, alice[1], media_id, 320, 240, "scale"))
    assert im.format == "PNG" and im.size == (240, 240)


def test_animated_gif_thumbnail_is_still_unless_animation_is_asked_for(server, alice):
    media_id = upload(server, alice[1], animated_gif(), "image/gif")
    still = decoded(thumbnail(server, alice[1], media_id, 96, 96, "crop"))
    assert not getattr(still, "is_animated", False) and still.size == (96, 96)
    r = thumbnail(server, alice[1], media_id, 96, 96, "crop", animated="true")
    moving = Image.open(io.BytesIO(r.content))
    assert r.headers["Content-Type"] == "image/webp" and moving.is_animated and moving.n_frames == 3


def test_thumbnail_of_a_non_image_is_400(server, alice):
    media_id = upload(server, alice[1], b"just text", "text/plain")
    assert error(thumbnail(server, alice[1], media_id, 32, 32)) == (400, "M_UNKNOWN")


def test_thumbnail_of_a_broken_image_is_400(server, alice):
    media_id = upload(server, alice[1], b"\x89PNG\r\n\x1a\nnot really", "image/png")
    assert error(thumbnail(server, alice[1], media_id, 32, 32)) == (400, "M_UNKNOWN")


def _png_bomb_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_413_too_large(server, alice):
    media_id = upload(server, alice[1], _png_bomb_header(50000, 50000), "image/png")
    assert error(thumbnail(server, alice[1], media_id, 32, 32, "crop")) == (413, "M_TOO_LARGE")


@pytest.mark.parametrize("params,expected", [
    ({"width": "abc", "height": "32"}, (400, "M_INVALID_PARAM")),
    ({"width": "-5", "height": "32"}, (400, "M_INVALID_PARAM")),
    ({"width": "0", "height": "32"}, (400, "M_INVALID_PARAM")),
    ({"height": "32"}, (400, "M_MISSING_PARAM")),
    ({"width": "32", "height": "32", "method": "zoom"}, (400, "M_INVALID_PARAM")),
    ({"width": "32", "height": "32", "animated": "yes"}, (400, "M_INVALID_PARAM")),
])
def test_bad_thumbnail_parameters_are_400(server, alice, jpeg_id, params, expected):
    r = get(server, alice[1], f"{MEDIA}/thumbnail/{server.server_name}/{jpeg_id}", **params)
    assert error(r) == expected


# --- what is not served ----------------------------------------------------------------------

def test_url_preview_is_unrecognized_when_disabled(server, alice):
    r = get(server, alice[1], f"{MEDIA}/preview_url", url="https://matrix.org")
    assert error(r) == (404, "M_UNRECOGNIZED")


def test_legacy_unauthenticated_download_is_not_served_by_default(server, alice):
    media_id = upload(server, alice[1], b"x")
    r = get(server, None, f"/_matrix/media/v3/download/{server.server_name}/{media_id}")
    assert error(r) == (404, "M_UNRECOGNIZED")


def test_legacy_endpoints_serve_without_auth_when_authenticated_media_is_off(legacy_server):
    _, token, _ = register_user(legacy_server.base_url, "dave")
    media_id = upload(legacy_server, token, image_bytes((400, 300)), "image/jpeg", "pic.jpg")
    base = f"/_matrix/media/v3/download/{legacy_server.server_name}/{media_id}"
    r = get(legacy_server, None, base)
    assert r.status_code == 200 and r.headers["Content-Disposition"] == 'inline; filename="pic.jpg"'
    assert get(legacy_server, None, base + "/renamed.jpg").headers["Content-Disposition"] == \
        'inline; filename="renamed.jpg"'
    r = get(legacy_server, None, f"/_matrix/media/v3/thumbnail/{legacy_server.server_name}/{media_id}",
            width=32, height=32, method="crop")
    assert decoded(r).size == (32, 32)
    assert download(legacy_server, token, media_id).status_code == 200  # the authenticated route too
