"""Opaque secrets: access, refresh and login tokens, device IDs, UIA session IDs.

Tokens are 32 random characters behind a type prefix (``uzt_`` access, ``uzr_`` refresh,
``uzl_`` login), about 190 bits of entropy. The database stores only ``hash_token(token)`` (hex
SHA-256): a stolen copy of the database does not let anyone act as a user. A single SHA-256 is
enough because the tokens are random, not guessable like passwords.
"""
from __future__ import annotations

import hashlib
import secrets
import string

_TOKEN_ALPHABET = string.ascii_letters + string.digits
_DEVICE_ALPHABET = string.ascii_uppercase

ACCESS_PREFIX = "uzt_"
REFRESH_PREFIX = "uzr_"
LOGIN_PREFIX = "uzl_"


def random_string(n: int, alphabet: str = _TOKEN_ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_token(prefix: str) -> str:
    return prefix + random_string(32)


def hash_token(token: str) -> str:
    """The form a token is stored and looked up in."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_device_id() -> str:
    """Ten upper-case letters, like Synapse's device IDs."""
    return random_string(10, _DEVICE_ALPHABET)
