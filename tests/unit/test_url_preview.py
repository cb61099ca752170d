"""URL preview pieces without a server: OpenGraph parsing, the URL deny patterns, URL
normalisation, the config rule that previews need an IP deny list, and the fetch deadline."""
from __future__ import annotations

import socket
import threading

import pytest
import pytest_twisted

from config.loader import parse_config
from config.schema import ConfigError
from homeserver.http.errors import MatrixError
from homeserver.media.opengraph import (
    basic_preview,
    charset_of,
    parse_html,
    url_is_blacklisted,
)
from homeserver.media.safe_fetch import SafeHttpClient, normalise_url


def test_og_tags_win_over_fallbacks_and_relative_images_become_absolute():
    html = b"""<html><head><meta property="og:title" content="OG"><title>T</title>
    <meta name="og:image" content="../i.png"><meta name="description" content="D"></head></html>"""
    og = parse_html(html, "text/html", "https://example.org/a/b/page")
    assert og == {"og:title": "OG", "og:image": "https://example.org/a/i.png", "og:description": "D",
                  "og:url": "https://example.org/a/b/page"}


def test_non_http_og_image_is_dropped():
    og = parse_html(b'<meta property="og:image" content="javascript:alert(1)">', "text/html", "http://x.org/")
    assert "og:image" not in og


def test_broken_html_never_raises_and_long_descriptions_are_cut():
    og = parse_html(b"<title>ok<<<</ti" + b"\xff\xfe", "text/html", "http://x.org/")
    assert og["og:url"] == "http://x.org/"
    long = parse_html(b'<meta name="description" content="' + b"w " * 600 + b'">', None, "http://x.org/")
    assert len(long["og:description"]) == 500


def test_og_tag_count_is_capped():
    html = "".join(f'<meta property="og:x{i}" content="v">' for i in range(200)).encode()
    assert len(parse_html(html, "text/html", "http://x.org/")) <= 52


def test_charset_comes_from_the_header_then_the_meta_tag():
    assert charset_of("text/html; charset=ISO-8859-2", b"") == "iso8859-2"
    assert charset_of("text/html", b'<meta charset="windows-1250">') == "cp1250"
    assert charset_of("text/html; charset=bogus", b"") == "utf-8"


def test_basic_preview_names_the_file():
    assert basic_preview("http://x.org/d/a.zip", "application/zip; x=y") == {
        "og:url": "http://x.org/d/a.zip", "og:title": "a.zip", "og:type": "application/zip"}


@pytest.mark.parametrize("url,patterns,blocked", [
    ("http://a.internal.example/x", [{"netloc": "*.internal.example"}], True),
    ("http://example.org/x", [{"netloc": "*.internal.example"}], False),
    ("http://example.org/x", [{"scheme": "http"}], True),
    ("https://example.org/x", [{"scheme": "http", "netloc": "example.org"}], False),  # every part must match
    ("https://example.org/private/1", [{"path": "^/private/"}], True),
    ("https://example.org/p?token=1", [{"query": "*token*"}], True),
    ("https://example.org/", [{"nonsense": "*"}], False),
])
def test_url_blacklist_entries_match_when_every_part_matches(url, patterns, blocked):
    assert url_is_blacklisted(url, patterns) is blocked


@pytest.mark.parametrize("url", ["ftp://x.org/", "http://", "/relative", "http://u:p@x.org/", "x" * 3000,
                                 "http://exa mple.org/", "javascript:alert(1)"])
def test_urls_that_are_not_plain_http_are_refused(url):
    with pytest.raises(MatrixError) as e:
        normalise_url(url)
    assert (e.value.code, e.value.errcode) == (400, "M_INVALID_PARAM")


def test_previews_need_an_explicit_ip_deny_list(tmp_path):
    base = {"server_name": "test.local"}
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "url_preview_enabled": True}, config_dir=str(tmp_path))
    assert e.value.path == "url_preview_ip_range_blacklist"
    c = parse_config({**base, "url_preview_enabled": True, "url_preview_ip_range_blacklist": ["10.0.0.0/8"],
                      "url_preview_ip_range_whitelist": ["10.1.0.0/16"], "max_spider_size": "1M"},
                     config_dir=str(tmp_path))
    assert c.max_spider_size == 1024 * 1024
    assert not c.url_preview_ip_allowed("10.2.3.4") and c.url_preview_ip_allowed("10.1.2.3")
    assert not c.url_preview_ip_allowed("0.0.0.0") and c.url_preview_ip_allowed("127.0.0.1")
    with pytest.raises(ConfigError):
        parse_config({**base, "url_preview_url_blacklist": [{"path": "^(unclosed"}]}, config_dir=str(tmp_path))


def test_media_retention_lifetimes_are_durations(tmp_path):
    c = parse_config({"server_name": "t", "media_retention": {"remote_media_lifetime": "14d"}},
                     config_dir=str(tmp_path))
    assert (c.local_media_lifetime_ms, c.remote_media_lifetime_ms) == (None, 14 * 86_400_000)
    with pytest.raises(ConfigError):
        parse_config({"server_name": "t", "media_retention": {"local_media_lifetime": "soon"}},
                     config_dir=str(tmp_path))


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_hits_the_deadline():
    from twisted.internet import reactor
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    client = SafeHttpClient(reactor, lambda ip: True, timeout_s=0.5)
    try:
        with pytest.raises(MatrixError) as e:
            await client.get(f"http://127.0.0.1:{listener.getsockname()[1]}/", max_size=100,
                             read_body=lambda ct: True)
        assert (e.value.code, e.value.errcode) == (504, "M_UNKNOWN")
    finally:
        listener.close()
        for conn, _ in accepted:
            conn.close()
