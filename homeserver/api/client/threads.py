"""GET /_matrix/client/v1/rooms/{roomId}/threads (modules/threading.md "Querying threads in a room",
threads_list.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.indexer import HistoryIndexer
from homeserver.history.params import parse_position
from homeserver.history.relations import RelationsService
from homeserver.http.errors import invalid_param
from homeserver.http.params import int_arg

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    relations = hs.get(RelationsService)
    hs.get(HistoryIndexer)

    async def get_threads(request, roomId):
        """GET /rooms/{roomId}/threads: thread roots by latest activity, with their m.thread
        aggregation; ``include=participated`` keeps the threads the user started or replied to.
        403 when the user may not read the room; 400 for a bad ``include``, ``from`` or ``limit``."""
        requester = await auth.get_requester(request, allow_guest=True)
        include = request.arg("include", "all")
        if include not in ("all", "participated"):
            raise invalid_param("include must be 'all' or 'participated'")
        body = await relations.get_threads(
            requester.user_id, roomId, participated_only=include == "participated",
            from_pos=parse_position(request.arg("from"), "from"),
            limit=int_arg(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT) or DEFAULT_LIMIT,
            device_id=requester.device_id)
        return 200, body

    router.add("GET", "/_matrix/client/v1/rooms/{roomId}/threads", get_threads, "client")
