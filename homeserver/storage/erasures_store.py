"""SQL for erased accounts (``schema/0027_user_erasures.sql``); the policy is in
homeserver/accounts/erasure.py."""
from __future__ import annotations


class ErasuresStore:
    """Built once per server as ``hs.get(ErasuresStore)``."""

    def __init__(self, hs):
        self.db = hs.db

    async def get_erased_users(self) -> set[str]:
        """Every erased user ID."""
        def txn_fn(txn):
            return {r[0] for r in txn.execute("SELECT user_id FROM user_erasures").fetchall()}
        return await self.db.run("get_erased_users", txn_fn, readonly=True)

    async def mark_erased(self, user_id: str, now_ms: int) -> None:
        """Record the erasure (the first time counts)."""
        def txn_fn(txn):
            txn.execute("INSERT INTO user_erasures (user_id, erased_ts) VALUES (?, ?) "
                        "ON CONFLICT (user_id) DO NOTHING", (user_id, now_ms))
        await self.db.run("mark_user_erased", txn_fn)
