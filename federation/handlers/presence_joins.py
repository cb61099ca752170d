"""Presence for servers that newly share a room (server-server-api.md "Presence"; Synapse's
presence handler does the same on membership changes).

An ``m.presence`` EDU only goes to servers sharing a room with the user when the presence
changes (federation/handlers/edus.py), so a server that starts sharing a room would know nothing
until the next change. On a join (membership becoming ``join``, the event sent here or received):

* a remote user joins and their server had no other member joined to the room: the current
  presence of the local users joined to the room is sent to that server (without offline users
  inactive for a week and without a status message, as Synapse);
* a local user joins: their presence goes to the servers in the room that did not already share
  another room with them.

Only with presence enabled. Wiring: a pipeline persist hook notes the join (and the membership
before it) and adds an after-commit callback, which runs the rest on the next reactor turn (once
the pipeline's member caches include the join). The joining
server may still be persisting the room when the first EDU arrives (a remote join is committed
here before the joining server stores the room) and would drop it, so updates sent for a remote
join are sent again after :data:`RESEND_AFTER_S`.
"""
from __future__ import annotations

import logging

from twisted.internet import defer

from homeserver.client.presence import PresenceService, PresenceState, federation_update
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.rooms.pipeline import RoomEventService

from ..sender import FederationSender

logger = logging.getLogger(__name__)

#: Offline users inactive for longer than this (and without a status message) are not sent.
STALE_OFFLINE_MS = 7 * 24 * 60 * 60 * 1000
#: The second sending of a remote join's updates.
RESEND_AFTER_S = 3.0


def worth_sending(state: PresenceState, now_ms: int) -> bool:
    """Whether a state tells a newly joined server anything (Synapse leaves out default offline)."""
    return state.state != "offline" or now_ms - state.last_active_ts < STALE_OFFLINE_MS \
        or state.status_msg is not None


class PresenceOnJoin:
    """Built once by FederationEduHandler.register(); registers its persist hook."""

    def __init__(self, hs):
        self.hs = hs
        self.events: RoomEventService = hs.get(RoomEventService)
        self.presence: PresenceService = hs.get(PresenceService)
        self.sender: FederationSender = hs.get(FederationSender)
        self.events.persist_hooks.append(self.persist_hook)

    def _domain(self, user_id) -> str | None:
        return ids.domain_or_none(user_id) if isinstance(user_id, str) else None

    async def persist_hook(self, event: Event, state_after):
        if not self.presence.enabled or event.type != "m.room.member" or event.membership != "join":
            return None
        user_id, room_id = event.state_key, event.room_id
        if self._domain(user_id) is None:
            return None
        before = await self.events.get_membership(room_id, user_id)
        if before == "join":
            return None  # a profile change, not a join

        def write(txn, item) -> None:
            txn.call_after_commit(self._schedule, room_id, user_id)
        return write

    def _schedule(self, room_id: str, user_id: str) -> None:
        # Next reactor turn: the pipeline moves its member caches once the commit has fired.
        self.hs.reactor.callLater(0, self._run, room_id, user_id)

    def _run(self, room_id: str, user_id: str) -> defer.Deferred:
        d = defer.ensureDeferred(self.on_join(room_id, user_id))
        d.addErrback(lambda f: logger.error("presence on join of %s to %s failed: %s", user_id, room_id,
                                            f.getTraceback()))
        return d

    async def on_join(self, room_id: str, user_id: str) -> dict[str, list[str]]:
        """Send what the join calls for (module docstring); returns destination -> user IDs sent."""
        if self._domain(user_id) == self.hs.hostname:
            sent = await self._local_joined(room_id, user_id)
        else:
            sent = await self._remote_joined(room_id, user_id)
            if sent:
                self.hs.reactor.callLater(RESEND_AFTER_S, self._resend, sent)
        return sent

    async def _remote_joined(self, room_id: str, user_id: str) -> dict[str, list[str]]:
        server = self._domain(user_id)
        members = await self.events.get_joined_members(room_id)
        if any(self._domain(m) == server for m in members if m != user_id):
            return {}  # the server was in the room already
        local = sorted(m for m in members if self._domain(m) == self.hs.hostname)
        now = self.hs.clock_ms()
        states = [s for s in await self.presence.current_states(local) if worth_sending(s, now)]
        self._send(server, states, now)
        return {server: [s.user_id for s in states]} if states else {}

    async def _local_joined(self, room_id: str, user_id: str) -> dict[str, list[str]]:
        servers = await self.sender.servers_in_room(room_id)
        for other in await self.events.get_rooms_for_user(user_id):
            if other != room_id and servers:
                servers -= await self.sender.servers_in_room(other)
        if not servers:
            return {}
        states = await self.presence.current_states([user_id])
        now = self.hs.clock_ms()
        if not states or not worth_sending(states[0], now):
            return {}
        for server in sorted(servers):
            self._send(server, states, now)
        return {server: [user_id] for server in servers}

    def _send(self, server: str, states: list[PresenceState], now_ms: int) -> None:
        for state in states:
            self.sender.send_ephemeral_edu(server, "m.presence", {"push": [federation_update(state, now_ms)]},
                                           key=state.user_id)

    def _resend(self, sent: dict[str, list[str]]) -> defer.Deferred:
        async def run():
            now = self.hs.clock_ms()
            for server, user_ids in sent.items():
                self._send(server, await self.presence.current_states(user_ids), now)
        return defer.ensureDeferred(run()).addErrback(lambda f: logger.error("presence resend failed: %s", f.value))
