"""Creating accounts (client-server-api "Account registration", registration.yaml,
"Token-authenticated registration", appendices "User Identifiers").

Usernames are lower-cased, then must fit the user-ID grammar (``a-z 0-9 . _ = - / +``), must not
start with ``_`` (kept for application services, as Synapse does), must not be all digits (kept for
guests and generated IDs) and the whole user ID must fit in 255 bytes. Application services add
``M_EXCLUSIVE`` checks by appending ``fn(localpart) -> None | awaitable`` (raising MatrixError) to
``RegistrationService.username_checks``.

:func:`create_user_sync` creates an account without a running server (``uzel register-user
--database``).
"""
from __future__ import annotations

import secrets
import time
from typing import Any, Callable

from homeserver.http.errors import MatrixError, forbidden
from homeserver.protocol import ids
from homeserver.storage.accounts_store import AccountsStore, create_user_txn

from . import uia
from .auth import AuthService
from .devices import DeviceService
from .passwords import DEFAULT_BCRYPT_ROUNDS, PasswordHasher, hash_password_sync

UsernameCheck = Callable[[str], Any]


def normalise_username(username: str) -> str:
    """The localpart a requested username maps to (registration.yaml: the server MAY map it)."""
    return username.lower()


def localpart_problem(localpart: str, server_name: str, *, allow_numeric: bool = False) -> str | None:
    """Why ``localpart`` cannot be registered, or None if it can."""
    if not localpart:
        return "User ID cannot be empty"
    if not ids.is_valid_localpart(localpart):
        return "User ID can only contain characters a-z, 0-9, or '=_-./+'"
    if localpart.startswith("_"):
        return "User ID may not begin with _"
    if localpart.isdigit() and not allow_numeric:
        return "Numeric user IDs are reserved for guest users."
    if len(f"@{localpart}:{server_name}".encode("utf-8")) > ids.MAX_ID_BYTES:
        return f"User ID may not be longer than {ids.MAX_ID_BYTES} characters"
    return None


def create_user_sync(db, server_name: str, localpart: str, password: str | None, admin: bool = False, *,
                     displayname: str | None = None, rounds: int = DEFAULT_BCRYPT_ROUNDS) -> str:
    """Create an account directly in the database (the schema must be prepared); returns the
    user ID. Raises ValueError if the username is invalid or taken."""
    localpart = normalise_username(localpart)
    problem = localpart_problem(localpart, server_name)
    if problem:
        raise ValueError(problem)
    user_id = f"@{localpart}:{server_name}"
    password_hash = hash_password_sync(password, rounds) if password else None
    created = db.run_sync("create_user", lambda txn: create_user_txn(
        txn, user_id, password_hash, int(time.time() * 1000), is_admin=admin,
        displayname=displayname if displayname is not None else localpart))
    if not created:
        raise ValueError(f"User ID {user_id} is already taken")
    return user_id


class RegistrationService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AccountsStore)
        self.username_checks: list[UsernameCheck] = []
        #: ``type`` of a /register body -> ``async fn(request, body) -> response dict`` handling it
        #: instead of UIA (application services add ``m.login.application_service``).
        self.register_types: dict[str, Callable[[Any, dict], Any]] = {}
        self.hs.get(uia.UiaService).checkers[uia.REGISTRATION_TOKEN] = self._check_registration_token

    # --- policy --------------------------------------------------------------------------------
    def registration_enabled(self) -> bool:
        """Open registration needs a flow uzel can offer: no verification, or a registration token."""
        c = self.hs.config
        return bool(c.enable_registration and (c.enable_registration_without_verification
                                               or c.registration_requires_token))

    def flows(self) -> list[list[str]]:
        if self.hs.config.registration_requires_token:
            return [[uia.REGISTRATION_TOKEN]]
        return [[uia.DUMMY]]

    async def check_username(self, localpart: str) -> None:
        """Raise M_INVALID_USERNAME, M_USER_IN_USE or an application service's M_EXCLUSIVE."""
        problem = localpart_problem(localpart, self.hs.hostname)
        if problem:
            raise MatrixError(400, "M_INVALID_USERNAME", problem)
        for check in list(self.username_checks):
            result = check(localpart)
            if hasattr(result, "__await__"):
                await result
        if await self.store.user_exists(f"@{localpart}:{self.hs.hostname}"):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")

    # --- account creation ----------------------------------------------------------------------
    async def register(self, localpart: str | None, password: str | None, *, is_guest: bool = False,
                       admin: bool = False, displayname: str | None = None, user_type: str | None = None,
                       appservice_id: str | None = None) -> str:
        """Create the account and its profile (displayname defaults to the localpart); returns the
        user ID. ``localpart`` None generates a numeric one. Checks must have run before."""
        password_hash = await self.hs.get(PasswordHasher).hash(password) if password else None
        now = self.hs.clock_ms()
        for _ in range(10 if localpart is None else 1):
            lp = localpart if localpart is not None else str(secrets.randbelow(9 * 10**9) + 10**9)
            user_id = f"@{lp}:{self.hs.hostname}"
            if await self.store.create_user(user_id, password_hash, now, is_admin=admin, is_guest=is_guest,
                                            displayname=displayname if displayname is not None else lp,
                                            user_type=user_type, appservice_id=appservice_id):
                return user_id
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")

    async def login_new_user(self, user_id: str, device_id: str | None, display_name: str | None, *,
                             with_refresh: bool = False) -> dict:
        """The device and tokens part of a /register response."""
        device_id = await self.hs.get(DeviceService).ensure_device(user_id, device_id, display_name)
        result = {"device_id": device_id}
        result.update(await self.hs.get(AuthService).issue_tokens(user_id, device_id, with_refresh=with_refresh))
        return result

    # --- registration tokens -------------------------------------------------------------------
    async def token_is_valid(self, token: str) -> bool:
        record = await self.store.get_registration_token(token)
        return record is not None and record.is_valid(self.hs.clock_ms())

    async def _check_registration_token(self, session: uia.UiaSession, auth: dict, requester) -> None:
        """The ``m.login.registration_token`` stage: a valid token is reserved for the session
        (counted as pending) until registration completes or the session expires."""
        token = auth.get("token")
        if not isinstance(token, str):
            raise uia.StageFailed("M_INVALID_PARAM", "Registration token must be a string")
        if not await self.store.reserve_registration_token(token, self.hs.clock_ms()):
            raise uia.StageFailed("M_UNAUTHORIZED", "Invalid registration token")
        session.data["registration_token"] = token
        session.on_expire.append(lambda: self._release_token(token))

    def _release_token(self, token: str):
        from twisted.internet import defer
        return defer.ensureDeferred(self.store.finish_registration_token(token, used=False))

    async def registration_finished(self, session: uia.UiaSession) -> None:
        """Count the session's registration token as used and close the session."""
        token = session.data.get("registration_token")
        session.on_expire.clear()
        self.hs.get(uia.UiaService).finish(session)
        if token is not None:
            await self.store.finish_registration_token(token, used=True)

    def refuse_guest(self) -> None:
        if not self.hs.config.allow_guest_access:
            raise forbidden("Guest access is disabled")
