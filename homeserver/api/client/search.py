"""POST /_matrix/client/v3/search (modules/search.md, search.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.indexer import HistoryIndexer
from homeserver.history.search import SearchService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    search = hs.get(SearchService)
    hs.get(HistoryIndexer)

    async def post_search(request):
        """POST /search: full-text search of the ``room_events`` category over the rooms the user
        is in or has left, with ranking or recency order, context, groups, state and
        ``next_batch`` pages. 400 for a malformed body or token."""
        requester = await auth.get_requester(request)
        body = await search.search(requester.user_id, request.json(), request.arg("next_batch"),
                                   device_id=requester.device_id)
        return 200, body

    router.add_client("POST", "/search", post_search)
