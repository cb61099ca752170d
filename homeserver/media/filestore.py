"""Media bytes on disk, named by their SHA-256: the same file uploaded twice is stored once.

Layout under ``media_store_path``::

    content/ab/cd/<the remaining 60 hex digits>   one file per distinct content (media and thumbnails)
    tmp/                                          partial writes, renamed into place when complete

Paths are built only from a hex digest this module computed or validated, never from a media id or a
file name a client sent, so no request can name a path outside the store. The methods are blocking
file I/O; the media service calls them from a worker thread.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class MediaFileStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._content = os.path.join(self.root, "content")
        self._tmp = os.path.join(self.root, "tmp")

    def ensure_dirs(self) -> None:
        os.makedirs(self._content, exist_ok=True)
        os.makedirs(self._tmp, exist_ok=True)

    def path_for(self, sha256: str) -> str:
        """The file of a digest; ValueError for anything that is not 64 lowercase hex digits."""
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return os.path.join(self._content, sha256[:2], sha256[2:4], sha256[4:])

    def write(self, data: bytes) -> str:
        """Store ``data`` (if not already there) and return its SHA-256 hex digest."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256)
        if os.path.exists(path):
            return sha256
        self.ensure_dirs()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(self._tmp, f"{sha256}.{secrets.token_hex(8)}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: readers see the whole file or none
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha256

    def read(self, sha256: str) -> bytes | None:
        """The bytes of a digest, or None if the file is missing."""
        try:
            with open(self.path_for(sha256), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def exists(self, sha256: str) -> bool:
        return os.path.exists(self.path_for(sha256))

    def delete(self, sha256: str) -> bool:
        try:
            os.unlink(self.path_for(sha256))
            return True
        except FileNotFoundError:
            return False
