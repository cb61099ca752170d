"""The application services of this server and what they change in the rest of uzel.

:class:`AppServices` reads the registrations at start-up (``app_service_config_files``, validated
by appservices/registration.py) and, when there is at least one, plugs itself into the seams
the other areas offer:

* ``AuthService.token_resolvers``: the ``as_token`` authenticates; ``?user_id=`` picks the user
  (identity assertion), ``?device_id=`` the device (v1.17, MSC3202/MSC4190 style), ``?ts=`` the
  ``origin_server_ts`` of sent events (application-service-api.md "Client-Server API
  Extensions": "Identity assertion", "Timestamp massaging").
* ``RegistrationService.username_checks`` and ``AliasService.namespace_hooks``: exclusive
  namespaces are refused to everyone else (400 M_EXCLUSIVE); a service is refused IDs outside
  its own namespaces.
* ``RegistrationService.register_types`` / ``LoginService.login_types``: ``m.login.application_service``
  ("Server admin style permissions").
* ``AliasService.local_miss_hooks`` / ``ProfileService.local_miss_hooks``: unknown aliases and users
  in a namespace are asked of the service ("Querying"), then looked up again.

Delivery of events is appservices/pusher.py's job. With no registration nothing is plugged in.
"""
from __future__ import annotations

import logging

from homeserver.accounts.auth import AuthService, Requester
from homeserver.http.errors import MatrixError, forbidden, invalid_param, missing_param, missing_token, unknown_token
from homeserver.protocol import ids
from homeserver.storage.accounts_store import AccountsStore

from .client import AppServiceClient
from .registration import AppService, load_registrations

logger = logging.getLogger(__name__)

APPSERVICE_LOGIN_TYPE = "m.login.application_service"
MAX_TS = 2**53 - 1  # origin_server_ts is an integer within the canonical JSON range


def exclusive_error(msg: str) -> MatrixError:
    return MatrixError(400, "M_EXCLUSIVE", msg)


