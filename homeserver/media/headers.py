"""Response headers for served media: plain functions, no I/O.

client-server-api/modules/content_repo.md:
- "Serving inline content": ``Content-Disposition: inline`` only for the listed types, otherwise
  ``attachment`` (:data:`INLINE_CONTENT_TYPES`);
- the recommended ``Content-Security-Policy`` and ``Cross-Origin-Resource-Policy: cross-origin``;
- authed-content-repo.yaml: the disposition carries the upload's file name (or the one in the
  path); a thumbnail's disposition MUST be ``inline``.
File names go out as ``filename="..."`` when they are plain printable ASCII, else as RFC 6266 /
RFC 8187 ``filename*=utf-8''<percent-encoded>``.
"""
from __future__ import annotations

from urllib.parse import quote

from .thumbnailer import base_content_type

# content_repo.md, "Serving inline content".
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

# content_repo.md: the recommended policy, verbatim.
CONTENT_SECURITY_POLICY = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
                           "style-src 'unsafe-inline'; object-src 'self';")

_THUMBNAIL_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/apng": "png", "image/gif": "gif",
                         "image/webp": "webp"}

# RFC 8187 attr-char: what may appear unencoded in an ext-value.
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"


def is_inline_type(content_type: str | None) -> bool:
    return base_content_type(content_type) in INLINE_CONTENT_TYPES


def filename_parameter(name: str) -> str:
    """``filename="cat.png"`` or ``filename*=utf-8''%E7%8C%AB.png`` (RFC 6266 section 4.3)."""
    if all(0x20 <= ord(c) < 0x7F for c in name) and '"' not in name and "\\" not in name:
        return f'filename="{name}"'
    return "filename*=utf-8''" + quote(name, safe=_ATTR_CHAR_SAFE, encoding="utf-8")


def content_disposition(content_type: str | None, filename: str | None, *, inline: bool | None = None) -> str:
    if inline is None:
        inline = is_inline_type(content_type)
    value = "inline" if inline else "attachment"
    if filename:
        value += "; " + filename_parameter(filename)
    return value


def served_content_type(content_type: str | None) -> str:
    """What goes in Content-Type: the uploaded type, with a charset added to text/* that lacks one
    (authed-content-repo.yaml, downloadContentType: "Adding a charset to text/* content types")."""
    ctype = content_type or "application/octet-stream"
    if base_content_type(ctype).startswith("text/") and "charset" not in ctype.lower():
        ctype += "; charset=utf-8"
    return ctype


def media_headers(content_type: str | None, filename: str | None) -> dict[str, str]:
    """Headers for a download (the Content-Type itself is set by the caller)."""
    return {
        "Content-Disposition": content_disposition(content_type, filename),
        **_safety_headers(),
    }


def thumbnail_headers(content_type: str) -> dict[str, str]:
    ext = _THUMBNAIL_EXTENSIONS.get(base_content_type(content_type), "bin")
    return {
        "Content-Disposition": content_disposition(content_type, f"thumbnail.{ext}", inline=True),
        **_safety_headers(),
    }


def _safety_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Robots-Tag": "noindex, nofollow, noarchive, noimageindex",
    }
