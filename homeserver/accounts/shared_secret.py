"""Shared-secret registration (Synapse's ``/_synapse/admin/v1/register``), used by
``uzel register-user`` and by tools written for Synapse.

A client fetches a nonce, then posts ``{nonce, username, password, admin, mac}`` where ``mac`` is
the hex HMAC-SHA1, keyed with ``registration_shared_secret``, of
``nonce NUL username NUL password NUL ("admin" | "notadmin")`` (``NUL user_type`` appended when
given). Nonces are single-use and expire after :data:`NONCE_LIFETIME_MS`. Errors follow Synapse:
400 M_UNKNOWN "unrecognised nonce", 403 M_UNKNOWN "HMAC incorrect", 400 M_BAD_JSON for missing
fields. Works whether or not open registration is enabled.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from homeserver.http.errors import MatrixError, bad_json

from .passwords import MAX_PASSWORD_LENGTH
from .registration import RegistrationService, normalise_username

NONCE_LIFETIME_MS = 60 * 1000
# Synapse's UserTypes.ALL_USER_TYPES
USER_TYPES = frozenset({"support", "bot"})


def compute_mac(secret: str, nonce: str, username: str, password: str, admin: bool,
                user_type: str | None = None) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8") + b"\x00" + username.encode("utf-8") + b"\x00" + password.encode("utf-8")
               + b"\x00" + (b"admin" if admin else b"notadmin"))
    if user_type:
        mac.update(b"\x00" + user_type.encode("utf-8"))
    return mac.hexdigest()


class SharedSecretRegistration:
    def __init__(self, hs):
        self.hs = hs
        self._nonces: dict[str, int] = {}  # nonce -> issued at (ms)

    def _secret(self) -> str:
        secret = self.hs.config.registration_shared_secret
        if not secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        return secret

    def new_nonce(self) -> str:
        self._secret()
        now = self.hs.clock_ms()
        for n in [n for n, ts in self._nonces.items() if now - ts > NONCE_LIFETIME_MS]:
            del self._nonces[n]
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    async def register(self, body: dict) -> dict:
        secret = self._secret()
        nonce = body.get("nonce")
        if nonce is None:
            raise bad_json("nonce must be specified")
        issued = self._nonces.pop(nonce, None) if isinstance(nonce, str) else None
        if issued is None or self.hs.clock_ms() - issued > NONCE_LIFETIME_MS:
            raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
        username = _text_field(body, "username", "Invalid username")
        password = _text_field(body, "password", "Invalid password")
        admin = bool(body.get("admin"))
        user_type = body.get("user_type")
        displayname = body.get("displayname")
        if user_type is not None and user_type not in USER_TYPES:
            raise MatrixError(400, "M_UNKNOWN", "Invalid user type")
        if displayname is not None and not isinstance(displayname, str):
            raise MatrixError(400, "M_UNKNOWN", "Invalid displayname")
        mac = body.get("mac")
        if mac is None:
            raise bad_json("mac must be specified")
        want = compute_mac(secret, nonce, username, password, admin, user_type)
        if not isinstance(mac, str) or not hmac.compare_digest(want.encode("ascii"),
                                                               mac.encode("utf-8", "replace")):
            raise MatrixError(403, "M_UNKNOWN", "HMAC incorrect")
        registration = self.hs.get(RegistrationService)
        localpart = normalise_username(username)
        await registration.check_username(localpart)
        user_id = await registration.register(localpart, password, admin=admin, displayname=displayname,
                                              user_type=user_type)
        result = {"user_id": user_id, "home_server": self.hs.hostname}
        result.update(await registration.login_new_user(user_id, None, None))
        return result


def _text_field(body: dict, key: str, invalid: str) -> str:
    if key not in body:
        raise bad_json(f"{key} must be specified")
    value = body[key]
    if not isinstance(value, str) or len(value) > MAX_PASSWORD_LENGTH or "\x00" in value:
        raise MatrixError(400, "M_UNKNOWN", invalid)
    return value
