"""Account management: password change and deactivation (client-server-api "Account management",
password_management.yaml, account_deactivation.yaml).

Deactivation here marks the account, forgets its password and deletes its tokens and devices;
with ``erase`` it records the erasure (homeserver/accounts/erasure.py: the account's events are
then served redacted to those who could not see them as members).
Everything else a deactivation implies (leaving rooms, clearing the profile, erasing data,
dropping pushers) belongs to other services, which append to ``AccountService.on_deactivate``:
``fn(user_id: str, erase: bool)`` returning None or an awaitable; hooks run in order after the
account is marked, and a failing hook is logged without failing the request.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from homeserver.http.errors import MatrixError
from homeserver.storage.accounts_store import AccountsStore

from .auth import AuthService, Requester
from .devices import DeviceService
from .erasure import ErasureService
from .passwords import MAX_PASSWORD_LENGTH, PasswordHasher

logger = logging.getLogger(__name__)

DeactivateHook = Callable[[str, bool], Any]


def check_password_shape(password) -> str:
    """A usable new password: a string of 1 to 512 characters without NUL (Synapse's limits)."""
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH or "\x00" in password:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid password")
    return password


class AccountService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AccountsStore)
        self.on_deactivate: list[DeactivateHook] = []

    async def change_password(self, requester: Requester, new_password: str, *, logout_devices: bool = True) -> None:
        """Set a new password; with ``logout_devices`` revoke every other device and token of the
        user, keeping the requester's own token ("The homeserver SHOULD NOT revoke the access
        token provided in the request")."""
        password_hash = await self.hs.get(PasswordHasher).hash(check_password_shape(new_password))
        await self.store.set_password_hash(requester.user_id, password_hash)
        if logout_devices:
            await self.hs.get(DeviceService).delete_all_devices(requester.user_id,
                                                                except_device_id=requester.device_id)
            await self.hs.get(AuthService).revoke_user_tokens(requester.user_id,
                                                              except_token_hash=requester.access_token_id)

    async def deactivate(self, user_id: str, *, erase: bool = False) -> None:
        auth = self.hs.get(AuthService)
        revoked = await self.store.deactivate_user(user_id)
        if erase:
            # Recorded before the hooks run, so the leave events they send are already covered.
            await self.hs.get(ErasureService).mark_erased(user_id)
        auth.invalidate_tokens(revoked)
        auth.invalidate_user(user_id)
        await self.hs.get(DeviceService).delete_all_devices(user_id)
        for hook in list(self.on_deactivate):
            try:
                result = hook(user_id, erase)
                if hasattr(result, "__await__"):
                    await result
            except Exception:
                logger.exception("deactivation hook %r failed for %s", hook, user_id)
