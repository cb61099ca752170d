"""Room upgrades (modules/room_upgrades.md "Server behaviour", room_upgrades.yaml).

1. The user must be joined and able to send ``m.room.tombstone`` in the old room (403).
2. A replacement room is created (through :class:`RoomCreationService`, the one pipeline) with
   ``predecessor`` and the old room's ``type`` in its create event; additional creators only
   from the request, only for versions with privileged creators.
3. Transferable state is copied (server ACL, encryption, name, avatar, topic, guest access, history
   visibility, join rules, power levels) and bans are replayed.
4. Local aliases move to the new room, with the canonical alias; directory publication moves too.
5. The old room gets an ``m.room.tombstone``.
6. The old room's power levels are raised so that sending and inviting need
   max(50, users_default + 1).

Concurrent upgrades of one room by the same request body share one result.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from twisted.internet import defer

from homeserver.accounts.auth import check_not_suspended
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.power_levels import (get_creators, get_power_level_for_event, get_user_power_level,
                                              parse_level)
from homeserver.protocol.room_versions import get_room_version

from .creation import RoomCreationService
from .membership import MembershipService
from .pipeline import RoomEventService

logger = logging.getLogger(__name__)

#: modules/room_upgrades.md, step 3.
TRANSFERABLE_STATE = ("m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
                      "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules",
                      "m.room.power_levels")


class RoomUpgradeService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.creation = hs.get(RoomCreationService)
        self.membership = hs.get(MembershipService)
        self._inflight: dict[tuple[str, str], list[defer.Deferred]] = {}

    async def upgrade_room(self, requester, room_id: str, new_version: Any, additional_creators: Any = None) -> str:
        """POST /rooms/{roomId}/upgrade: the replacement room's ID. 400 M_UNSUPPORTED_ROOM_VERSION,
        M_BAD_JSON (types), M_INVALID_PARAM (bad user IDs), 403, 404 for unknown rooms; 403
        M_USER_SUSPENDED for suspended users (it creates a room and sends state)."""
        check_not_suspended(requester)
        if not isinstance(new_version, str):
            raise bad_json("new_version must be a string")
        rv = get_room_version(new_version)
        if rv is None:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "This server does not support that room version")
        if additional_creators is not None:
            if not isinstance(additional_creators, list) or not all(isinstance(u, str) for u in additional_creators):
                raise bad_json("additional_creators must be a list of user IDs")
            if not all(ids.is_valid_user_id(u) for u in additional_creators):
                raise invalid_param("additional_creators holds an invalid user ID")
        if await self.events.get_room_version(room_id) is None:
            raise not_found("Unknown room")
        key = (room_id, requester.user_id)
        waiting = self._inflight.get(key)
        if waiting is not None:
            d: defer.Deferred = defer.Deferred()
            waiting.append(d)
            return await d
        self._inflight[key] = waiters = []
        try:
            result = await self._upgrade(requester, room_id, rv, additional_creators or [])
        except BaseException as e:
            del self._inflight[key]
            for d in waiters:
                d.errback(e)
            raise
        del self._inflight[key]
        for d in waiters:
            d.callback(result)
        return result

    async def _upgrade(self, requester, room_id: str, rv, additional_creators: list[str]) -> str:
        user_id = requester.user_id
        old_state = await self.events.get_current_state_events(room_id)
        if await self.events.get_membership(room_id, user_id) != "join":
            raise forbidden("You are not in the room")
        if get_user_power_level(user_id, old_state) < get_power_level_for_event("m.room.tombstone", old_state, True):
            raise forbidden("You cannot upgrade this room")
        old_create = old_state.get(("m.room.create", ""))

        creation_content: dict[str, Any] = {"predecessor": {"room_id": room_id}}
        if not rv.room_id_from_create_event:
            snap = await self.events.state.get_snapshot(room_id)
            last = sorted(snap.extremities.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if snap else None
            if last is not None:
                creation_content["predecessor"]["event_id"] = last
        if old_create is not None and isinstance(old_create.content.get("type"), str):
            creation_content["type"] = old_create.content["type"]
        if rv.privileged_creators and additional_creators:
            creation_content["additional_creators"] = list(dict.fromkeys(additional_creators))

        initial_state = []
        for event_type in TRANSFERABLE_STATE:
            ev = old_state.get((event_type, ""))
            if ev is not None and event_type != "m.room.power_levels":
                initial_state.append({"type": event_type, "state_key": "", "content": copy.deepcopy(ev.content)})
        old_pl = old_state.get(("m.room.power_levels", ""))
        final_pl = copy.deepcopy(old_pl.content) if old_pl is not None else None
        temp_pl = None
        if final_pl is not None:
            users = final_pl.get("users") if isinstance(final_pl.get("users"), dict) else {}
            final_pl["users"] = users
            if not rv.privileged_creators:
                if old_create is not None and old_create.room_version.privileged_creators:
                    # Creators had infinite power in the old room; in the new one they get 100.
                    for creator in get_creators(old_create):
                        users[creator] = 100
                # The upgrader needs enough power in the new room to send the copied state:
                # raised for the creation, then the old levels are sent.
                needed = max([100] + [lvl for lvl in (parse_level(v, rv) for v in _levels(final_pl))
                                      if lvl is not None])
                have = parse_level(users.get(user_id, final_pl.get("users_default", 0)), rv) or 0
                if have < needed:
                    temp_pl = copy.deepcopy(final_pl)
                    temp_pl["users"][user_id] = needed
            initial_state.append({"type": "m.room.power_levels", "state_key": "",
                                  "content": temp_pl if temp_pl is not None else final_pl})

        new_room = await self.creation.create_room(
            user_id, room_version=rv.identifier, preset="private_chat", initial_state=initial_state,
            creation_content=creation_content, visibility="private")
        if temp_pl is not None:
            await self.events.create_and_send_event(new_room, "m.room.power_levels", final_pl, user_id, "")

        for (t, sk), ev in old_state.items():
            if t == "m.room.member" and ev.membership == "ban":
                try:
                    await self.events.create_and_send_event(new_room, "m.room.member", dict(ev.content), user_id, sk)
                except MatrixError as e:
                    logger.info("ban of %s not copied to %s: %s", sk, new_room, e.msg)

        await self._move_aliases(requester, room_id, new_room, old_state)

        await self.events.create_and_send_event(
            room_id, "m.room.tombstone", {"body": "This room has been replaced", "replacement_room": new_room},
            user_id, "")
        await self._restrict_old_room(room_id, user_id)
        return new_room

    async def _move_aliases(self, requester, room_id: str, new_room: str, old_state) -> None:
        from homeserver.storage.directory_store import DirectoryStore
        store = self.hs.get(DirectoryStore)
        for alias in await store.get_aliases_for_room(room_id):
            record = await store.get_alias(alias)
            if record is None:
                continue
            await store.delete_alias(alias)
            await store.create_alias(alias, new_room, record.creator, self.hs.clock_ms())
        canonical = old_state.get(("m.room.canonical_alias", ""))
        if canonical is not None and canonical.content:
            try:
                await self.events.create_and_send_event(new_room, "m.room.canonical_alias",
                                                        copy.deepcopy(canonical.content), requester.user_id, "")
                await self.events.create_and_send_event(room_id, "m.room.canonical_alias", {},
                                                        requester.user_id, "")
            except MatrixError as e:
                logger.info("canonical alias not moved from %s: %s", room_id, e.msg)
        if await store.get_room_visibility(room_id):
            await store.set_room_visibility(new_room, True)
            await store.set_room_visibility(room_id, False)

    async def _restrict_old_room(self, room_id: str, user_id: str) -> None:
        ev = await self.events.get_current_state_event(room_id, "m.room.power_levels")
        if ev is None:
            return
        rv = ev.room_version
        content = copy.deepcopy(ev.content)
        users_default = parse_level(content.get("users_default", 0), rv) or 0
        restricted = max(50, users_default + 1)
        changed = False
        for key in ("events_default", "invite"):
            level = parse_level(content.get(key, 0), rv)
            if level is None or level < restricted:
                content[key] = restricted
                changed = True
        if changed:
            try:
                await self.events.create_and_send_event(room_id, "m.room.power_levels", content, user_id, "")
            except MatrixError as e:
                logger.info("power levels of old room %s not restricted: %s", room_id, e.msg)


def _levels(pl: dict):
    for key in ("state_default", "events_default", "invite", "kick", "ban", "redact"):
        if key in pl:
            yield pl[key]
    events = pl.get("events")
    if isinstance(events, dict):
        yield from events.values()
