"""Room creation for every room version (client-server-api ``POST /createRoom``).

The events are sent through the one pipeline in the order the spec prescribes
(data/api/client-server/create_room.yaml): create, the creator's join, power levels, (canonical
alias: added by the directory service), the preset's join rules / history visibility / guest access,
``initial_state``, name and topic — all committed in one transaction — then invites.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Iterable, Mapping

from homeserver.http.errors import MatrixError
from homeserver.protocol import ids
from homeserver.protocol.room_versions import RoomVersion, get_room_version

from .pipeline import RoomEventService

logger = logging.getLogger(__name__)

PRIVATE_CHAT = "private_chat"
TRUSTED_PRIVATE_CHAT = "trusted_private_chat"
PUBLIC_CHAT = "public_chat"

#: create_room.yaml, the presets table: (join_rule, history_visibility, guest_access).
PRESETS: dict[str, tuple[str, str, str]] = {
    PRIVATE_CHAT: ("invite", "shared", "can_join"),
    TRUSTED_PRIVATE_CHAT: ("invite", "shared", "can_join"),
    PUBLIC_CHAT: ("public", "shared", "forbidden"),
}


def default_power_levels(rv: RoomVersion, creator: str, preset: str, invitees: Iterable[str]) -> dict:
    """The default ``m.room.power_levels`` content (create_room.yaml step 3).

    v1–v11: the creator gets 100 (and with ``trusted_private_chat`` every invitee too). v12: the
    creators have infinite power and are not listed in ``users``; the tombstone level is set above
    ``state_default`` (150)."""
    users: dict[str, int] = {}
    if not rv.privileged_creators:
        users[creator] = 100
        if preset == TRUSTED_PRIVATE_CHAT:
            for user in invitees:
                users[user] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if rv.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == PUBLIC_CHAT else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }


class RoomCreationService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)

    async def create_room(self, creator: str, *, room_version: str | None = None, preset: str | None = None,
                          initial_state: Iterable[Mapping[str, Any]] = (), invite: Iterable[str] = (),
                          name: str | None = None, topic: str | None = None,
                          creation_content: Mapping[str, Any] | None = None,
                          power_level_content_override: Mapping[str, Any] | None = None,
                          is_direct: bool = False, visibility: str = "private", room_alias: str | None = None,
                          creator_join_content: Mapping[str, Any] | None = None) -> str:
        """Create a room owned by the local user ``creator`` and return its ID.

        ``room_alias`` is ignored (the directory service creates aliases and the canonical alias
        event). ``creator_join_content`` adds e.g. ``displayname``/``avatar_url`` to the creator's
        join. Invites are sent as local membership events. Raises MatrixError 400
        M_UNSUPPORTED_ROOM_VERSION, M_INVALID_PARAM or M_BAD_JSON for bad input.
        """
        version_id = room_version if room_version is not None else \
            (getattr(self.hs.config, "default_room_version", None) or "12")
        rv = get_room_version(version_id) if isinstance(version_id, str) else None
        if rv is None:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version_id!r} is not supported")
        if visibility not in ("public", "private"):
            raise MatrixError(400, "M_INVALID_PARAM", "visibility must be 'public' or 'private'")
        if preset is None:
            preset = PUBLIC_CHAT if visibility == "public" else PRIVATE_CHAT
        if preset not in PRESETS:
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown preset {preset!r}")
        invitees = list(dict.fromkeys(invite))
        for user in invitees:
            if not isinstance(user, str) or not ids.is_valid_user_id(user):
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user ID to invite: {user!r}")
        initial = _check_initial_state(initial_state)

        # 1. m.room.create
        content = copy.deepcopy(dict(creation_content or {}))
        content["room_version"] = rv.identifier
        if rv.implicit_room_creator:
            content.pop("creator", None)
        else:
            content["creator"] = creator
        if rv.privileged_creators:
            extra = content.get("additional_creators", [])
            if not isinstance(extra, list) or not all(isinstance(u, str) and ids.is_valid_user_id(u) for u in extra):
                raise MatrixError(400, "M_BAD_JSON", "additional_creators must be a list of user IDs")
            if preset == TRUSTED_PRIVATE_CHAT:
                extra = list(dict.fromkeys(extra + invitees))
            extra = [u for u in extra if u != creator]
            if extra:
                content["additional_creators"] = extra
            else:
                content.pop("additional_creators", None)
        room_id = None if rv.room_id_from_create_event else f"!{ids.random_string(18)}:{self.hs.hostname}"
        initial_events: list[tuple[str, dict, str]] = []

        # 2. the creator joins
        join = dict(creator_join_content or {})
        join["membership"] = "join"
        initial_events.append(("m.room.member", join, creator))

        # 3. power levels (initial_state's own power levels replace the default)
        if ("m.room.power_levels", "") in initial:
            pl = copy.deepcopy(dict(initial.pop(("m.room.power_levels", ""))))
        else:
            pl = default_power_levels(rv, creator, preset, invitees)
        if power_level_content_override:
            pl.update(copy.deepcopy(dict(power_level_content_override)))
        if rv.privileged_creators and isinstance(pl.get("users"), dict):
            creators = {creator} | set(content.get("additional_creators", []))
            pl["users"] = {u: lvl for u, lvl in pl["users"].items() if u not in creators}
        initial_events.append(("m.room.power_levels", pl, ""))

        # 5. the preset, unless initial_state sets the same state
        join_rule, history, guests = PRESETS[preset]
        for event_type, body in (("m.room.join_rules", {"join_rule": join_rule}),
                                 ("m.room.history_visibility", {"history_visibility": history}),
                                 ("m.room.guest_access", {"guest_access": guests})):
            if (event_type, "") not in initial:
                initial_events.append((event_type, body, ""))

        # 6. initial_state (name/topic given as parameters win)
        for (event_type, state_key), body in initial.items():
            if (event_type, state_key) in (("m.room.name", ""), ("m.room.topic", "")):
                if (event_type == "m.room.name" and name is not None) or \
                        (event_type == "m.room.topic" and topic is not None):
                    continue
            initial_events.append((event_type, dict(body), state_key))

        # 7. name and topic
        if name is not None:
            initial_events.append(("m.room.name", {"name": name}, ""))
        if topic is not None:
            initial_events.append(("m.room.topic", {"topic": topic, "m.topic": {
                "m.text": [{"body": topic, "mimetype": "text/plain"}]}}, ""))

        # 1.-7. in one transaction: all or nothing
        events = await self.events.create_room_events(rv, creator, content, room_id,
                                                      is_public=visibility == "public", initial=initial_events)
        room_id = events[0].room_id

        async def send(event_type: str, content: dict, state_key: str = "") -> None:
            await self.events.create_and_send_event(room_id, event_type, content, creator, state_key)

        # 8. invites
        for user in invitees:
            body: dict[str, Any] = {"membership": "invite"}
            if is_direct:
                body["is_direct"] = True
            await send("m.room.member", body, user)
        return room_id


def _check_initial_state(initial_state: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for ev in initial_state:
        if not isinstance(ev, Mapping):
            raise MatrixError(400, "M_BAD_JSON", "initial_state entries must be objects")
        event_type = ev.get("type")
        state_key = ev.get("state_key", "")
        content = ev.get("content")
        if not isinstance(event_type, str) or not isinstance(state_key, str) or not isinstance(content, dict):
            raise MatrixError(400, "M_BAD_JSON", "initial_state entries need type, state_key and content")
        if event_type == "m.room.create":
            raise MatrixError(400, "M_BAD_JSON", "initial_state cannot contain m.room.create")
        out[(event_type, state_key)] = content
    return out
