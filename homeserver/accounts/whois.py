"""What the server knows of a user's sessions (client-server-api "Server administration",
admin.yaml ``GET /admin/whois/{userId}``).

uzel keeps one connection record per device: the last time, IP address and user agent seen with
any of its access tokens (written in batches by AuthService's last-seen writer; sightings not yet
written are read from its pending batch). So each device has one session whose ``connections``
list holds that record, or is empty for a device never seen since it was created.
"""
from __future__ import annotations

from homeserver.http.errors import MatrixError, forbidden, invalid_param
from homeserver.protocol import ids
from homeserver.storage.accounts_store import AccountsStore

from .auth import AuthService, Requester


class WhoisService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(AccountsStore)
        self.auth = hs.get(AuthService)

    async def whois(self, requester: Requester, user_id: str) -> dict:
        """The admin.yaml body ``{user_id, devices: {device_id: {sessions: [{connections}]}}}``.

        Allowed to the user themself and to server admins ("This API may be restricted to only be
        called by the user being looked up, or by a server admin"), else 403 M_FORBIDDEN; the
        permission is checked before anything about the account is looked up. A user ID of
        another server is 400 M_INVALID_PARAM. A local ID without an account has no devices
        (Synapse answers the same)."""
        if not ids.is_valid_user_id(user_id):
            raise invalid_param(f"Invalid user ID {user_id!r}")
        if user_id != requester.user_id and not await self.auth.is_server_admin(requester.user_id):
            raise forbidden("You are not a server admin")
        if ids.get_domain(user_id) != self.hs.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "Can only whois a local user")
        devices = {}
        for d in await self.store.get_devices(user_id):
            ts, ip, user_agent = d.last_seen_ts, d.last_seen_ip, d.last_seen_user_agent
            pending = self.auth.pending_last_seen.get((d.user_id, d.device_id))
            if pending is not None:
                ts, ip, user_agent = pending
            connections = []
            if ts is not None:
                connection: dict = {"ip": ip, "last_seen": ts}
                if user_agent is not None:
                    connection["user_agent"] = user_agent
                connections.append(connection)
            devices[d.device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}
