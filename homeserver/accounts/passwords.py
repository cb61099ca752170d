"""Password hashing with bcrypt (Synapse's scheme, so Synapse password hashes carry over).

bcrypt reads at most 72 bytes of a password; longer passwords are cut to 72 bytes explicitly
(the bcrypt library refuses longer input). Hashing costs about 0.2 s at 12 rounds, so the async
functions run it on a thread, never on the reactor.
"""
from __future__ import annotations

import bcrypt
from twisted.internet import threads

# Synapse refuses passwords longer than this (characters) on registration and password change.
MAX_PASSWORD_LENGTH = 512
DEFAULT_BCRYPT_ROUNDS = 12
_BCRYPT_MAX_BYTES = 72


def _secret(password: str) -> bytes:
    return password.encode("utf-8", "surrogatepass")[:_BCRYPT_MAX_BYTES]


def hash_password_sync(password: str, rounds: int = DEFAULT_BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(_secret(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password_sync(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        return False
    try:
        return bcrypt.checkpw(_secret(password), password_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False  # not a bcrypt hash


class PasswordHasher:
    """``hs.get(PasswordHasher)``; rounds from ``config.bcrypt_rounds`` (Synapse's key)."""

    def __init__(self, hs):
        self._reactor = hs.reactor
        self.rounds: int = hs.config.bcrypt_rounds

    async def hash(self, password: str) -> str:
        return await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                               hash_password_sync, password, self.rounds)

    async def check(self, password: str, password_hash: str | None) -> bool:
        if not password_hash:
            return False
        return await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                               check_password_sync, password, password_hash)
