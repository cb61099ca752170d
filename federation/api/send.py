"""``PUT /_matrix/federation/v1/send/{txnId}`` (server-server-api.md "Transactions", transactions.yaml)."""
from __future__ import annotations

from homeserver.http.errors import bad_json

from ..handlers.transactions import TransactionHandler
from .common import origin_of


def register_routes(hs, router) -> None:
    async def send_transaction(request, txnId: str):
        """PUT /_matrix/federation/v1/send/{txnId}: PDUs and EDUs pushed by ``origin``; answered
        with ``{"pdus": {event_id: {} | {"error"}}}``, the same answer for a repeated txnId."""
        origin = await origin_of(hs, request)
        body = request.json()
        if "origin" in body and not isinstance(body["origin"], str):
            raise bad_json("origin must be a string")
        return 200, await hs.get(TransactionHandler).on_send(origin, txnId, body)

    router.add("PUT", "/_matrix/federation/v1/send/{txnId}", send_transaction, "federation")
