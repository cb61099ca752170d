"""User directory search (client-server-api "User Directory", users.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.directory.user_directory import UserDirectoryService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    service = hs.get(UserDirectoryService)

    async def search(request):
        """POST /_matrix/client/v3/user_directory/search: users sharing a room with the caller or in
        public rooms whose ID or display name contains search_term; limit (default 10), limited."""
        requester = await auth.get_requester(request)
        body = request.json()
        return 200, await service.search(requester, body.get("search_term"), body.get("limit"))

    router.add_client("POST", "/user_directory/search", search)
