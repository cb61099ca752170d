"""Queries between servers (server-server-api.md "Querying for information", query.yaml): room
aliases and profiles, answered for others and asked of others (the seams
``AliasService.remote_resolver`` and ``ProfileService.remote_profile_fetcher``)."""
from __future__ import annotations

import logging

from homeserver.client.profile import ProfileService
from homeserver.directory.aliases import AliasService
from homeserver.http.errors import MatrixError, invalid_param, not_found
from homeserver.protocol import ids

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"
QUERY_TIMEOUT_S = 15.0


class FederationQueryHandler:
    def __init__(self, hs):
        self.hs = hs

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    # --- answering ---------------------------------------------------------------------------------
    async def query_directory(self, alias: str | None) -> dict:
        """GET /query/directory?room_alias: ``{room_id, servers}`` for one of our aliases."""
        if not isinstance(alias, str) or not ids.is_valid_room_alias(alias):
            raise invalid_param("room_alias must be a room alias")
        aliases = self.hs.get(AliasService)
        if not aliases.is_local(alias):
            raise not_found("Room alias not found")
        found = await aliases.resolve_local(alias)
        if found is None:
            raise not_found("Room alias not found")
        room_id, servers = found
        return {"room_id": room_id, "servers": servers}

    async def query_profile(self, user_id: str | None, field: str | None) -> dict:
        """GET /query/profile?user_id&field: one field, or the whole profile, of a local user."""
        if not isinstance(user_id, str) or not ids.is_valid_user_id(user_id):
            raise invalid_param("user_id must be a user ID")
        if ids.get_domain(user_id) != self.hs.hostname:
            raise invalid_param("The user is not on this server")
        profile = await self.hs.get(ProfileService).get_profile(user_id)
        if field is None:
            return profile
        # An existing user without this field: an empty answer, as Synapse gives (null there).
        return {field: profile[field]} if field in profile else {}

    # --- asking (seams) ----------------------------------------------------------------------------
    async def resolve_remote_alias(self, alias: str) -> tuple[str, list[str]] | None:
        from ..client import FederationError, FederationUnreachable
        server = ids.get_domain(alias)
        try:
            resp = await self.client.get_json(server, f"{FED_V1}/query/directory", {"room_alias": alias},
                                              timeout_s=QUERY_TIMEOUT_S)
        except FederationError as e:
            if e.code == 404:
                return None
            raise MatrixError(502, "M_UNKNOWN", f"{server} could not resolve the alias: {e.msg}") from None
        except FederationUnreachable as e:
            logger.info("alias %s: %s unreachable (%s)", alias, server, e.reason)
            return None  # nobody to ask: treated as unknown (404)
        room_id, servers = resp.get("room_id"), resp.get("servers")
        if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id):
            return None
        servers = [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []
        if server not in servers:
            servers.append(server)
        return room_id, servers

    async def fetch_remote_profile(self, user_id: str) -> dict | None:
        from ..client import FederationError, FederationUnreachable
        server = ids.get_domain(user_id)
        try:
            resp = await self.client.get_json(server, f"{FED_V1}/query/profile", {"user_id": user_id},
                                              timeout_s=QUERY_TIMEOUT_S)
        except FederationError as e:
            if e.code in (400, 403, 404):
                return None
            raise MatrixError(502, "M_UNKNOWN", f"{server} could not be asked: {e.msg}") from None
        except FederationUnreachable as e:
            logger.info("profile of %s: %s unreachable (%s)", user_id, server, e.reason)
            return None
        return {k: v for k, v in resp.items() if isinstance(k, str)}
