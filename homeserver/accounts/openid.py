"""OpenID tokens (client-server-api "OpenID", openid.yaml; server-server-api "OpenID",
server-server/openid.yaml).

A user asks for a token (``POST /user/{userId}/openid/request_token``) and hands it to a third
party (a widget, Element Call's authorisation service), which asks this server who owns it
(``GET /_matrix/federation/v1/openid/userinfo``). The token is good for nothing else: it is kept
apart from access tokens, so it cannot call /sync or ask for another OpenID token. Tokens live
:data:`OPENID_TOKEN_LIFETIME_MS` (one hour, as Synapse); only their SHA-256 is stored.
"""
from __future__ import annotations

from homeserver.storage.openid_store import OpenIdStore

from . import tokens

OPENID_TOKEN_LIFETIME_MS = 3600 * 1000
OPENID_PREFIX = "uzo_"


class OpenIdService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(OpenIdStore)

    async def issue_token(self, user_id: str) -> dict:
        """The openid_token.yaml object: ``{access_token, token_type: "Bearer",
        matrix_server_name, expires_in}`` (expires_in in seconds)."""
        token = tokens.new_token(OPENID_PREFIX)
        now = self.hs.clock_ms()
        await self.store.add_token(tokens.hash_token(token), user_id, now + OPENID_TOKEN_LIFETIME_MS, now)
        return {"access_token": token, "token_type": "Bearer", "matrix_server_name": self.hs.hostname,
                "expires_in": OPENID_TOKEN_LIFETIME_MS // 1000}

    async def user_for_token(self, token: str) -> str | None:
        """The user who asked for ``token``; None if unknown, expired or the account is deactivated."""
        return await self.store.get_user_for_token(tokens.hash_token(token), self.hs.clock_ms())

    async def revoke_user_tokens(self, user_id: str) -> None:
        await self.store.delete_tokens_for_user(user_id)
