"""TURN credentials for VoIP (client-server-api/modules/voip_events.md "TURN Server", voip.yaml).

Configured with Synapse's keys: ``turn_uris``, and either ``turn_shared_secret`` (time-limited
credentials in coturn's "TURN REST API" scheme: username ``<expiry unix seconds>:<user_id>``,
password base64(HMAC-SHA1(secret, username))) or the static ``turn_username``/``turn_password``;
``turn_user_lifetime`` (default 1 hour) and ``turn_allow_guests`` (default true). With no TURN
configured the endpoint answers ``{}`` as Synapse does.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

DEFAULT_LIFETIME_MS = 60 * 60 * 1000


def rest_api_credentials(user_id: str, shared_secret: str, lifetime_ms: int, now_ms: int) -> tuple[str, str]:
    """(username, password) for coturn's ``use-auth-secret`` mode (pure)."""
    expiry = (now_ms + lifetime_ms) // 1000
    username = f"{expiry}:{user_id}"
    mac = hmac.new(shared_secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return username, base64.b64encode(mac.digest()).decode("ascii")


def turn_server_response(config, user_id: str, now_ms: int) -> dict:
    """The GET /voip/turnServer body for ``user_id`` (``{}`` when TURN is not configured)."""
    uris = list(getattr(config, "turn_uris", ()) or ())
    secret = getattr(config, "turn_shared_secret", None)
    lifetime_ms = int(getattr(config, "turn_user_lifetime_ms", DEFAULT_LIFETIME_MS) or DEFAULT_LIFETIME_MS)
    if not uris:
        return {}
    if secret:
        username, password = rest_api_credentials(user_id, secret, lifetime_ms, now_ms)
    else:
        username = getattr(config, "turn_username", None)
        password = getattr(config, "turn_password", None)
        if not username or not password:
            return {}
    return {"username": username, "password": password, "uris": uris, "ttl": lifetime_ms // 1000}


def guests_allowed(config) -> bool:
    return bool(getattr(config, "turn_allow_guests", True))
