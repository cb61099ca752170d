"""GET /_matrix/client/v3/rooms/{roomId}/context/{eventId} (client-server-api "Getting events for a
room", event_context.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.indexer import HistoryIndexer
from homeserver.history.messages import MessagesService
from homeserver.history.params import parse_filter_json
from homeserver.http.params import int_arg

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    messages = hs.get(MessagesService)
    hs.get(HistoryIndexer)

    async def get_context(request, roomId, eventId):
        """GET /rooms/{roomId}/context/{eventId}: the event, ⌊limit/2⌋ events before it and the
        rest after (each list passing ``filter``), /messages tokens and the state at the last
        event returned. 404 when the event is unknown or hidden from the user; 403 when the user
        may not read the room."""
        requester = await auth.get_requester(request, allow_guest=True)
        body = await messages.get_context(
            requester.user_id, roomId, eventId,
            limit=int_arg(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
            event_filter=parse_filter_json(request.arg("filter")), device_id=requester.device_id)
        return 200, body

    router.add_client("GET", "/rooms/{roomId}/context/{eventId}", get_context)
