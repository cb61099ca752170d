"""GET /sync (client-server-api "Syncing", sync.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.filters import FilterService
from homeserver.http.errors import invalid_param
from homeserver.http.params import bool_arg, int_arg
from homeserver.push.notification_counts import NotificationCounter
from homeserver.sync.service import SyncService
from homeserver.sync.tokens import SyncToken, TokenError

PRESENCE_VALUES = ("offline", "online", "unavailable")


UNSTABLE_USE_STATE_AFTER = "org.matrix.msc4222.use_state_after"
UNSTABLE_STATE_AFTER = "org.matrix.msc4222.state_after"


def unstable_state_after_names(body: dict) -> dict:
    """Rename ``state_after`` to MSC4222's unstable ``org.matrix.msc4222.state_after`` in the
    joined and left rooms, for clients that asked with the unstable query parameter (matrix-js-sdk
    sends only ``org.matrix.msc4222.use_state_after`` and reads only the unstable field)."""
    rooms = body.get("rooms") or {}
    for section in ("join", "leave"):
        for room in (rooms.get(section) or {}).values():
            if "state_after" in room:
                room[UNSTABLE_STATE_AFTER] = room.pop("state_after")
    return body


def parse_since(value: str | None) -> SyncToken | None:
    """The ``since``/``from`` token: 400 M_INVALID_PARAM when it is not one of ours."""
    if value is None or value == "":
        return None
    try:
        return SyncToken.parse(value)
    except TokenError as e:
        raise invalid_param(f"Invalid stream token {value!r}: {e}") from None


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    filters = hs.get(FilterService)
    sync = hs.get(SyncService)
    hs.get(NotificationCounter)  # registers its persist hook with the pipeline

    async def get_sync(request):
        """GET /_matrix/client/v3/sync: the initial snapshot (no ``since``) or what changed since
        ``since``, long-polling up to ``timeout`` ms; ``filter`` is a filter ID or inline JSON."""
        requester = await auth.get_requester(request, allow_guest=True)
        since = parse_since(request.arg("since"))
        full_state = bool_arg(request, "full_state")
        stable_state_after = bool_arg(request, "use_state_after")
        unstable_state_after = bool_arg(request, UNSTABLE_USE_STATE_AFTER)
        use_state_after = stable_state_after or unstable_state_after
        timeout = int_arg(request, "timeout", 0)
        set_presence = request.arg("set_presence")
        if set_presence is not None and set_presence not in PRESENCE_VALUES:
            raise invalid_param(f"set_presence must be one of {', '.join(PRESENCE_VALUES)}")
        sync_filter = await filters.resolve_sync_filter(requester.user_id, request.arg("filter"))
        body = await sync.sync(requester, sync_filter, since, full_state=full_state, timeout_ms=timeout,
                               set_presence=set_presence, use_state_after=use_state_after)
        if unstable_state_after and not stable_state_after:
            body = unstable_state_after_names(body)
        return 200, body

    router.add_client("GET", "/sync", get_sync)
