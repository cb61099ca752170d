"""Profiles (client-server-api "Profiles", profile.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.profile import ProfileService, check_key_name
from homeserver.http.errors import bad_json, missing_param


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    profiles = hs.get(ProfileService)
    require_auth = bool(getattr(hs.config, "require_auth_for_profile_requests", False))

    async def _maybe_auth(request):
        if require_auth:
            await auth.get_requester(request, allow_guest=True)

    async def get_profile(request, userId):
        """GET /_matrix/client/v3/profile/{userId}: every field; 404 M_NOT_FOUND for unknown users."""
        await _maybe_auth(request)
        return 200, await profiles.get_profile(userId)

    async def get_field(request, userId, keyName):
        """GET /_matrix/client/v3/profile/{userId}/{keyName}: ``{keyName: value}``; 404 if unset."""
        await _maybe_auth(request)
        return 200, {keyName: await profiles.get_field(userId, keyName)}

    async def put_field(request, userId, keyName):
        """PUT /_matrix/client/v3/profile/{userId}/{keyName}: body ``{keyName: value}`` (exactly
        one property); 403 for other users (guests: displayname only), 400 M_KEY_TOO_LARGE /
        M_PROFILE_TOO_LARGE / M_MISSING_PARAM / M_BAD_JSON."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_key_name(keyName)
        body = request.json()
        if keyName not in body:
            raise missing_param(f"Missing '{keyName}'")
        if len(body) != 1:
            raise bad_json(f"The body must contain only '{keyName}'")
        await profiles.set_field(requester, userId, keyName, body[keyName])
        return 200, {}

    async def delete_field(request, userId, keyName):
        """DELETE /_matrix/client/v3/profile/{userId}/{keyName}: 200 whether or not it was set."""
        requester = await auth.get_requester(request, allow_guest=True)
        await profiles.delete_field(requester, userId, keyName)
        return 200, {}

    router.add_client("GET", "/profile/{userId}", get_profile)
    router.add_client("GET", "/profile/{userId}/{keyName}", get_field)
    router.add_client("PUT", "/profile/{userId}/{keyName}", put_field)
    router.add_client("DELETE", "/profile/{userId}/{keyName}", delete_field)
