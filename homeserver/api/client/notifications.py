"""Notifications (client-server-api/modules/push.md "Listing Notifications", notifications.yaml),
and the start of push gateway delivery (homeserver/push/pusher_pool.py)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.http.errors import invalid_param
from homeserver.push.pusher_pool import NotificationsService, PusherPool


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    notifications = hs.get(NotificationsService)
    pool = hs.get(PusherPool)  # registers its hooks with the pipeline, receipts and accounts
    hs.on_start(pool.start)

    async def get_notifications(request):
        """GET /_matrix/client/v3/notifications?from&limit&only: the events the user was notified
        about, newest first, each with its push actions, whether a read receipt has passed it
        and when it arrived; ``only=highlight`` keeps those with the highlight tweak; 400
        M_INVALID_PARAM for a bad ``from`` or ``limit``."""
        requester = await auth.get_requester(request)
        limit_arg = request.arg("limit")
        limit = NotificationsService.DEFAULT_LIMIT
        if limit_arg is not None:
            try:
                limit = int(limit_arg)
            except ValueError:
                raise invalid_param("'limit' must be an integer") from None
            if limit < 0:
                raise invalid_param("'limit' must not be negative")
        body = await notifications.get_notifications(requester.user_id, requester.device_id, request.arg("from"),
                                                     limit, request.arg("only"))
        return 200, body

    router.add_client("GET", "/notifications", get_notifications)
