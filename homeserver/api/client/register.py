"""Registration endpoints (client-server-api "Account registration", registration.yaml,
registration_tokens.yaml)."""
from __future__ import annotations

from dataclasses import dataclass

from homeserver.accounts.account import check_password_shape
from homeserver.accounts.ratelimit import Ratelimiter
from homeserver.accounts.registration import RegistrationService, normalise_username
from homeserver.accounts.uia import UiaService
from homeserver.http.errors import forbidden, invalid_param, missing_param


@dataclass
class _Params:
    localpart: str | None
    password: str | None
    device_id: str | None
    display_name: str | None
    inhibit_login: bool
    refresh_token: bool


def _parse(d: dict) -> _Params:
    """Check the shapes of the /register parameters (registration.yaml request body)."""
    username = d.get("username")
    if username is not None and not isinstance(username, str):
        raise invalid_param("'username' must be a string")
    password = d.get("password")
    if password is not None:
        check_password_shape(password)
    for key in ("device_id", "initial_device_display_name"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise invalid_param(f"'{key}' must be a string")
    for key in ("inhibit_login", "refresh_token"):
        if d.get(key) is not None and not isinstance(d[key], bool):
            raise invalid_param(f"'{key}' must be a boolean")
    return _Params(normalise_username(username) if username is not None else None, password,
                   d.get("device_id"), d.get("initial_device_display_name"),
                   bool(d.get("inhibit_login")), bool(d.get("refresh_token")))


def register_routes(hs, router) -> None:
    registration = hs.get(RegistrationService)
    uia = hs.get(UiaService)
    limiter = hs.get(Ratelimiter)

    async def register(request):
        """POST /_matrix/client/v3/register: create an account through UIA (m.login.dummy, or
        m.login.registration_token when required); ``kind=guest`` skips UIA when guests are
        allowed. Username problems are reported before UIA, as the spec requires."""
        body = request.json()
        special = registration.register_types.get(body.get("type")) if isinstance(body.get("type"), str) else None
        if special is not None:
            return 200, await special(request, body)
        limiter.check("rc_registration", request.client_ip, update=False)
        kind = request.arg("kind", "user")
        if kind == "guest":
            return await register_guest(request, body)
        if kind != "user":
            raise invalid_param(f"Unknown kind {kind!r}")
        if not registration.registration_enabled():
            raise forbidden("Registration has been disabled")
        params = _parse(body)
        if params.localpart is not None:
            await registration.check_username(params.localpart)
        session = await uia.check(request, body, registration.flows())
        params = _parse(session.clientdict)
        if params.password is None:
            raise missing_param("Missing params: password")
        if params.localpart is not None:
            await registration.check_username(params.localpart)
        limiter.check("rc_registration", request.client_ip)
        user_id = await registration.register(params.localpart, params.password)
        await registration.registration_finished(session)
        result = {"user_id": user_id, "home_server": hs.hostname}
        if not params.inhibit_login:
            result.update(await registration.login_new_user(user_id, params.device_id, params.display_name,
                                                            with_refresh=params.refresh_token))
        return 200, result

    async def register_guest(request, body):
        """Guest registration: every parameter but initial_device_display_name is ignored."""
        registration.refuse_guest()
        display_name = body.get("initial_device_display_name")
        if not isinstance(display_name, str):
            display_name = None
        limiter.check("rc_registration", request.client_ip)
        user_id = await registration.register(None, None, is_guest=True)
        result = {"user_id": user_id, "home_server": hs.hostname}
        result.update(await registration.login_new_user(user_id, None, display_name))
        return 200, result

    async def available(request):
        """GET /_matrix/client/v3/register/available: 200 {available: true}, or 400 with
        M_INVALID_USERNAME / M_USER_IN_USE / M_EXCLUSIVE."""
        if not registration.registration_enabled():
            raise forbidden("Registration has been disabled")
        username = request.arg("username")
        if username is None:
            raise missing_param("Missing 'username' query parameter")
        await registration.check_username(normalise_username(username))
        return 200, {"available": True}

    async def token_validity(request):
        """GET /_matrix/client/v1/register/m.login.registration_token/validity (rate limited
        against guessing: rc_registration_token_validity)."""
        if not registration.registration_enabled():
            raise forbidden("Registration is not enabled on this homeserver.")
        limiter.check("rc_registration_token_validity", request.client_ip)
        token = request.arg("token")
        if token is None:
            raise missing_param("Missing 'token' query parameter")
        return 200, {"valid": await registration.token_is_valid(token)}

    router.add_client("POST", "/register", register)
    router.add_client("GET", "/register/available", available)
    router.add_client("GET", "/register/m.login.registration_token/validity", token_validity, versions=("v1",))
