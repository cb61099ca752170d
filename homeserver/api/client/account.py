"""Account endpoints: whoami, password change, deactivation (client-server-api "Account
management", whoami.yaml, password_management.yaml, account_deactivation.yaml)."""
from __future__ import annotations

from homeserver.accounts import uia as uia_stages
from homeserver.accounts.account import AccountService, check_password_shape
from homeserver.accounts.auth import AuthService
from homeserver.accounts.uia import UiaService
from homeserver.client.profile import ProfileService
from homeserver.client.push_service import PusherService
from homeserver.directory.user_directory import UserDirectoryService
from homeserver.http.errors import invalid_param, missing_param
from homeserver.rooms.membership import MembershipService

# Endpoints that re-check the user's identity offer one flow: the account password.
PASSWORD_FLOWS = [[uia_stages.PASSWORD]]


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    uia = hs.get(UiaService)
    accounts = hs.get(AccountService)
    register_deactivation_hooks(hs, accounts)

    async def whoami(request):
        """GET /_matrix/client/v3/account/whoami: user_id, device_id (absent for appservice
        tokens) and is_guest of the access token."""
        requester = await auth.get_requester(request, allow_guest=True)
        result = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            result["device_id"] = requester.device_id
        return 200, result

    async def change_password(request):
        """POST /_matrix/client/v3/account/password: UIA with m.login.password, then set
        new_password; other devices are logged out unless logout_devices is false."""
        requester = await auth.get_requester(request)
        body = request.json()
        _check_password_params(body)
        session = await uia.check(request, body, PASSWORD_FLOWS, requester=requester)
        params = session.clientdict
        _check_password_params(params)
        if params.get("new_password") is None:
            raise missing_param("Missing 'new_password'")
        uia.finish(session)
        await accounts.change_password(requester, params["new_password"],
                                       logout_devices=params.get("logout_devices", True))
        return 200, {}

    async def deactivate(request):
        """POST /_matrix/client/v3/account/deactivate: UIA with m.login.password, then the
        account can never log in again. uzel binds no 3PIDs, so unbinding always succeeds."""
        requester = await auth.get_requester(request)
        body = request.json()
        if body.get("erase") is not None and not isinstance(body["erase"], bool):
            raise invalid_param("'erase' must be a boolean")
        session = await uia.check(request, body, PASSWORD_FLOWS, requester=requester)
        uia.finish(session)
        await accounts.deactivate(requester.user_id, erase=bool(session.clientdict.get("erase")))
        return 200, {"id_server_unbind_result": "success"}

    router.add_client("GET", "/account/whoami", whoami)
    router.add_client("POST", "/account/password", change_password)
    router.add_client("POST", "/account/deactivate", deactivate)


def register_deactivation_hooks(hs, accounts: AccountService) -> None:
    """What a deactivation takes with it, in this order (each step its own hook, so one failing
    does not stop the others): the user leaves every joined room and rejects their invites and
    knocks; with ``erase`` their profile is emptied (account_deactivation.yaml); their user
    directory entry and all their pushers are removed. Devices (and with them their keys and
    device pushers) are deleted by AccountService itself before the hooks run."""
    membership = hs.get(MembershipService)
    profiles = hs.get(ProfileService)
    directory = hs.get(UserDirectoryService)
    pushers = hs.get(PusherService)

    async def leave_rooms(user_id: str, erase: bool) -> None:
        await membership.leave_all_rooms(user_id)

    async def erase_profile(user_id: str, erase: bool) -> None:
        if erase:
            await profiles.erase(user_id)

    async def leave_directory(user_id: str, erase: bool) -> None:
        await directory.remove_user(user_id)

    async def drop_pushers(user_id: str, erase: bool) -> None:
        await pushers.delete_all_pushers(user_id)

    accounts.on_deactivate.extend([leave_rooms, erase_profile, leave_directory, drop_pushers])


def _check_password_params(d: dict) -> None:
    if d.get("new_password") is not None:
        check_password_shape(d["new_password"])
    if d.get("logout_devices") is not None and not isinstance(d["logout_devices"], bool):
        raise invalid_param("'logout_devices' must be a boolean")
