"""Shared-secret registration: ``/_synapse/admin/v1/register`` (Synapse's admin API, used by
``uzel register-user`` and Synapse tooling; rules in homeserver/accounts/shared_secret.py)."""
from __future__ import annotations

from homeserver.accounts.shared_secret import SharedSecretRegistration


def register_routes(hs, router) -> None:
    shared = hs.get(SharedSecretRegistration)

    async def get_nonce(request):
        """GET /_synapse/admin/v1/register: a fresh single-use nonce."""
        return 200, {"nonce": shared.new_nonce()}

    async def register(request):
        """POST /_synapse/admin/v1/register: create a user whose request carries the HMAC of the
        shared secret; returns access_token, user_id, home_server, device_id."""
        return 200, await shared.register(request.json())

    router.add("GET", "/_synapse/admin/v1/register", get_nonce, "client")
    router.add("POST", "/_synapse/admin/v1/register", register, "client")
