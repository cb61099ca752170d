"""``GET /_matrix/key/v2/server`` (server-server-api, "Publishing Keys")."""
from __future__ import annotations

from homeserver.protocol import signing


def server_keys_response(hs) -> dict:
    """The server's own signed key document; valid for ``key_refresh_interval`` from now."""
    config = hs.config
    valid_for_ms = config.key_refresh_interval_ms
    key = hs.signing_key
    doc = {
        "server_name": hs.hostname,
        "valid_until_ts": hs.clock_ms() + valid_for_ms,
        "verify_keys": {signing.key_id(key): {"key": signing.verify_key_base64(key)}},
        "old_verify_keys": {
            kid: {"key": old.key, "expired_ts": old.expired_ts}
            for kid, old in config.old_signing_keys.items()
        },
    }
    return signing.sign_json(doc, hs.hostname, key)


def register_routes(hs, router) -> None:
    async def server_keys(request, key_id: str = ""):
        return 200, server_keys_response(hs)

    router.add("GET", "/_matrix/key/v2/server", server_keys, "keys")
    # Deprecated form with a key id; the spec says servers return all keys.
    router.add("GET", "/_matrix/key/v2/server/{key_id}", server_keys, "keys")