class AppServices:
    def __init__(self, hs):
        self.hs = hs
        self.services: list[AppService] = load_registrations(hs.config.app_service_config_files, hs.hostname)
        self.by_id = {s.id: s for s in self.services}
        self.by_token = {s.as_token: s for s in self.services}
        self.client = hs.get(AppServiceClient)
        self.accounts = hs.get(AccountsStore)
        self._known_users: set[str] = set()
        self._installed = False
        #: fn(service) when a service authenticated a request (it is up): the pusher retries sooner.
        self.on_service_seen: list = []

    # =========================================================================================
    # Wiring
    # =========================================================================================
    def install(self) -> None:
        """Plug the services into auth, registration, login, aliases and profiles (once)."""
        if self._installed or not self.services:
            return
        self._installed = True
        from homeserver.accounts.login import LoginService
        from homeserver.accounts.registration import RegistrationService
        from homeserver.client.profile import ProfileService
        from homeserver.directory.aliases import AliasService

        self.hs.get(AuthService).token_resolvers.append(self.resolve_token)
        registration = self.hs.get(RegistrationService)
        registration.username_checks.append(self.check_username)
        registration.register_types[APPSERVICE_LOGIN_TYPE] = self.register
        self.hs.get(LoginService).login_types[APPSERVICE_LOGIN_TYPE] = self.login
        aliases = self.hs.get(AliasService)
        aliases.namespace_hooks.append(self.alias_verdict)
        aliases.local_miss_hooks.append(self.query_alias)
        self.hs.get(ProfileService).local_miss_hooks.append(self.query_user)
        self.hs.on_start(self.ensure_sender_users)
        for s in self.services:
            logger.info("appservice %s registered from %s: sender %s, url %s, %d user / %d alias / %d room "
                        "namespaces%s", s.id, s.source, s.sender, s.url, len(s.users), len(s.aliases),
                        len(s.rooms), ", receives ephemeral events" if s.receive_ephemeral else "")

    async def ensure_sender_users(self) -> None:
        """Each service's own user exists from the start (it is what a bare ``as_token`` acts as)."""
        from homeserver.accounts.registration import RegistrationService
        registration = self.hs.get(RegistrationService)
        for s in self.services:
            if not await self.accounts.user_exists(s.sender):
                try:
                    await registration.register(s.sender_localpart, None, appservice_id=s.id)
                    logger.info("created the user %s of appservice %s", s.sender, s.id)
                except MatrixError:
                    pass  # created concurrently
            self._known_users.add(s.sender)

    # =========================================================================================
    # Identity assertion
    # =========================================================================================
    async def resolve_token(self, request, token: str) -> Requester | None:
        """A Requester for an ``as_token``: the sender, or the ``?user_id=`` in the service's user
        namespace (403 outside it or when not registered); ``?device_id=`` must be one of that
        user's devices (400 M_UNKNOWN_DEVICE); ``?ts=`` is checked and kept for sent events."""
        service = self.by_token.get(token)
        if service is None:
            return None
        user_id = _query_arg(request, "user_id") or service.sender
        if not ids.is_valid_user_id(user_id):
            raise invalid_param(f"user_id {user_id!r} is not a valid user ID")
        if not service.is_interested_in_user(user_id):
            raise forbidden(f"Application service cannot masquerade as this user ({user_id}): "
                            f"it is outside the service's user namespaces")
        if user_id not in self._known_users:
            if not await self.accounts.user_exists(user_id):
                raise forbidden(f"Application service has not registered this user ({user_id})")
            self._known_users.add(user_id)
        device_id = _query_arg(request, "device_id") or _query_arg(request, "org.matrix.msc3202.device_id")
        if device_id is not None:
            if await self.accounts.get_device(user_id, device_id) is None:
                raise MatrixError(400, "M_UNKNOWN_DEVICE", f"Device {device_id} is not a device of {user_id}")
        ts = _parse_ts(_query_arg(request, "ts"))
        for hook in list(self.on_service_seen):
            hook(service)
        return Requester(user_id, device_id, None, app_service=service, massaged_ts=ts)

    def service_for_request(self, request) -> AppService:
        """The service whose ``as_token`` the request carries; 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN."""
        token = AuthService.get_access_token(request)
        if token is None:
            raise missing_token("Missing the application service's as_token")
        service = self.by_token.get(token)
        if service is None:
            raise unknown_token("Unrecognised application service token")
        return service

    # =========================================================================================
    # Exclusive namespaces
    # =========================================================================================
    def exclusive_owner_of_user(self, user_id: str, *, besides: AppService | None = None) -> AppService | None:
        return next((s for s in self.services if s is not besides and s.is_exclusive_user(user_id)), None)

    def check_username(self, localpart: str) -> None:
        """RegistrationService.username_checks: users in an exclusive namespace are the service's."""
        user_id = f"@{localpart}:{self.hs.hostname}"
        if self.exclusive_owner_of_user(user_id) is not None:
            raise exclusive_error("This user ID is reserved by an application service.")

    def alias_verdict(self, alias: str, requester: Requester) -> str | None:
        """AliasService.namespace_hooks: "owner" for the service whose namespace holds the alias,
        "reserved" for aliases in another service's exclusive namespace and, for a service, for
        aliases outside its own namespaces (application-service-api.md: M_EXCLUSIVE)."""
        own = requester.app_service if isinstance(requester.app_service, AppService) else None
        if own is not None:
            return "owner" if own.is_interested_in_alias(alias) else "reserved"
        if any(s.is_exclusive_alias(alias) for s in self.services):
            return "reserved"
        return None

    # =========================================================================================
    # m.login.application_service
    # =========================================================================================
    async def register(self, request, body: dict) -> dict:
        """POST /register with ``type: m.login.application_service`` and the ``as_token``: create a
        passwordless user in the service's namespace (400 M_EXCLUSIVE outside it or inside another
        service's exclusive namespace, 400 M_USER_IN_USE when taken). Logs the user in unless
        ``inhibit_login``."""
        from homeserver.accounts.registration import RegistrationService, normalise_username
        service = self.service_for_request(request)
        username = body.get("username")
        if username is None:
            raise missing_param("Missing 'username'")
        if not isinstance(username, str):
            raise invalid_param("'username' must be a string")
        for key in ("device_id", "initial_device_display_name"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise invalid_param(f"'{key}' must be a string")
        if body.get("inhibit_login") is not None and not isinstance(body["inhibit_login"], bool):
            raise invalid_param("'inhibit_login' must be a boolean")
        localpart = normalise_username(username)
        if username.startswith("@"):
            try:
                localpart, domain = ids.parse_user_id(username.lower())
            except ValueError:
                raise MatrixError(400, "M_INVALID_USERNAME", "Invalid user ID") from None
            if domain != self.hs.hostname:
                raise MatrixError(400, "M_INVALID_USERNAME", "User ID must be on this server")
        user_id = f"@{localpart}:{self.hs.hostname}"
        if not localpart or not ids.is_valid_localpart(localpart) or len(user_id.encode()) > ids.MAX_ID_BYTES:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'")
        if not service.is_interested_in_user(user_id):
            raise exclusive_error(f"{user_id} is outside the application service's user namespaces")
        if self.exclusive_owner_of_user(user_id, besides=service) is not None:
            raise exclusive_error(f"{user_id} is reserved by another application service")
        registration = self.hs.get(RegistrationService)
        if await self.accounts.user_exists(user_id):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
        user_id = await registration.register(localpart, None, appservice_id=service.id)
        self._known_users.add(user_id)
        result = {"user_id": user_id, "home_server": self.hs.hostname}
        if not body.get("inhibit_login"):
            result.update(await registration.login_new_user(user_id, body.get("device_id"),
                                                            body.get("initial_device_display_name")))
        return result

    async def login(self, body: dict, request) -> str:
        """POST /login with ``type: m.login.application_service``: the named user, if the request
        carries a service's ``as_token`` (401 otherwise) and the user is in its namespace (403
        M_EXCLUSIVE otherwise) and exists (403 M_FORBIDDEN otherwise)."""
        from homeserver.accounts.login import LoginService
        if request is None:
            raise missing_token("Missing the application service's as_token")
        service = self.service_for_request(request)
        user_id = await self.hs.get(LoginService).resolve_identifier(body)
        if not service.is_interested_in_user(user_id):
            raise MatrixError(403, "M_EXCLUSIVE", f"{user_id} is outside the application service's user namespaces")
        if not await self.accounts.user_exists(user_id):
            raise forbidden(f"Application service has not registered this user ({user_id})")
        return user_id

    # =========================================================================================
    # Queries (application-service-api.md "Querying")
    # =========================================================================================
    async def query_alias(self, alias: str) -> bool:
        """An unknown local alias: ask each service whose alias namespace holds it; True when one
        says it created it."""
        for s in self.services:
            if s.url is not None and s.is_interested_in_alias(alias):
                if await self.client.query_alias(s, alias):
                    return True
        return False

    async def query_user(self, user_id: str) -> bool:
        """An unknown local user: ask each service whose user namespace holds it."""
        for s in self.services:
            if s.url is not None and s.is_interested_in_user(user_id) and user_id != s.sender:
                if await self.client.query_user(s, user_id):
                    return True
        return False

    # =========================================================================================
    # Third-party networks (application-service-api.md "Third-party networks")
    # =========================================================================================
    def services_for_protocol(self, protocol: str) -> list[AppService]:
        return [s for s in self.services if protocol in s.protocols and s.url is not None]

    async def get_protocols(self) -> dict[str, dict]:
        """GET /thirdparty/protocols: each protocol's metadata from a service providing it, with
        each instance's ``instance_id`` set to ``<service id>|<network_id>`` (the form the
        published room directory takes as ``third_party_instance_id``)."""
        out: dict[str, dict] = {}
        for s in self.services:
            for protocol in s.protocols:
                if s.url is None:
                    continue
                info = await self.client.query_thirdparty(s, "protocol", protocol)
                if not isinstance(info, dict):
                    continue
                info = dict(info)
                instances = [dict(i) for i in info.get("instances") or [] if isinstance(i, dict)]
                for inst in instances:
                    if isinstance(inst.get("network_id"), str):
                        inst["instance_id"] = f"{s.id}|{inst['network_id']}"
                if protocol in out:
                    out[protocol].setdefault("instances", []).extend(instances)
                else:
                    info["instances"] = instances
                    out[protocol] = info
        return out

    async def query_thirdparty_list(self, kind: str, protocol: str | None, args: dict) -> list:
        """GET /thirdparty/{location,user}[/{protocol}]: the services' answers concatenated."""
        services = self.services_for_protocol(protocol) if protocol is not None else \
            [s for s in self.services if s.protocols and s.url is not None]
        out: list = []
        for s in services:
            result = await self.client.query_thirdparty(s, kind, protocol, args)
            if isinstance(result, list):
                out.extend(r for r in result if isinstance(r, dict))
        return out


def _query_arg(request, name: str) -> str | None:
    if request is None:
        return None
    value = request.arg(name)
    return value if value else None


def _parse_ts(value: str | None) -> int | None:
    """``?ts=``: an integer millisecond timestamp accepted as origin_server_ts; else 400."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 16 or int(value) > MAX_TS:
        raise invalid_param("'ts' must be a non-negative integer timestamp in milliseconds")
    return int(value)
