"""URL previews over HTTP against a real uzel (authed-content-repo.yaml, preview_url; content_repo.md
Security considerations). Pages come from small HTTP servers on loopback: 127.0.0.1 is whitelisted
in the test config, 127.0.0.2 is not (both inside the configured 127.0.0.0/8 deny range)."""
from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from tests.integration.harness import make_server_fixture, register_user

MAX_SPIDER = 64 * 1024
PREVIEW = "/_matrix/client/v1/media/preview_url"

server = make_server_fixture({
    "url_preview_enabled": True,
    "url_preview_ip_range_blacklist": ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "192.168.0.0/16"],
    "url_preview_ip_range_whitelist": ["127.0.0.1/32"],
    "url_preview_url_blacklist": [{"path": "/forbidden/*"}],
    "max_spider_size": MAX_SPIDER,
})


def png(size=(300, 200), color=(10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


class Site:
    """A tiny web server: path → (status, headers, body); records every path asked for."""

    def __init__(self, host: str):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                site.hits.append(self.path)
                status, headers, body = site.routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"no"))
                self.send_response(status)
                chunked = headers.get("Transfer-Encoding") == "chunked"
                for k, v in headers.items():
                    self.send_header(k, v)
                if not chunked:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if chunked:
                        for i in range(0, len(body), 4096):
                            piece = body[i:i + 4096]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, path: str, body: bytes | str, content_type="text/html; charset=utf-8", status=200, **headers):
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = (status, {"Content-Type": content_type, **headers}, body)
        return self.base + path

    def redirect(self, path: str, to: str, status=302):
        self.routes[path] = (status, {"Location": to}, b"")
        return self.base + path


@pytest.fixture(scope="module")
def site():
    s = Site("127.0.0.1")
    yield s
    s.httpd.shutdown()


@pytest.fixture(scope="module")
def blocked_site():
    s = Site("127.0.0.2")
    yield s
    s.httpd.shutdown()


@pytest.fixture(scope="module")
def alice(server):
    return register_user(server.base_url, "alice")


def preview(server, token, url, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.base_url + PREVIEW, params={"url": url, **params}, headers=headers, timeout=60)


def error(r) -> tuple[int, str]:
    return r.status_code, r.json().get("errcode")


OG_PAGE = """<!doctype html><html><head>
<meta property="og:title" content="A cat &amp; a dog">
<meta property="og:description" content="Two friends.">
<meta property="og:image" content="/img/cat.png">
<meta property="og:type" content="article">
<title>ignored title</title></head><body><p>Hello</p></body></html>"""


def test_opengraph_page_is_parsed_and_its_image_stored_as_mxc(server, site, alice):
    site.page("/img/cat.png", png(), "image/png")
    url = site.page("/og", OG_PAGE)
    r = preview(server, alice[1], url, ts=int(time.time() * 1000))
    assert r.status_code == 200, r.text
    og = r.json()
    assert og["og:title"] == "A cat & a dog" and og["og:description"] == "Two friends."
    assert og["og:type"] == "article"
    assert og["og:image"].startswith(f"mxc://{server.server_name}/")
    assert (og["og:image:type"], og["og:image:width"], og["og:image:height"]) == ("image/png", 300, 200)
    assert og["matrix:image:size"] == len(png())
    server_name, media_id = og["og:image"][len("mxc://"):].split("/")
    got = requests.get(f"{server.base_url}/_matrix/client/v1/media/download/{server_name}/{media_id}",
                       headers={"Authorization": f"Bearer {alice[1]}"}, timeout=30)
    assert got.status_code == 200 and Image.open(io.BytesIO(got.content)).size == (300, 200)


def test_page_without_opengraph_falls_back_to_title_description_and_first_image(server, site, alice):
    site.page("/pic.png", png((40, 30)), "image/png")
    url = site.page("/plain-page", """<html><head><title>  Plain
        page </title><meta name="description" content="About things."></head>
        <body><img src="data:image/png;base64,xx"><img src="pic.png"></body></html>""")
    og = preview(server, alice[1], url).json()
    assert og["og:title"] == "Plain page" and og["og:description"] == "About things."
    assert og["og:image"].startswith("mxc://") and og["og:image:width"] == 40


def test_page_in_another_charset_is_decoded(server, site, alice):
    url = site.page("/latin1", "<title>Caf\xe9</title>".encode("latin-1"), "text/html; charset=iso-8859-1")
    assert preview(server, alice[1], url).json()["og:title"] == "Café"


def test_image_url_previews_as_the_image(server, site, alice):
    url = site.page("/photo.png", png((64, 48)), "image/png")
    og = preview(server, alice[1], url).json()
    assert og["og:image"].startswith("mxc://") and (og["og:image:width"], og["og:image:height"]) == (64, 48)
    assert og["og:title"] == "photo.png"


