"""Third-party identifier endpoints (client-server-api "Adding Account Administrative Contact
Information", administrative_contact.yaml; ``/register/{email,msisdn}/requestToken``,
registration.yaml; ``/account/password/{email,msisdn}/requestToken``, password_management.yaml).

What uzel answers, and why, is in homeserver/accounts/threepids.py. Every body is checked first:
a missing field is 400 M_MISSING_PARAM, a field of the wrong JSON type M_BAD_JSON, a bad value
M_INVALID_PARAM.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from homeserver.accounts.account import AccountService
from homeserver.accounts.auth import AuthService
from homeserver.accounts.threepids import MEDIA, ThreepidService, canonicalise_email
from homeserver.accounts.uia import UiaService
from homeserver.http.body import optional_str, required_object, required_str
from homeserver.http.errors import bad_json, invalid_param, missing_param

from .account import PASSWORD_FLOWS

# client_secret and sid: "[0-9a-zA-Z.=_-]", 1 to 255 characters (request_email_validation.yaml,
# request_token_response.yaml).
_OPAQUE_ID = re.compile(r"[0-9a-zA-Z.=_\-]{1,255}")
_COUNTRY = re.compile(r"[A-Z]{2}")  # ISO-3166-1 alpha-2, upper case
_PHONE_NUMBER = re.compile(r"\+?[0-9 ()./\-]{1,64}")
_MAX_EMAIL_LENGTH = 500
_MAX_SAFE_INT = 2**53 - 1  # appendices.md "Canonical JSON"


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    uia = hs.get(UiaService)
    threepids = hs.get(ThreepidService)

    async def drop_threepids(user_id: str, erase: bool) -> None:
        await threepids.delete_all(user_id)

    hs.get(AccountService).on_deactivate.append(drop_threepids)

    async def get_threepids(request):
        """GET /_matrix/client/v3/account/3pid: the identifiers stored for the account."""
        requester = await auth.get_requester(request)
        return 200, {"threepids": await threepids.list_threepids(requester.user_id)}

    async def add_threepid(request):
        """POST /_matrix/client/v3/account/3pid/add: UIA (m.login.password), then the validated
        session ``sid``/``client_secret`` is added; none can be validated here, so 400
        M_THREEPID_AUTH_FAILED."""
        requester = await auth.get_requester(request)
        body = request.json()
        sid, secret = _opaque_id(body, "sid"), _opaque_id(body, "client_secret")
        session = await uia.check(request, body, PASSWORD_FLOWS, requester=requester)
        uia.finish(session)
        await threepids.add_validated(requester.user_id, sid, secret)
        return 200, {}

    async def add_threepid_legacy(request):
        """POST /_matrix/client/v3/account/3pid (deprecated): ``three_pid_creds`` of a validated
        session; none exists here, so 403 M_THREEPID_AUTH_FAILED."""
        requester = await auth.get_requester(request)
        creds = required_object(request.json(), "three_pid_creds")
        sid, secret = _opaque_id(creds, "sid"), _opaque_id(creds, "client_secret")
        optional_str(creds, "id_server")
        optional_str(creds, "id_access_token")
        await threepids.add_legacy(requester.user_id, sid, secret)
        return 200, {}

    async def bind_threepid(request):
        """POST /_matrix/client/v3/account/3pid/bind: through an identity server, which uzel
        does not trust: 400 M_SERVER_NOT_TRUSTED."""
        requester = await auth.get_requester(request)
        body = request.json()
        _opaque_id(body, "sid")
        _opaque_id(body, "client_secret")
        id_server = required_str(body, "id_server")
        required_str(body, "id_access_token")
        await threepids.bind(requester.user_id, id_server)
        return 200, {}

    async def unbind_threepid(request):
        """POST /_matrix/client/v3/account/3pid/unbind: ``{"id_server_unbind_result": "no-support"}``."""
        requester = await auth.get_requester(request)
        body = request.json()
        medium, address = _medium_address(body)
        result = await threepids.unbind(requester.user_id, medium, address, optional_str(body, "id_server"))
        return 200, {"id_server_unbind_result": result}

    async def delete_threepid(request):
        """POST /_matrix/client/v3/account/3pid/delete: remove a stored identifier;
        ``id_server_unbind_result`` is "no-support"."""
        requester = await auth.get_requester(request)
        body = request.json()
        medium, address = _medium_address(body)
        result = await threepids.delete(requester.user_id, medium, address, optional_str(body, "id_server"))
        return 200, {"id_server_unbind_result": result}

    def request_token(purpose: str, medium: str):
        check = _check_email_request if medium == "email" else _check_msisdn_request

        async def handler(request):
            """POST .../{email,msisdn}/requestToken (no access token): the body is checked, then
            refused (homeserver/accounts/threepids.py)."""
            check(request.json())
            threepids.request_token(purpose, medium)  # type: ignore[arg-type]
            return 200, {}
        return handler

    router.add_client("GET", "/account/3pid", get_threepids)
    router.add_client("POST", "/account/3pid", add_threepid_legacy)
    router.add_client("POST", "/account/3pid/add", add_threepid)
    router.add_client("POST", "/account/3pid/bind", bind_threepid)
    router.add_client("POST", "/account/3pid/unbind", unbind_threepid)
    router.add_client("POST", "/account/3pid/delete", delete_threepid)
    for medium in MEDIA:
        router.add_client("POST", f"/register/{medium}/requestToken", request_token("registration", medium))
        router.add_client("POST", f"/account/password/{medium}/requestToken", request_token("password_reset", medium))
        router.add_client("POST", f"/account/3pid/{medium}/requestToken", request_token("account", medium))


# --- body shapes ----------------------------------------------------------------------------------

def _opaque_id(body: dict, key: str) -> str:
    """``client_secret`` or ``sid``: [0-9a-zA-Z.=_-], 1-255 characters."""
    value = required_str(body, key)
    if not _OPAQUE_ID.fullmatch(value):
        raise invalid_param(f"'{key}' must be 1 to 255 of the characters [0-9a-zA-Z.=_-]")
    return value


def _medium_address(body: dict) -> tuple[str, str]:
    medium = required_str(body, "medium")
    if medium not in MEDIA:
        raise invalid_param("'medium' must be 'email' or 'msisdn'")
    return medium, required_str(body, "address")


def _check_common(body: dict) -> None:
    """The fields shared by request_email_validation.yaml and request_msisdn_validation.yaml."""
    _opaque_id(body, "client_secret")
    attempt = body.get("send_attempt")
    if attempt is None:
        raise missing_param("Missing 'send_attempt'")
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise bad_json("'send_attempt' must be an integer")
    if abs(attempt) > _MAX_SAFE_INT:
        raise invalid_param("'send_attempt' is out of range")
    next_link = optional_str(body, "next_link")
    if next_link is not None and urlsplit(next_link).scheme not in ("http", "https"):
        raise invalid_param("'next_link' must be an http or https URL")
    optional_str(body, "id_server")
    optional_str(body, "id_access_token")


def _check_email_request(body: dict) -> None:
    _check_common(body)
    email = required_str(body, "email")
    if len(email) > _MAX_EMAIL_LENGTH or canonicalise_email(email) is None:
        raise invalid_param("'email' is not a valid email address")


def _check_msisdn_request(body: dict) -> None:
    _check_common(body)
    country = required_str(body, "country")
    if not _COUNTRY.fullmatch(country):
        raise invalid_param("'country' must be a two-letter upper-case ISO 3166-1 country code")
    number = required_str(body, "phone_number")
    if not _PHONE_NUMBER.fullmatch(number) or not any(c.isdigit() for c in number):
        raise invalid_param("'phone_number' is not a valid phone number")
