"""Erased accounts (client-server-api account_deactivation.yaml, ``erase``).

"Any users (or servers) which join the room after the erasure request are served redacted copies
of the events sent by this account. Users which had visibility on those events prior to the
erasure are still able to see unredacted copies." As Synapse decides it: a user is served an
erased sender's event unredacted only when the user was joined to the room at that event
(homeserver/protocol/visibility.py ``filter_events_for_user``); other servers always get the
redacted copy (federation/handlers/reads.py).

The set of erased user IDs is read once from the database and then kept in memory (one process
writes), so asking is a set lookup.
"""
from __future__ import annotations

from typing import Iterable

from homeserver.storage.erasures_store import ErasuresStore


class ErasureService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(ErasuresStore)
        self._erased: set[str] | None = None

    async def _load(self) -> set[str]:
        if self._erased is None:
            loaded = await self.store.get_erased_users()
            if self._erased is None:
                self._erased = loaded
        return self._erased

    async def erased_among(self, user_ids: Iterable[str]) -> frozenset[str]:
        """The erased users among ``user_ids`` (empty, without a database read, once loaded)."""
        erased = await self._load()
        if not erased:
            return frozenset()
        return frozenset(u for u in user_ids if u in erased)

    async def is_erased(self, user_id: str) -> bool:
        return user_id in await self._load()

    async def mark_erased(self, user_id: str) -> None:
        """Record that ``user_id`` asked for erasure (deactivation with ``erase: true``)."""
        await self.store.mark_erased(user_id, self.hs.clock_ms())
        (await self._load()).add(user_id)
