"""GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
(client-server-api "Forming relationships between events", relations.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.indexer import HistoryIndexer
from homeserver.history.params import parse_dir, parse_position
from homeserver.history.relations import RelationsService
from homeserver.http.params import bool_arg, int_arg

DEFAULT_LIMIT = 5
MAX_LIMIT = 1000
PREFIX = "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}"


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    relations = hs.get(RelationsService)
    hs.get(HistoryIndexer)

    async def get_relations(request, roomId, eventId, relType=None, eventType=None):
        """GET .../relations/{eventId}[/{relType}[/{eventType}]]: the child events of an event,
        newest first unless ``dir=f``, paged with ``from``/``to``/``limit``; ``recurse=true``
        follows relations of relations (``recursion_depth`` says how deep). 404 when the parent
        is unknown or hidden from the user; 403 when the user may not read the room."""
        requester = await auth.get_requester(request, allow_guest=True)
        body = await relations.get_relations(
            requester.user_id, roomId, eventId, rel_type=relType or None, event_type=eventType or None,
            from_pos=parse_position(request.arg("from"), "from"), to_pos=parse_position(request.arg("to"), "to"),
            backwards=parse_dir(request.arg("dir")),
            limit=int_arg(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
            recurse=bool_arg(request, "recurse", None), device_id=requester.device_id)
        return 200, body

    router.add("GET", PREFIX, get_relations, "client")
    router.add("GET", PREFIX + "/{relType}", get_relations, "client")
    router.add("GET", PREFIX + "/{relType}/{eventType}", get_relations, "client")
