"""Checking login credentials (client-server-api "Login", "Identifier types", "Password-based").

Used by ``POST /login`` and by the ``m.login.password`` UIA stage. A user may be named by the
``m.id.user`` identifier (full user ID or localpart, any capitalisation of an existing account)
or the deprecated top-level ``user`` field. Third-party identifiers never match: uzel binds no
3PIDs, and the spec says an unknown 3PID gets 403 M_FORBIDDEN.
"""
from __future__ import annotations

from homeserver.http.errors import MatrixError, forbidden, invalid_param, missing_param
from homeserver.protocol import ids
from homeserver.storage.accounts_store import AccountsStore

from .auth import AuthService
from .devices import DeviceService
from .login_token_issuer import login_via_existing_session
from .passwords import PasswordHasher
from .ratelimit import Ratelimiter

PASSWORD_TYPE = "m.login.password"
TOKEN_TYPE = "m.login.token"
_BAD_CREDENTIALS = "Invalid username or password"


class LoginService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AccountsStore)
        self.hasher = hs.get(PasswordHasher)
        self.limiter = hs.get(Ratelimiter)
        #: More login types: ``type -> async fn(body, request) -> user_id`` (application services
        #: add ``m.login.application_service``).
        self.login_types: dict = {}

    def login_flows(self) -> list[dict]:
        """GET /login (login.yaml): password and single-use login tokens; ``get_login_token``
        says whether POST /login/get_token is served (login_via_existing_session.enabled)."""
        get_login_token = login_via_existing_session(self.hs.config).enabled
        return [{"type": PASSWORD_TYPE}, {"type": TOKEN_TYPE, "get_login_token": get_login_token}] + \
            [{"type": t} for t in self.login_types]

    async def login(self, body: dict, client_ip: str, request=None) -> dict:
        """POST /login: check the credentials, create or reuse the device, issue tokens."""
        self.limiter.check("rc_login.address", client_ip)
        login_type = body.get("type")
        if login_type is None:
            raise missing_param("Missing 'type'")
        device_id = _optional_str(body, "device_id")
        display_name = _optional_str(body, "initial_device_display_name")
        with_refresh = body.get("refresh_token", False)
        if not isinstance(with_refresh, bool):
            raise invalid_param("'refresh_token' must be a boolean")
        if login_type == PASSWORD_TYPE:
            user_id = await self.resolve_identifier(body)
            self.limiter.check("rc_login.account", user_id.lower())
            user_id = await self.check_password(user_id, body.get("password"))
        elif login_type == TOKEN_TYPE:
            token = body.get("token")
            if not isinstance(token, str):
                raise missing_param("Missing 'token'")
            user_id = await self.hs.get(AuthService).consume_login_token(token)
            if user_id is None:
                raise forbidden("Invalid login token")
            user = await self.store.get_user(user_id)
            if user is None or user.deactivated:
                raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        elif isinstance(login_type, str) and login_type in self.login_types:
            user_id = await self.login_types[login_type](body, request)
        else:
            raise MatrixError(400, "M_UNKNOWN", "Unknown login type")
        device_id = await self.hs.get(DeviceService).ensure_device(user_id, device_id, display_name)
        result = {"user_id": user_id, "device_id": device_id, "home_server": self.hs.hostname}
        result.update(await self.hs.get(AuthService).issue_tokens(user_id, device_id, with_refresh=with_refresh))
        return result

    async def check_password_auth(self, auth: dict) -> str:
        """The user an ``m.login.password`` dict authenticates; raises 403 M_FORBIDDEN otherwise."""
        user_id = await self.resolve_identifier(auth)
        return await self.check_password(user_id, auth.get("password"))

    async def resolve_identifier(self, body: dict) -> str:
        """The qualified user ID a login body names (it may not exist)."""
        identifier = body.get("identifier")
        if identifier is None:
            if "user" in body:
                identifier = {"type": "m.id.user", "user": body["user"]}
            elif "medium" in body or "address" in body:
                identifier = {"type": "m.id.thirdparty", "medium": body.get("medium"), "address": body.get("address")}
            else:
                raise missing_param("Missing 'identifier'")
        if not isinstance(identifier, dict):
            raise invalid_param("'identifier' must be an object")
        id_type = identifier.get("type")
        if id_type == "m.id.user":
            user = identifier.get("user")
            if not isinstance(user, str) or not user:
                raise invalid_param("'identifier.user' must be a non-empty string")
            return self._qualify(user)
        if id_type in ("m.id.thirdparty", "m.id.phone") or (id_type is None and "medium" in identifier):
            raise forbidden("Third-party identifier is not bound to an account on this server")
        raise MatrixError(400, "M_UNKNOWN", "Unknown login identifier type")

    def _qualify(self, user: str) -> str:
        if user.startswith("@"):
            try:
                _, domain = ids.parse_user_id(user)
            except ValueError:
                raise forbidden(_BAD_CREDENTIALS)
            if domain != self.hs.hostname:
                raise forbidden(_BAD_CREDENTIALS)
            return user
        return f"@{user}:{self.hs.hostname}"

    async def check_password(self, user_id: str, password) -> str:
        """The canonical user ID if ``password`` is theirs; 403 M_FORBIDDEN otherwise
        (M_USER_DEACTIVATED for deactivated accounts, login.yaml 403)."""
        if not isinstance(password, str):
            raise missing_param("Missing 'password'")
        key = user_id.lower()
        self.limiter.check("rc_login.failed_attempts", key, update=False)
        canonical = await self._canonical_user_id(user_id)
        user = await self.store.get_user(canonical) if canonical else None
        if user is not None and user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if user is None or not await self.hasher.check(password, user.password_hash):
            self.limiter.record("rc_login.failed_attempts", key)
            raise forbidden(_BAD_CREDENTIALS)
        if user.locked:  # "Account locking": no new access tokens while locked
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        return user.user_id

    async def _canonical_user_id(self, user_id: str) -> str | None:
        """Exact match first, then the single case-insensitive match (Synapse's rule)."""
        if await self.store.user_exists(user_id):
            return user_id
        matches = await self.store.find_users_case_insensitive(user_id)
        return matches[0] if len(matches) == 1 else None


def _optional_str(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_param(f"'{key}' must be a string")
    return value
