"""Deprecated GET /events and GET /initialSync (old_sync.yaml), served from /sync."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.api.client.sync import parse_since
from homeserver.client.filtering import SyncFilter
from homeserver.http.errors import invalid_param
from homeserver.http.params import bool_arg, int_arg
from homeserver.sync import legacy
from homeserver.sync.service import SyncService

DEFAULT_EVENTS_TIMEOUT_MS = 30_000


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    sync = hs.get(SyncService)

    async def get_events(request):
        """GET /_matrix/client/v3/events: events after ``from`` (default: now), waiting up to
        ``timeout`` ms; ``{"start", "end", "chunk"}``."""
        requester = await auth.get_requester(request, allow_guest=True)
        since = parse_since(request.arg("from")) or sync.current_token()
        timeout = int_arg(request, "timeout", DEFAULT_EVENTS_TIMEOUT_MS)
        response = await sync.sync(requester, SyncFilter(), since, timeout_ms=timeout)
        return 200, {"start": str(since), "end": response["next_batch"], "chunk": legacy.events_chunk(response)}

    async def get_initial_sync(request):
        """GET /_matrix/client/v3/initialSync: every room with its latest ``limit`` messages and
        current state (left rooms too with ``archived=true``)."""
        requester = await auth.get_requester(request, allow_guest=True)
        limit = int_arg(request, "limit", 10)
        if limit > 2**53 - 1:  # the integer range of appendices.md "Canonical JSON"
            raise invalid_param("Query parameter 'limit' is too large")
        archived = bool_arg(request, "archived")
        response = await sync.sync(requester, legacy.legacy_filter(limit, archived), None, use_state_after=True)
        return 200, legacy.initial_sync_body(response)

    router.add_client("GET", "/events", get_events)
    router.add_client("GET", "/initialSync", get_initial_sync)
