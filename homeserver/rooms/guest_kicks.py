"""Guests leave rooms that stop allowing them (modules/guest_access.md "Server behaviour": guests
may only be in rooms whose ``m.room.guest_access`` is ``can_join``).

As Synapse does it: when a room's ``m.room.guest_access`` becomes anything but ``can_join`` (the
event is sent here or arrives over federation), every local guest account joined to or invited
into the room leaves it by its own ``m.room.member`` leave with content ``{"membership": "leave",
"kind": "guest"}``; no power level is needed, and each server deals with its own guests.

Wiring: a persist hook of the pipeline (``RoomEventService.persist_hooks``) notices the
guest_access event and adds an after-commit callback to its persist transaction; the leaves are
sent from the reactor once the event is committed (never under the room lock the hook runs in).
They are judged on the room's current state then, so a stale guest_access event changes nothing.
"""
from __future__ import annotations

import logging

from twisted.internet import defer

from homeserver.accounts.auth import Requester
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.storage.accounts_store import AccountsStore
from homeserver.storage.events_store import EventsStore

from .pipeline import RoomEventService

logger = logging.getLogger(__name__)

GUEST_ACCESS = "m.room.guest_access"
CAN_JOIN = "can_join"


def forbids_guests(content) -> bool:
    """Whether an ``m.room.guest_access`` content keeps guests out (anything but ``can_join``)."""
    return not isinstance(content, dict) or content.get("guest_access") != CAN_JOIN


class GuestAccessEnforcer:
    """Built once (``hs.get(GuestAccessEnforcer)``, by the membership service) and registered as
    a persist hook."""

    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.events.persist_hooks.append(self.persist_hook)

    async def persist_hook(self, event: Event, state_after):
        if event.type != GUEST_ACCESS or event.state_key != "" or not forbids_guests(event.content):
            return None
        room_id = event.room_id

        def write(txn, item) -> None:
            txn.call_after_commit(self._schedule, room_id)
        return write

    def _schedule(self, room_id: str) -> None:
        self.hs.reactor.callLater(0, self._run, room_id)

    def _run(self, room_id: str) -> defer.Deferred:
        d = defer.ensureDeferred(self.kick_guests(room_id))
        d.addErrback(lambda f: logger.error("removing guests from %s failed: %s", room_id, f.getTraceback()))
        return d

    async def kick_guests(self, room_id: str) -> list[str]:
        """Make every local guest joined to or invited into ``room_id`` leave it when its current
        guest_access forbids guests; returns the guests that left."""
        current = await self.events.get_current_state_event(room_id, GUEST_ACCESS)
        if current is not None and not forbids_guests(current.content):
            return []
        from .membership import MembershipService  # built after this class
        state = await self.events.get_current_state_ids(room_id)
        local = {sk: eid for (t, sk), eid in state.items()
                 if t == "m.room.member" and ids.domain_or_none(sk) == self.hs.hostname}
        members = await self.hs.get(EventsStore).get_events(list(local.values()))
        accounts = self.hs.get(AccountsStore)
        membership = self.hs.get(MembershipService)
        left = []
        for user_id, event_id in sorted(local.items()):
            ev = members.get(event_id)
            if ev is None or ev.membership not in ("join", "invite"):
                continue
            record = await accounts.get_user(user_id)
            if record is None or not record.is_guest:
                continue
            try:
                await membership.update_membership(Requester(user_id, None, None, is_guest=True), user_id, room_id,
                                                   "leave", extra_content={"kind": "guest"}, ratelimit=False)
                left.append(user_id)
            except Exception:
                logger.exception("guest %s could not leave %s", user_id, room_id)
        return left
