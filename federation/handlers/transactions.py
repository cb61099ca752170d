"""Inbound transactions: ``PUT /_matrix/federation/v1/send/{txnId}`` (transactions.yaml).

``hs.get(TransactionHandler).on_send(origin, txn_id, body) -> response``:

* idempotent per (origin, txn_id): a transaction seen before gets the stored answer; one being
  processed right now is awaited, not processed twice;
* at most 50 PDUs and 100 EDUs (server-server-api.md "Transactions"), else 400;
* each PDU: room known and its version (unknown rooms: dropped without an entry, as the spec
  leaves them), format and signatures (:meth:`FederationEventHandler.check_pdu`), then
  :meth:`FederationEventHandler.receive_pdu`; the answer maps each event ID to ``{}`` or
  ``{"error": ...}``;
* PDUs of one room are processed in the order received, rooms concurrently;
* the room's server ACL is applied to each PDU (denied: an error entry, not processed);
* EDUs go to the handler registered for their type (:meth:`register_edu_handler`); unknown types
  are ignored. EDU failures never fail the transaction.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from twisted.internet import defer

from homeserver.http.errors import MatrixError, bad_json
from homeserver.rooms.pipeline import RoomEventService

from ..transactions_store import TransactionsStore
from .acl import ServerAclChecker
from .events import FederationEventHandler, PduRejected

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100

EduHandler = Callable[[str, dict], Awaitable[None]]


class TransactionHandler:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(TransactionsStore)
        self.events = hs.get(RoomEventService)
        self.fed_events = hs.get(FederationEventHandler)
        self._inflight: dict[tuple[str, str], list[defer.Deferred]] = {}
        self.edu_handlers: dict[str, EduHandler] = {}

    def register_edu_handler(self, edu_type: str, handler: EduHandler) -> None:
        self.edu_handlers[edu_type] = handler

    async def on_send(self, origin: str, txn_id: str, body: dict) -> dict:
        key = (origin, txn_id)
        waiting = self._inflight.get(key)
        if waiting is not None:
            d: defer.Deferred = defer.Deferred()
            waiting.append(d)
            return await d
        stored = await self.store.get_received_txn(origin, txn_id)
        if stored is not None:
            return stored
        self._inflight[key] = waiters = []
        try:
            response = await self._process(origin, body)
            await self.store.store_received_txn(origin, txn_id, response, self.hs.clock_ms())
        except BaseException as e:
            del self._inflight[key]
            for w in waiters:
                w.errback(e)
            raise
        del self._inflight[key]
        for w in waiters:
            w.callback(response)
        return response

    async def _process(self, origin: str, body: dict) -> dict:
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list):
            raise bad_json("pdus must be a list")
        if edus is None:
            edus = []
        if not isinstance(edus, list):
            raise bad_json("edus must be a list")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(400, "M_BAD_JSON",
                              f"A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")
        by_room: dict[str, list] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
            if not isinstance(room_id, str):
                logger.info("dropping a PDU from %s without room_id", origin)
                continue
            by_room.setdefault(room_id, []).append(pdu)
        results: dict[str, dict] = {}
        await defer.gatherResults(
            [defer.ensureDeferred(self._room_pdus(origin, room_id, items, results))
             for room_id, items in by_room.items()], consumeErrors=True)
        for edu in edus:
            await self._edu(origin, edu)
        return {"pdus": results}

    async def _room_pdus(self, origin: str, room_id: str, pdus: list, results: dict) -> None:
        rv = await self.events.get_room_version(room_id)
        if rv is None:
            logger.info("dropping %d PDUs from %s for unknown room %s", len(pdus), origin, room_id)
            return
        if not await self.hs.get(ServerAclChecker).is_allowed(origin, room_id):
            for pdu in pdus:  # "Server Access Control Lists (ACLs)": ignored, with an error each
                event_id = _event_id_of(pdu, rv)
                if event_id:
                    results[event_id] = {"error": "Server is banned from this room"}
            return
        for pdu in pdus:
            event_id = None
            try:
                event = await self.fed_events.check_pdu(pdu, rv, room_id=room_id)
                event_id = event.event_id
                stored = await self.fed_events.receive_pdu(origin, event)
                if stored.rejected_reason:
                    results[event_id] = {"error": f"Event rejected: {stored.rejected_reason}"}
                else:
                    results[event_id] = {}
            except PduRejected as e:
                logger.info("PDU from %s refused: %s", origin, e)
                event_id = event_id or _event_id_of(pdu, rv)
                if event_id:
                    results[event_id] = {"error": str(e)}
            except MatrixError as e:
                event_id = event_id or _event_id_of(pdu, rv)
                if event_id:
                    results[event_id] = {"error": e.msg}
            except Exception as e:
                logger.exception("processing a PDU from %s failed", origin)
                event_id = event_id or _event_id_of(pdu, rv)
                if event_id:
                    results[event_id] = {"error": f"Internal error: {type(e).__name__}"}

    async def _edu(self, origin: str, edu) -> None:
        if not isinstance(edu, dict):
            return
        edu_type = edu.get("edu_type")
        content = edu.get("content")
        handler = self.edu_handlers.get(edu_type) if isinstance(edu_type, str) else None
        if handler is None or not isinstance(content, dict):
            return
        try:
            await handler(origin, content)
        except MatrixError as e:
            logger.info("EDU %s from %s refused: %s", edu_type, origin, e.msg)
        except Exception:
            logger.exception("handling EDU %s from %s failed", edu_type, origin)


def _event_id_of(pdu, rv) -> str | None:
    """The event ID of a PDU that failed its checks, when it can still be computed."""
    from homeserver.protocol.events import Event
    try:
        return Event(pdu, rv).event_id
    except Exception:
        return None
