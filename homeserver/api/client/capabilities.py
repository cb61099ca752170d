"""GET /capabilities (client-server-api "Capabilities negotiation", capabilities.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.login_token_issuer import LoginTokenIssuer
from homeserver.accounts.moderation import AccountModerationService
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    login_tokens = hs.get(LoginTokenIssuer)
    moderation = hs.get(AccountModerationService)

    async def capabilities(request):
        """GET /_matrix/client/v3/capabilities: password changes and profile edits allowed
        (m.profile_fields, and the deprecated m.set_displayname / m.set_avatar_url), no
        3PID changes, login-token generation (POST /login/get_token) as configured by
        login_via_existing_session.enabled; every known room version is stable and the
        configured default ("12" unless set) is offered; rooms are not forgotten on leave
        (m.forget_forced_upon_leave, v1.18); server admins get m.account_moderation (v1.18)."""
        requester = await auth.get_requester(request, allow_guest=True)
        caps = {
            "m.change_password": {"enabled": True},
            "m.room_versions": {
                "default": hs.config.default_room_version,
                "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
            },
            # v1.16 "m.profile_fields capability": every field may be changed (no allowed /
            # disallowed lists); m.set_displayname / m.set_avatar_url stay for older clients.
            "m.profile_fields": {"enabled": True},
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": login_tokens.enabled},
            "m.forget_forced_upon_leave": {"enabled": False},
        }
        account_moderation = await moderation.capability(requester)
        if account_moderation is not None:
            caps["m.account_moderation"] = account_moderation
        return 200, {"capabilities": caps}

    router.add_client("GET", "/capabilities", capabilities)
