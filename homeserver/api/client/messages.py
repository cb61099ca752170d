"""GET /_matrix/client/v3/rooms/{roomId}/messages (client-server-api "Getting events for a room",
message_pagination.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.indexer import HistoryIndexer
from homeserver.history.messages import MessagesService
from homeserver.history.params import parse_dir, parse_filter_json, parse_position
from homeserver.http.params import int_arg

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    messages = hs.get(MessagesService)
    hs.get(HistoryIndexer)  # relations and search are indexed from the first event on

    async def get_messages(request, roomId):
        """GET /rooms/{roomId}/messages: a page of the room's history in ``dir`` order from
        ``from`` (default: the end for ``b``, the start for ``f``) up to ``to``, at most
        ``limit`` events passing ``filter``. 403 M_FORBIDDEN when the user may not read the room;
        400 M_INVALID_PARAM for a bad token, direction or limit."""
        requester = await auth.get_requester(request, allow_guest=True)
        from_text = request.arg("from")
        body = await messages.get_messages(
            requester.user_id, roomId,
            from_pos=parse_position(from_text, "from"), from_text=from_text,
            to_pos=parse_position(request.arg("to"), "to"), backwards=parse_dir(request.arg("dir")),
            limit=int_arg(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
            event_filter=parse_filter_json(request.arg("filter")), device_id=requester.device_id)
        return 200, body

    router.add_client("GET", "/rooms/{roomId}/messages", get_messages)