def test_non_html_gets_a_basic_preview_without_reading_the_body(server, site, alice):
    url = site.page("/files/report.pdf", b"%PDF-1.4 " + b"x" * (2 * MAX_SPIDER), "application/pdf")
    r = preview(server, alice[1], url)
    assert r.status_code == 200, r.text  # bigger than max_spider_size, but never read
    assert r.json() == {"og:url": url, "og:title": "report.pdf", "og:type": "application/pdf"}


def test_previews_are_cached(server, site, alice):
    path = f"/cached-{server.engine}"
    url = site.page(path, "<title>once</title>")
    assert preview(server, alice[1], url).json()["og:title"] == "once"
    site.page(path, "<title>twice</title>")
    assert preview(server, alice[1], url).json()["og:title"] == "once"
    assert site.hits.count(path) == 1


def test_address_outside_the_whitelist_is_refused_without_connecting(server, blocked_site, alice):
    url = blocked_site.page("/og", OG_PAGE)
    r = preview(server, alice[1], url)
    assert error(r) == (403, "M_FORBIDDEN") and r.json()["error"] == "IP address blocked"
    assert blocked_site.hits == []


def test_redirect_to_a_blocked_address_is_refused(server, site, blocked_site, alice):
    target = blocked_site.page("/secret", "<title>internal</title>")
    url = site.redirect("/to-internal", target)
    assert error(preview(server, alice[1], url)) == (403, "M_FORBIDDEN")
    assert "/secret" not in blocked_site.hits


def test_og_image_on_a_blocked_address_is_left_out(server, site, blocked_site, alice):
    image = blocked_site.page("/internal.png", png(), "image/png")
    url = site.page("/sneaky-image", f'<meta property="og:image" content="{image}"><title>t</title>')
    og = preview(server, alice[1], url).json()
    assert og["og:title"] == "t" and "og:image" not in og and blocked_site.hits == []


def test_redirects_are_followed_up_to_five(server, site, alice):
    final = site.page("/hop-end", "<title>arrived</title>")
    for i in range(5, 0, -1):
        site.redirect(f"/hop{i}", f"/hop{i + 1}" if i < 5 else final)
    assert preview(server, alice[1], site.base + "/hop1").json()["og:title"] == "arrived"
    site.redirect("/far0", site.base + "/hop1", status=301)  # six redirects
    assert error(preview(server, alice[1], site.base + "/far0")) == (502, "M_UNKNOWN")


def test_redirect_to_another_scheme_is_refused(server, site, alice):
    url = site.redirect("/to-file", "file:///etc/passwd")
    assert preview(server, alice[1], url).status_code == 502


@pytest.mark.parametrize("chunked", [False, True])
def test_page_over_max_spider_size_is_502_too_large(server, site, alice, chunked):
    body = "<html><title>big</title>" + "x" * (MAX_SPIDER + 10)
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    url = site.page(f"/big-{chunked}", body, **headers)
    assert error(preview(server, alice[1], url)) == (502, "M_TOO_LARGE")


def test_error_status_is_502(server, site, alice):
    url = site.page("/gone", "<title>gone</title>", status=410)
    assert error(preview(server, alice[1], url)) == (502, "M_UNKNOWN")


def test_url_blacklist_patterns_refuse_matching_urls(server, site, alice):
    url = site.page("/forbidden/page", "<title>no</title>")
    assert error(preview(server, alice[1], url)) == (403, "M_FORBIDDEN")
    assert "/forbidden/page" not in site.hits


@pytest.mark.parametrize("params,expected", [
    ({}, (400, "M_MISSING_PARAM")),
    ({"url": "ftp://127.0.0.1/x"}, (400, "M_INVALID_PARAM")),
    ({"url": "not a url"}, (400, "M_INVALID_PARAM")),
    ({"url": "http://user:pw@127.0.0.1/"}, (400, "M_INVALID_PARAM")),
    ({"url": "http://127.0.0.1/", "ts": "yesterday"}, (400, "M_INVALID_PARAM")),
])
def test_bad_preview_requests_are_400(server, alice, params, expected):
    r = requests.get(server.base_url + PREVIEW, params=params, headers={"Authorization": f"Bearer {alice[1]}"},
                     timeout=30)
    assert error(r) == expected


def test_preview_requires_an_access_token(server, site):
    assert error(preview(server, None, site.base + "/og")) == (401, "M_MISSING_TOKEN")


def test_legacy_preview_route_is_not_served_with_authenticated_media(server, site, alice):
    r = requests.get(server.base_url + "/_matrix/media/v3/preview_url", params={"url": site.base + "/og"},
                     headers={"Authorization": f"Bearer {alice[1]}"}, timeout=30)
    assert error(r) == (404, "M_UNRECOGNIZED")
