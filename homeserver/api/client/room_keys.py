"""Server-side key backup endpoints (end_to_end_encryption.md "Server-side key backups";
key_backup.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.e2ee.key_backup import KeyBackupService, parse_key_data, parse_room_sessions
from homeserver.http.errors import bad_json


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    backup = hs.get(KeyBackupService)

    async def create_version(request):
        """POST /_matrix/client/v3/room_keys/version: a new backup version; returns its id."""
        requester = await auth.get_requester(request)
        return 200, {"version": await backup.create_version(requester.user_id, request.json())}

    async def get_version(request, version=""):
        """GET /_matrix/client/v3/room_keys/version[/{version}]: algorithm, auth_data, count and
        etag of the current (or given) backup; 404 if there is none."""
        requester = await auth.get_requester(request)
        return 200, await backup.get_version(requester.user_id, version or None)

    async def update_version(request, version):
        """PUT /_matrix/client/v3/room_keys/version/{version}: replace auth_data (algorithm must
        stay the same)."""
        requester = await auth.get_requester(request)
        await backup.update_version(requester.user_id, version, request.json())
        return 200, {}

    async def delete_version(request, version=""):
        """DELETE /_matrix/client/v3/room_keys/version/{version}: delete a backup and its keys;
        succeeds again for an already deleted version."""
        requester = await auth.get_requester(request)
        await backup.delete_version(requester.user_id, version or None)
        return 200, {}

    async def put_keys(request, roomId="", sessionId=""):
        """PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=: store keys in
        the current backup (M_WRONG_ROOM_KEYS_VERSION for another version), keeping the better
        copy of each session key; returns etag and count."""
        requester = await auth.get_requester(request)
        body = request.json()
        if sessionId:
            keys = [(roomId, sessionId, parse_key_data(body, "body"))]
        elif roomId:
            keys = parse_room_sessions(body, roomId)
        else:
            rooms = body.get("rooms")
            if not isinstance(rooms, dict):
                raise bad_json("'rooms' must be an object")
            keys = [k for room_id, sessions in rooms.items() for k in parse_room_sessions(sessions, room_id)]
        return 200, await backup.put_keys(requester.user_id, request.arg("version"), keys)

    async def get_keys(request, roomId="", sessionId=""):
        """GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=: the backed-up
        keys of a backup, a room or one session."""
        requester = await auth.get_requester(request)
        return 200, await backup.get_keys(requester.user_id, request.arg("version"), roomId or None,
                                          sessionId or None)

    async def delete_keys(request, roomId="", sessionId=""):
        """DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=: delete
        backed-up keys; returns the new etag and count."""
        requester = await auth.get_requester(request)
        return 200, await backup.delete_keys(requester.user_id, request.arg("version"), roomId or None,
                                             sessionId or None)

    router.add_client("POST", "/room_keys/version", create_version)
    router.add_client("GET", "/room_keys/version", get_version)
    router.add_client("DELETE", "/room_keys/version", delete_version)
    router.add_client("GET", "/room_keys/version/{version}", get_version)
    router.add_client("PUT", "/room_keys/version/{version}", update_version)
    router.add_client("DELETE", "/room_keys/version/{version}", delete_version)
    for method, handler in (("PUT", put_keys), ("GET", get_keys), ("DELETE", delete_keys)):
        router.add_client(method, "/room_keys/keys", handler)
        router.add_client(method, "/room_keys/keys/{roomId}", handler)
        router.add_client(method, "/room_keys/keys/{roomId}/{sessionId}", handler)
