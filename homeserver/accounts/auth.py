"""Authenticating client requests, and the life of access and refresh tokens.

client-server-api "Using access tokens": the token comes in ``Authorization: Bearer <token>``
or, for older clients, the ``access_token`` query parameter; none → 401 M_MISSING_TOKEN,
unknown/revoked → 401 M_UNKNOWN_TOKEN, expired → 401 M_UNKNOWN_TOKEN with ``soft_logout: true``
("Refreshing access tokens", "Soft logout").

Tokens are random strings (tokens.py); the database keeps only their SHA-256. A dictionary from
token hash to :class:`Requester` answers repeat requests without touching the database; every
revocation (logout, device deletion, password change, deactivation, lock) goes through
:meth:`AuthService.invalidate_tokens` / :meth:`AuthService.invalidate_user`, and a generation
counter keeps a lookup that raced with a revocation from caching its stale answer.

Application services acting as a user (appservices/service.py, a token resolver) get the same
locked / suspended answers as the user's own token, and 403 M_USER_DEACTIVATED for a
deactivated user; the user's flags are cached and forgotten by :meth:`AuthService.invalidate_user`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

from homeserver.http.errors import MatrixError, missing_token, unknown_token
from homeserver.storage.accounts_store import AccountsStore

from . import tokens

LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000  # login_token.yaml recommends 2 minutes
_CACHE_MAX = 50_000
_LAST_SEEN_FLUSH_S = 10.0


@dataclass(frozen=True)
class Requester:
    """Who made a request. ``access_token_id`` is the token's hash (None for appservice tokens).
    ``massaged_ts``: an application service's ``?ts=`` (application-service-api.md "Timestamp
    massaging"), the origin_server_ts for events it sends. ``suspended``: the account is
    suspended (client-server-api "Account suspension"): see :func:`check_not_suspended`."""

    user_id: str
    device_id: str | None
    access_token_id: str | None
    is_guest: bool = False
    app_service: Any = None
    massaged_ts: int | None = None
    suspended: bool = False


def user_suspended() -> MatrixError:
    """403 M_USER_SUSPENDED (client-server-api "Account suspension")."""
    return MatrixError(403, "M_USER_SUSPENDED", "You cannot perform this action while suspended.")


def check_not_suspended(requester) -> None:
    """Refuse an action a suspended account may not take (client-server-api "Account
    suspension": joining, knocking, sending or accepting invites, sending messages and state,
    changing the profile, redacting others' events, creating rooms). Reading, leaving, rejecting
    invites, redacting one's own events, devices, keys and logging out stay allowed, so callers
    check only on the refused paths."""
    if getattr(requester, "suspended", False):
        raise user_suspended()


@dataclass(frozen=True)
class _Cached:
    requester: Requester
    valid_until_ms: int | None
    locked: bool


# A resolver gets (request, token) and returns a Requester for tokens it owns (application
# services' as_token), or None. Resolvers must be fast: they run on every cache miss.
TokenResolver = Callable[[Any, str], Awaitable["Requester | None"]]


class AuthService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AccountsStore)
        self.token_resolvers: list[TokenResolver] = []
        self._cache: dict[str, _Cached] = {}
        self._by_user: dict[str, set[str]] = {}
        #: user ID -> (deactivated, locked, suspended) of users application services act as.
        self._user_flags: dict[str, tuple[bool, bool, bool]] = {}
        self._generation = 0
        self.refreshable_lifetime_ms: int = hs.config.refreshable_access_token_lifetime_ms
        # (user_id, device_id) -> (ts, ip, user agent) not yet written to the devices table.
        self.pending_last_seen: dict[tuple[str, str], tuple[int, str, str | None]] = {}
        self._flush_scheduled = False

    # --- request authentication --------------------------------------------------------------
    @staticmethod
    def get_access_token(request) -> str | None:
        """The token of a request, or None. Both header and query parameter → M_MISSING_TOKEN
        (Synapse: "Mixing Authorization headers and access_token query parameters.")."""
        header = request.header("Authorization")
        query = request.args("access_token")
        if header is not None:
            if query:
                raise missing_token("Mixing Authorization headers and access_token query parameters.")
            scheme, _, value = header.partition(" ")
            if scheme != "Bearer" or not value or " " in value:
                raise missing_token("Invalid Authorization header.")
            return value
        if query:
            return query[-1]
        return None

    async def get_requester(self, request, *, allow_guest: bool = False, allow_expired: bool = False,
                            allow_locked: bool = False) -> Requester:
        """Authenticate a request; sets ``request.requester`` and the access log's user."""
        token = self.get_access_token(request)
        if token is None:
            raise missing_token()
        requester = await self.requester_for_token(token, request=request, allow_guest=allow_guest,
                                                   allow_expired=allow_expired, allow_locked=allow_locked)
        request.requester = requester
        request.twisted.authenticated_entity = requester.user_id
        if requester.device_id is not None and requester.app_service is None:
            self._note_last_seen(requester, request)
        return requester

    async def get_optional_requester(self, request, **kwargs) -> Requester | None:
        """As get_requester, but None when the request carries no token at all."""
        if self.get_access_token(request) is None:
            return None
        return await self.get_requester(request, **kwargs)

    async def requester_for_token(self, token: str, *, request=None, allow_guest: bool = False,
                                  allow_expired: bool = False, allow_locked: bool = False) -> Requester:
        token_hash = tokens.hash_token(token)
        cached = self._cache.get(token_hash)
        if cached is None:
            for resolver in self.token_resolvers:
                found = await resolver(request, token)
                if found is not None:
                    return await self._check_asserted_user(found, allow_locked=allow_locked)
            cached = await self._load(token_hash)
        if cached.valid_until_ms is not None and not allow_expired and self.hs.clock_ms() >= cached.valid_until_ms:
            raise unknown_token("Access token has expired", soft_logout=True)
        if cached.locked and not allow_locked:
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        if cached.requester.is_guest and not allow_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        return cached.requester

    async def _check_asserted_user(self, requester: Requester, *, allow_locked: bool) -> Requester:
        """An application service acting as a user (``?user_id=``, application-service-api.md
        "Identity assertion") meets the same account checks as the user's own token: 401
        M_USER_LOCKED (soft logout) when locked, the requester marked ``suspended`` for the
        endpoints that refuse suspended accounts, and for a deactivated account (whose own
        tokens no longer exist) 403 M_USER_DEACTIVATED, Synapse's UserDeactivatedError."""
        flags = self._user_flags.get(requester.user_id)
        if flags is None:
            generation = self._generation
            record = await self.store.get_user(requester.user_id)
            flags = (bool(record and record.deactivated), bool(record and record.locked),
                     bool(record and record.suspended))
            if generation == self._generation:
                if len(self._user_flags) >= _CACHE_MAX:
                    self._user_flags.pop(next(iter(self._user_flags)))
                self._user_flags[requester.user_id] = flags
        deactivated, locked, suspended = flags
        if deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if locked and not allow_locked:
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        if suspended and not requester.suspended:
            requester = replace(requester, suspended=True)
        return requester

    async def _load(self, token_hash: str) -> _Cached:
        generation = self._generation
        record = await self.store.get_access_token(token_hash)
        if record is None or record.deactivated:
            raise unknown_token("Unrecognised access token.")
        if record.refresh_token_hash is not None and not record.used:
            # First use of a refreshed token revokes the refresh token it replaced.
            revoked = await self.store.mark_access_token_used(token_hash)
            self.invalidate_tokens(revoked)
        requester = Requester(record.user_id, record.device_id, token_hash, record.is_guest,
                              suspended=record.suspended)
        entry = _Cached(requester, record.valid_until_ms, record.locked)
        if generation == self._generation:
            if len(self._cache) >= _CACHE_MAX:
                self._evict_oldest()
            self._cache[token_hash] = entry
            self._by_user.setdefault(record.user_id, set()).add(token_hash)
        return entry

    # --- cache invalidation --------------------------------------------------------------------
    def invalidate_tokens(self, token_hashes) -> None:
        self._generation += 1
        for h in token_hashes:
            entry = self._cache.pop(h, None)
            if entry is not None:
                hashes = self._by_user.get(entry.requester.user_id)
                if hashes is not None:
                    hashes.discard(h)

    def invalidate_user(self, user_id: str) -> None:
        """Forget every cached token of a user (after lock, suspension, deactivation, bulk
        revocation): the next request reads the user's flags again."""
        self._generation += 1
        self._user_flags.pop(user_id, None)
        for h in self._by_user.pop(user_id, ()):
            self._cache.pop(h, None)

    def _evict_oldest(self) -> None:
        h = next(iter(self._cache))
        self.invalidate_tokens([h])

    # --- issuing tokens ------------------------------------------------------------------------
    async def issue_tokens(self, user_id: str, device_id: str | None, *, with_refresh: bool = False) -> dict:
        """A new access token (and refresh token when asked) for a device:
        ``{"access_token", ["refresh_token", "expires_in_ms"]}`` as /login and /register return."""
        now = self.hs.clock_ms()
        access = tokens.new_token(tokens.ACCESS_PREFIX)
        result: dict = {"access_token": access}
        if with_refresh and device_id is not None:
            refresh = tokens.new_token(tokens.REFRESH_PREFIX)
            await self.store.add_refresh_token(tokens.hash_token(refresh), user_id, device_id, now)
            await self.store.add_access_token(tokens.hash_token(access), user_id, device_id, now,
                                              now + self.refreshable_lifetime_ms, tokens.hash_token(refresh))
            result["refresh_token"] = refresh
            result["expires_in_ms"] = self.refreshable_lifetime_ms
        else:
            await self.store.add_access_token(tokens.hash_token(access), user_id, device_id, now)
        return result

    async def refresh(self, refresh_token: str) -> dict:
        """POST /refresh: a new access token and refresh token (refresh.yaml)."""
        now = self.hs.clock_ms()
        access = tokens.new_token(tokens.ACCESS_PREFIX)
        refresh = tokens.new_token(tokens.REFRESH_PREFIX)
        result = await self.store.rotate_refresh_token(tokens.hash_token(refresh_token), tokens.hash_token(refresh),
                                                       tokens.hash_token(access), now,
                                                       now + self.refreshable_lifetime_ms)
        if result is None:
            raise unknown_token("Refresh token does not exist or has been revoked", soft_logout=False)
        _, _, revoked = result
        self.invalidate_tokens(revoked)
        return {"access_token": access, "refresh_token": refresh, "expires_in_ms": self.refreshable_lifetime_ms}

    async def revoke_token(self, token_hash: str) -> None:
        await self.store.delete_access_token(token_hash)
        self.invalidate_tokens([token_hash])

    async def revoke_user_tokens(self, user_id: str, *, except_token_hash: str | None = None,
                                 device_id: str | None = None) -> list[str]:
        revoked = await self.store.delete_access_tokens_for_user(user_id, except_token_hash=except_token_hash,
                                                                 device_id=device_id)
        self.invalidate_tokens(revoked)
        return revoked

    async def create_login_token(self, user_id: str, lifetime_ms: int = LOGIN_TOKEN_LIFETIME_MS) -> str:
        """A single-use token for ``POST /login`` with ``m.login.token``."""
        token = tokens.new_token(tokens.LOGIN_PREFIX)
        await self.store.add_login_token(tokens.hash_token(token), user_id, self.hs.clock_ms() + lifetime_ms)
        return token

    async def consume_login_token(self, token: str) -> str | None:
        return await self.store.consume_login_token(tokens.hash_token(token), self.hs.clock_ms())

    async def is_server_admin(self, user_id: str) -> bool:
        user = await self.store.get_user(user_id)
        return bool(user and user.is_admin)

    # --- device last-seen ------------------------------------------------------------------------
    def _note_last_seen(self, requester: Requester, request) -> None:
        key = (requester.user_id, requester.device_id)
        ip = getattr(request, "client_ip", None) or "-"
        prev = self.pending_last_seen.get(key)
        now = self.hs.clock_ms()
        user_agent = request.header("User-Agent")
        if prev is not None and prev[1] == ip and prev[2] == user_agent and now - prev[0] < 1000:
            return
        self.pending_last_seen[key] = (now, ip, user_agent)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.hs.reactor.callLater(_LAST_SEEN_FLUSH_S, self._flush_last_seen)

    def _flush_last_seen(self):
        from twisted.internet import defer
        self._flush_scheduled = False
        pending, self.pending_last_seen = self.pending_last_seen, {}
        rows = [(u, d, ts, ip, ua) for (u, d), (ts, ip, ua) in pending.items()]
        if rows:
            return defer.ensureDeferred(self.store.update_last_seen(rows)).addErrback(lambda f: None)
