"""SQL for the third-party identifiers of local accounts (``schema/0025_threepids.sql``).

Addresses arrive canonicalised (homeserver/accounts/threepids.py decides how); the store
decides nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThreepidRecord:
    medium: str
    address: str
    user_id: str
    validated_at: int
    added_at: int


class ThreepidsStore:
    """Built once per server as ``hs.get(ThreepidsStore)``."""

    def __init__(self, hs):
        self.db = hs.db

    async def get_threepids(self, user_id: str) -> list[ThreepidRecord]:
        """A user's identifiers, oldest first."""
        def txn_fn(txn):
            rows = txn.execute("SELECT medium, address, user_id, validated_at, added_at FROM user_threepids "
                               "WHERE user_id = ? ORDER BY added_at, medium, address", (user_id,)).fetchall()
            return [ThreepidRecord(*r) for r in rows]
        return await self.db.run("get_threepids", txn_fn, readonly=True)

    async def add_threepid(self, user_id: str, medium: str, address: str, validated_at: int,
                           added_at: int) -> bool:
        """Associate an identifier; False (nothing written) if any account has it already."""
        def txn_fn(txn):
            txn.execute("INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (medium, address) DO NOTHING",
                        (medium, address, user_id, validated_at, added_at))
            return txn.rowcount == 1
        return await self.db.run("add_threepid", txn_fn)

    async def delete_threepid(self, user_id: str, medium: str, address: str) -> bool:
        """Remove one identifier of a user; False if the user did not have it."""
        def txn_fn(txn):
            txn.execute("DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?",
                        (user_id, medium, address))
            return txn.rowcount == 1
        return await self.db.run("delete_threepid", txn_fn)

    async def delete_all_threepids(self, user_id: str) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM user_threepids WHERE user_id = ?", (user_id,))
        await self.db.run("delete_all_threepids", txn_fn)
