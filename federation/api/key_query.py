"""Notary endpoints: ``GET /_matrix/key/v2/query/{serverName}`` and ``POST /_matrix/key/v2/query``.

server-server-api.md "Querying Keys Through Another Server" (keys_query.yaml): answer with the
queried servers' key documents, from cache or freshly fetched, each additionally signed by us.
Servers that cannot be reached and have nothing cached are left out.
"""
from __future__ import annotations

from homeserver.http.errors import bad_json, invalid_param
from homeserver.protocol import signing
from homeserver.protocol.ids import is_valid_server_name

from ..keyring import Keyring

MAX_SERVERS_PER_QUERY = 100


def _timestamp(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_param(f"{what} must be an integer")
    return value


def register_routes(hs, router) -> None:
    async def signed_documents(server_name: str, key_ids: list[str], minimum: int) -> list[dict]:
        docs = await hs.get(Keyring).notary_key_documents(server_name, key_ids, minimum)
        return [signing.sign_json(doc, hs.hostname, hs.signing_key) for doc in docs]

    async def query_one(request, serverName: str):
        """GET /_matrix/key/v2/query/{serverName}?minimum_valid_until_ts=… (keys_query.yaml)."""
        raw = request.arg("minimum_valid_until_ts")
        minimum = hs.clock_ms()
        if raw is not None:
            try:
                minimum = int(raw)
            except ValueError:
                raise invalid_param("minimum_valid_until_ts must be an integer") from None
        if not is_valid_server_name(serverName):
            return 200, {"server_keys": []}
        return 200, {"server_keys": await signed_documents(serverName, [], minimum)}

    async def query_many(request):
        """POST /_matrix/key/v2/query with ``{"server_keys": {server: {key_id: criteria}}}``."""
        body = request.json()
        query = body.get("server_keys")
        if not isinstance(query, dict):
            raise bad_json("server_keys must be an object")
        if len(query) > MAX_SERVERS_PER_QUERY:
            raise invalid_param(f"at most {MAX_SERVERS_PER_QUERY} servers per query")
        now = hs.clock_ms()
        out: list[dict] = []
        for server_name, criteria in query.items():
            if not isinstance(criteria, dict):
                raise bad_json(f"server_keys.{server_name} must be an object")
            given = []
            for key_id, crit in criteria.items():
                if not isinstance(crit, dict):
                    raise bad_json(f"server_keys.{server_name}.{key_id} must be an object")
                if "minimum_valid_until_ts" in crit:
                    given.append(_timestamp(crit["minimum_valid_until_ts"], "minimum_valid_until_ts"))
            minimum = max(given) if given else now
            if not is_valid_server_name(server_name):
                continue
            out.extend(await signed_documents(server_name, list(criteria), minimum))
        return 200, {"server_keys": out}

    router.add("GET", "/_matrix/key/v2/query/{serverName}", query_one, "keys")
    router.add("POST", "/_matrix/key/v2/query", query_many, "keys")
