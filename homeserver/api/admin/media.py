"""Media operations for server admins, with Synapse's admin API routes and answers
(Synapse docs, "Querying media" / "Quarantine media" / "Delete local media" / "Purge Remote Media
API"). Every route answers 403 M_FORBIDDEN to users who are not server admins.

  POST   /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}     → {}
  POST   /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}   → {}
  DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}                → {"deleted_media": [id], "total": 1}
  POST   /_synapse/admin/v1/media/delete?before_ts=&size_gt=&keep_profiles=
         (and the older /_synapse/admin/v1/media/{serverName}/delete)   → {"deleted_media": [...], "total": n}
  POST   /_synapse/admin/v1/purge_media_cache?before_ts=               → {"deleted": n}

Quarantined media is answered 404 to everyone, and quarantining one item quarantines every item with
the same content. Not provided: quarantining all media of a room or of a user.
"""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.http.errors import MatrixError, forbidden, invalid_param, missing_param, not_found
from homeserver.http.params import bool_arg
from homeserver.media.repository import MediaRepository, check_mxc_parts

ADMIN_V1 = "/_synapse/admin/v1"
# Synapse refuses before_ts values that look like seconds, not milliseconds (before 1970-12-12
# when read as ms): "the year 1970".
_MIN_PLAUSIBLE_TS_MS = 30_000_000_000


def register_routes(hs, router) -> None:
    if not getattr(hs.config, "enable_media_repo", True):
        return
    auth = hs.get(AuthService)

    def repo() -> MediaRepository:
        return hs.get(MediaRepository)

    async def admin(request) -> str:
        requester = await auth.get_requester(request)
        if not await auth.is_server_admin(requester.user_id):
            raise forbidden("You are not a server admin")
        return requester.user_id

    async def quarantine(request, serverName, mediaId):
        """POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}: the media (and every
        item with the same content) is answered 404 from now on."""
        admin_id = await admin(request)
        await repo().quarantine(serverName, mediaId, admin_id)
        return 200, {}

    async def unquarantine(request, serverName, mediaId):
        """POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}: serve it again."""
        await admin(request)
        await repo().quarantine(serverName, mediaId, None)
        return 200, {}

    async def delete_one(request, serverName, mediaId):
        """DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}: delete one local media item,
        its thumbnails and files. Remote media → 400; unknown → 404."""
        await admin(request)
        check_mxc_parts(serverName, mediaId)
        if serverName != hs.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
        deleted = await repo().delete_local_media([mediaId])
        if not deleted:
            raise not_found("Unknown media")
        return 200, {"deleted_media": deleted, "total": len(deleted)}

    async def delete_by_age(request, serverName=None):
        """POST /_synapse/admin/v1/media/delete?before_ts=&size_gt=&keep_profiles=: delete local
        media last accessed before before_ts (ms) and larger than size_gt bytes, except
        quarantined media and (keep_profiles, default true) user and room avatars."""
        await admin(request)
        if serverName is not None and serverName != hs.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
        before_ts = _timestamp(request, "before_ts")
        size_gt = _non_negative(request, "size_gt", 0)
        keep_profiles = bool_arg(request, "keep_profiles", True)
        deleted = await repo().delete_old_local_media(before_ts, size_gt, keep_profiles)
        return 200, {"deleted_media": deleted, "total": len(deleted)}

    async def purge_media_cache(request):
        """POST /_synapse/admin/v1/purge_media_cache?before_ts=: forget cached remote media last
        accessed before before_ts (fetched again from its origin when asked for)."""
        await admin(request)
        return 200, {"deleted": await repo().purge_remote_media_cache(_timestamp(request, "before_ts"))}

    router.add("POST", f"{ADMIN_V1}/media/quarantine/{{serverName}}/{{mediaId}}", quarantine, "client")
    router.add("POST", f"{ADMIN_V1}/media/unquarantine/{{serverName}}/{{mediaId}}", unquarantine, "client")
    router.add("POST", f"{ADMIN_V1}/media/delete", delete_by_age, "client")
    router.add("POST", f"{ADMIN_V1}/media/{{serverName}}/delete", delete_by_age, "client")
    router.add("DELETE", f"{ADMIN_V1}/media/{{serverName}}/{{mediaId}}", delete_one, "client")
    router.add("POST", f"{ADMIN_V1}/purge_media_cache", purge_media_cache, "client")


def _non_negative(request, name: str, default: int | None) -> int:
    value = request.arg(name)
    if value is None:
        if default is None:
            raise missing_param(f"Missing integer query parameter {name}")
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 16:
        raise invalid_param(f"Query parameter {name} must be a non-negative integer")
    return int(value)


def _timestamp(request, name: str) -> int:
    ts = _non_negative(request, name, None)
    if ts < _MIN_PLAUSIBLE_TS_MS:
        raise invalid_param(f"Query parameter {name} you provided is from the year 1970. "
                            "Double check that you are providing a timestamp in milliseconds.")
    return ts
