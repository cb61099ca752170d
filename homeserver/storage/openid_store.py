"""SQL for OpenID tokens (``schema/0026_openid.sql``). Tokens arrive hashed."""
from __future__ import annotations


class OpenIdStore:
    """Built once per server as ``hs.get(OpenIdStore)``."""

    def __init__(self, hs):
        self.db = hs.db

    async def add_token(self, token_hash: str, user_id: str, valid_until_ms: int, now_ms: int) -> None:
        """Store a token; tokens that expired before ``now_ms`` are deleted in the same transaction."""
        def txn_fn(txn):
            txn.execute("DELETE FROM openid_tokens WHERE valid_until_ms <= ?", (now_ms,))
            txn.execute("INSERT INTO openid_tokens (token_hash, user_id, valid_until_ms) VALUES (?, ?, ?)",
                        (token_hash, user_id, valid_until_ms))
        await self.db.run("add_openid_token", txn_fn)

    async def get_user_for_token(self, token_hash: str, now_ms: int) -> str | None:
        """The owner of an unexpired token whose account is not deactivated, or None."""
        def txn_fn(txn):
            return txn.scalar(
                "SELECT t.user_id FROM openid_tokens AS t JOIN users AS u ON u.user_id = t.user_id "
                "WHERE t.token_hash = ? AND t.valid_until_ms > ? AND u.deactivated = ?",
                (token_hash, now_ms, False))
        return await self.db.run("get_openid_token_user", txn_fn, readonly=True)

    async def delete_tokens_for_user(self, user_id: str) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM openid_tokens WHERE user_id = ?", (user_id,))
        await self.db.run("delete_openid_tokens", txn_fn)
