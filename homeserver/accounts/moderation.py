"""Account moderation by server admins: suspending and locking local users.

Spec: client-server-api "Account moderation" ("Account locking", "Account suspension"), admin.yaml
``GET``/``PUT /_matrix/client/v1/admin/suspend/{userId}`` and ``/admin/lock/{userId}`` (v1.18,
MSC4323), capabilities.yaml ``m.account_moderation``.

The flags live in the ``users`` table (``locked``, ``suspended``); request authentication reads
them with the access token (:class:`AuthService`), so a change drops the user's cached tokens.
Tokens themselves are kept: a locked user gets 401 M_USER_LOCKED with ``soft_logout`` until
unlocked ("Servers SHOULD NOT invalidate access tokens on locked accounts"), a suspended user
403 M_USER_SUSPENDED on the refused actions (:func:`homeserver.accounts.auth.check_not_suspended`).
"""
from __future__ import annotations

from typing import Any

from homeserver.http.errors import bad_json, forbidden, invalid_param, missing_param, not_found
from homeserver.protocol import ids
from homeserver.storage.accounts_store import AccountsStore, UserRecord

from .auth import AuthService

#: The two moderation flags of admin.yaml, each the name of its ``users`` column and JSON key.
SUSPENDED, LOCKED = "suspended", "locked"


class AccountModerationService:
    def __init__(self, hs):
        self.hs = hs
        self.auth = hs.get(AuthService)
        self.store = hs.get(AccountsStore)

    async def capability(self, requester) -> dict | None:
        """``m.account_moderation`` for GET /capabilities: what the requester may do, or None
        (omitted) when they may do neither (capabilities.yaml)."""
        if requester.app_service is None and await self.auth.is_server_admin(requester.user_id):
            return {"suspend": True, "lock": True}
        return None

    async def get_flag(self, requester, user_id: str, flag: str) -> bool:
        """GET /admin/{suspend,lock}/{userId}: admin.yaml checks, in its order (authorisation
        before any look-up, against user enumeration): 403 unless a server admin; 400
        M_INVALID_PARAM for other servers' users; 404 for unknown or deactivated users; 403 for
        another admin."""
        user = await self._target(requester, user_id)
        if user.user_id != requester.user_id and user.is_admin:
            raise forbidden("The target user is a server administrator.")
        return getattr(user, flag)

    async def set_flag(self, requester, user_id: str, flag: str, value: Any) -> bool:
        """PUT /admin/{suspend,lock}/{userId} ``{flag: bool}``: as :meth:`get_flag`, and 403 for
        the requester's own account. Returns the new value."""
        if value is None:
            raise missing_param(f"Missing '{flag}'")
        if not isinstance(value, bool):
            raise bad_json(f"'{flag}' must be a boolean")
        user = await self._target(requester, user_id)
        if user.user_id == requester.user_id:
            raise forbidden(f"You cannot change the {flag} status of your own account.")
        if user.is_admin:
            raise forbidden("The target user is a server administrator.")
        if flag == SUSPENDED:
            await self.store.set_suspended(user.user_id, value)
        else:
            await self.store.set_locked(user.user_id, value)
        self.auth.invalidate_user(user.user_id)
        return value

    async def _target(self, requester, user_id: str) -> UserRecord:
        if not await self.auth.is_server_admin(requester.user_id):
            raise forbidden("Requesting user is not a server administrator.")
        if not ids.is_valid_user_id(user_id):
            raise invalid_param("Invalid user ID.")
        if ids.get_domain(user_id) != self.hs.hostname:
            raise invalid_param("User does not belong to the local server.")
        user = await self.store.get_user(user_id)
        if user is None or user.deactivated:
            raise not_found("User not found.")
        return user
