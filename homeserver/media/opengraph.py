"""URL preview data from a fetched page: plain functions, no I/O.

data/api/client-server/authed-content-repo.yaml, ``GET /_matrix/client/v1/media/preview_url``: the
answer is "OpenGraph data" (https://ogp.me: ``og:title``, ``og:description``, ``og:image`` ...)
plus ``matrix:image:size``. Pages are parsed with the standard library's tolerant
:class:`html.parser.HTMLParser`; when a page has no OpenGraph tags the usual fallbacks fill in
(``<title>``, ``<meta name="description">``, the first ``<img>``), as Synapse does.

Also here: Synapse's ``url_preview_url_blacklist`` matching (:func:`url_is_blacklisted`) and the
content-type helpers the preview service uses to decide what to read.
"""
from __future__ import annotations

import fnmatch
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

MAX_OG_TAGS = 50  # a page cannot make the answer (and the cache row) arbitrarily big
MAX_VALUE_LENGTH = 1000
MAX_DESCRIPTION_LENGTH = 500
_CHARSET_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_html(content_type: str | None) -> bool:
    return base_type(content_type) in ("text/html", "application/xhtml+xml")


def is_image(content_type: str | None) -> bool:
    return base_type(content_type).startswith("image/")


def charset_of(content_type: str | None, body: bytes) -> str:
    """The page's encoding: the Content-Type charset, else a ``<meta charset>`` in the first 1 KiB,
    else UTF-8 (unknown names fall back to UTF-8 too)."""
    import codecs
    candidates = []
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            candidates.append(value.strip().strip('"\''))
    m = _CHARSET_META.search(body[:1024])
    if m:
        candidates.append(m.group(1).decode("ascii", "replace"))
    for name in candidates:
        try:
            return codecs.lookup(name).name
        except LookupError:
            continue
    return "utf-8"


class _PageParser(HTMLParser):
    """Collects ``<meta property|name="og:*">``, the title, the meta description and the first
    image. Text inside ``<script>``/``<style>`` is ignored."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self.first_image: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta":
            key = (a.get("property") or a.get("name") or "").strip()
            content = a.get("content")
            if content is None:
                return
            if key.startswith("og:") and key not in self.og and len(self.og) < MAX_OG_TAGS:
                self.og[key] = content.strip()[:MAX_VALUE_LENGTH]
            elif key.lower() == "description" and self.description is None:
                self.description = content.strip()
        elif tag == "title" and self.title is None:
            self._in_title = True
        elif tag == "img" and self.first_image is None:
            src = a.get("src", "").strip()
            if src and not src.startswith("data:"):
                self.first_image = src

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title_parts)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)


def _clean(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = _WHITESPACE.sub(" ", text).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def parse_html(body: bytes, content_type: str | None, page_url: str) -> dict[str, str]:
    """The OpenGraph dict of an HTML page: its ``og:*`` tags, then ``og:title`` from ``<title>``,
    ``og:description`` from the meta description and ``og:image`` from the first ``<img>`` where
    the page gives none. ``og:image`` and ``og:url`` are made absolute against ``page_url``; an
    ``og:image`` that is not http(s) is dropped."""
    text = body.decode(charset_of(content_type, body), errors="replace")
    parser = _PageParser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser is tolerant, but never let a page become a 500
        pass
    og = dict(parser.og)
    if "og:title" not in og and (title := _clean(parser.title, MAX_VALUE_LENGTH)):
        og["og:title"] = title
    if "og:description" not in og and (desc := _clean(parser.description, MAX_DESCRIPTION_LENGTH)):
        og["og:description"] = desc
    if "og:image" not in og and parser.first_image:
        og["og:image"] = parser.first_image
    if "og:image" in og:
        image = urljoin(page_url, og["og:image"])
        if urlsplit(image).scheme in ("http", "https"):
            og["og:image"] = image
        else:
            del og["og:image"]
    og.setdefault("og:url", page_url)
    return og


def basic_preview(page_url: str, content_type: str | None) -> dict[str, str]:
    """The preview of something that is neither a page nor an image: its URL and, as title, the
    last path segment (a file name, usually)."""
    og = {"og:url": page_url}
    name = urlsplit(page_url).path.rstrip("/").rsplit("/", 1)[-1]
    if name:
        og["og:title"] = name[:MAX_VALUE_LENGTH]
    if content_type:
        og["og:type"] = base_type(content_type)[:100]
    return og


def _url_parts(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "scheme": parts.scheme, "netloc": parts.netloc, "path": parts.path, "query": parts.query,
        "fragment": parts.fragment, "username": parts.username or "", "password": parts.password or "",
        "hostname": parts.hostname or "", "port": str(parts.port or ""),
    }


def url_is_blacklisted(url: str, patterns: tuple[dict, ...] | list[dict]) -> bool:
    """Synapse's ``url_preview_url_blacklist``: a URL is refused when, for some entry, every
    attribute named in it matches — a glob (:mod:`fnmatch`), or a regex when the pattern starts
    with ``^``. An entry naming an unknown attribute never matches."""
    try:
        parts = _url_parts(url)
    except ValueError:
        return True
    for entry in patterns:
        matched = True
        for attrib, pattern in entry.items():
            value = parts.get(attrib)
            if value is None:
                matched = False
            elif pattern.startswith("^"):
                matched = re.match(pattern, value) is not None
            else:
                matched = fnmatch.fnmatch(value, pattern)
            if not matched:
                break
        if matched and entry:
            return True
    return False
