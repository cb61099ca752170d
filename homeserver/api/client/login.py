"""Login and token refresh (client-server-api "Login", login.yaml, refresh.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.login import LoginService
from homeserver.http.errors import missing_param


def register_routes(hs, router) -> None:
    login_service = hs.get(LoginService)
    auth = hs.get(AuthService)

    async def get_login_flows(request):
        """GET /_matrix/client/v3/login: the login types uzel accepts."""
        return 200, {"flows": login_service.login_flows()}

    async def login(request):
        """POST /_matrix/client/v3/login: m.login.password (m.id.user identifier or legacy
        ``user``) or m.login.token; 403 M_FORBIDDEN on bad credentials."""
        return 200, await login_service.login(request.json(), request.client_ip, request)

    async def refresh(request):
        """POST /_matrix/client/v3/refresh: rotate a refresh token; unknown or revoked → 401
        M_UNKNOWN_TOKEN (soft_logout false)."""
        token = request.json().get("refresh_token")
        if not isinstance(token, str):
            raise missing_param("Missing 'refresh_token'")
        return 200, await auth.refresh(token)

    router.add_client("GET", "/login", get_login_flows)
    router.add_client("POST", "/login", login)
    router.add_client("POST", "/refresh", refresh, versions=("v3", "v1"))
