"""Login tokens minted by a signed-in user for another device (client-server-api "Login",
login_token.yaml ``POST /login/get_token``; capabilities "m.get_login_token").

Off unless ``login_via_existing_session.enabled`` (Synapse's config section). When on, the
endpoint re-asks for the password on every call (``require_ui_auth``, default true: "servers MUST
always re-prompt the user for verification") and is limited to one token per user per minute,
counted after user-interactive auth (the spec's "maximum of 1 request per minute"; Synapse's
limit). A token logs in once, with ``m.login.token``, within ``token_timeout``.
"""
from __future__ import annotations

from config.schema import LoginViaExistingSession, RatelimitSettings

from .auth import AuthService, Requester
from .ratelimit import Ratelimiter

RATE_LIMIT = RatelimitSettings(per_second=1 / 60, burst_count=1)


def login_via_existing_session(config) -> LoginViaExistingSession:
    """The config section, or its defaults (disabled) for configs built without it."""
    return getattr(config, "login_via_existing_session", None) or LoginViaExistingSession()


class LoginTokenIssuer:
    def __init__(self, hs):
        self.hs = hs
        self.settings = login_via_existing_session(hs.config)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def require_ui_auth(self) -> bool:
        return self.settings.require_ui_auth

    async def issue(self, requester: Requester) -> dict:
        """``{"login_token", "expires_in_ms"}`` for the requester (429 when asked too often)."""
        self.hs.get(Ratelimiter).check("login_via_existing_session", requester.user_id.lower(),
                                       settings=RATE_LIMIT, requester=requester)
        lifetime = self.settings.token_timeout_ms
        token = await self.hs.get(AuthService).create_login_token(requester.user_id, lifetime)
        return {"login_token": token, "expires_in_ms": lifetime}
