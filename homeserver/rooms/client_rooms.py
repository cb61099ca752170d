"""The rooms part of the client API as a service: room creation requests, sending messages and
state, redactions, reading events/state/members, reports and timestamp look-ups.

Every write goes through the one pipeline (:class:`RoomEventService`, :class:`RoomCreationService`,
:class:`MembershipService`); reads go through :class:`VisibilityService` (who may see what) and
:class:`EventSerializer` (how events are shown).

Spec: client-server-api "Room creation" (create_room.yaml), "Sending events to a room"
(room_send.yaml, room_state.yaml), "Redactions" (redaction.yaml), "Getting events for a room"
(rooms.yaml), "Reporting content" (report_content.yaml), room_event_by_timestamp.yaml,
room_initial_sync.yaml.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from homeserver.accounts.auth import AuthService, check_not_suspended
from homeserver.accounts.ratelimit import Ratelimiter
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import get_named_level, get_user_power_level, parse_level
from homeserver.protocol.room_versions import get_room_version
from homeserver.storage.room_extras_store import RoomExtrasStore
from homeserver.sync.tokens import RoomPosition, TokenError, parse_room_position

from .creation import PRESETS, PUBLIC_CHAT, PRIVATE_CHAT, TRUSTED_PRIVATE_CHAT, RoomCreationService, \
    default_power_levels
from .membership import MembershipService
from .pipeline import RoomEventService
from .serialize import txn_key
from .visibility import VisibilityService

logger = logging.getLogger(__name__)

#: client-server-api "Size limits".
MAX_TYPE_BYTES = 255
MAX_STATE_KEY_BYTES = 255
MEMBER_ACTIONS = {"join": "join", "invite": "invite", "ban": "ban", "knock": "knock", "leave": "leave"}


def invalid_room_state(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_ROOM_STATE", msg)


@dataclass
class CreateRoomRequest:
    """The checked body of POST /createRoom (see :func:`parse_create_room`)."""

    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = field(default_factory=list)
    invite_3pid: list[dict] = field(default_factory=list)
    room_version: str | None = None
    creation_content: dict = field(default_factory=dict)
    initial_state: list[dict] = field(default_factory=list)
    preset: str | None = None
    is_direct: bool = False
    power_level_content_override: dict | None = None


def _typed(body: Mapping, key: str, kind, what: str):
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise bad_json(f"'{key}' must be {what}")
    return value


def parse_create_room(body: Mapping[str, Any]) -> CreateRoomRequest:
    """Check the types of every create_room.yaml field: 400 M_BAD_JSON for a wrong type,
    M_INVALID_PARAM for an unknown ``visibility``/``preset`` or an invalid user ID."""
    req = CreateRoomRequest()
    visibility = _typed(body, "visibility", str, "a string")
    if visibility is not None:
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        req.visibility = visibility
    req.room_alias_name = _typed(body, "room_alias_name", str, "a string")
    req.name = _typed(body, "name", str, "a string")
    req.topic = _typed(body, "topic", str, "a string")
    invite = _typed(body, "invite", list, "a list of user IDs") or []
    for user in invite:
        if not isinstance(user, str):
            raise bad_json("'invite' must be a list of user IDs")
        if not ids.is_valid_user_id(user):
            raise invalid_param(f"Invalid user ID to invite: {user!r}")
    req.invite = list(dict.fromkeys(invite))
    invite_3pid = _typed(body, "invite_3pid", list, "a list") or []
    for entry in invite_3pid:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str)
                                                  for k in ("id_server", "medium", "address")):
            raise bad_json("'invite_3pid' entries need id_server, medium and address strings")
    req.invite_3pid = invite_3pid
    req.room_version = _typed(body, "room_version", str, "a string")
    req.creation_content = dict(_typed(body, "creation_content", dict, "an object") or {})
    initial_state = _typed(body, "initial_state", list, "a list of state events") or []
    for ev in initial_state:
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str) \
                or not isinstance(ev.get("state_key", ""), str) or not isinstance(ev.get("content"), dict):
            raise bad_json("initial_state entries need a string type, an optional string state_key "
                           "and an object content")
        if ev["type"] in ("m.room.create", "m.room.member"):
            raise invalid_room_state(f"initial_state cannot contain {ev['type']}")
    req.initial_state = initial_state
    preset = _typed(body, "preset", str, "a string")
    if preset is not None and preset not in PRESETS:
        raise invalid_param(f"Unknown preset {preset!r}")
    req.preset = preset
    req.is_direct = bool(_typed(body, "is_direct", bool, "a boolean"))
    req.power_level_content_override = _typed(body, "power_level_content_override", dict, "an object")
    return req


def stream_position_of_token(token: str) -> int:
    """The events-stream position of a pagination or sync token (homeserver/sync/tokens.py:
    ``t<depth>_<stream>``, ``s<stream>`` or a whole sync token); 400 M_INVALID_PARAM otherwise."""
    try:
        return parse_room_position(token).stream
    except TokenError:
        raise invalid_param("Invalid pagination token") from None


class ClientRoomService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.creation = hs.get(RoomCreationService)
        self.membership = hs.get(MembershipService)
        self.visibility = hs.get(VisibilityService)
        self.limiter = hs.get(Ratelimiter)
        self.extras = hs.get(RoomExtrasStore)
        self.auth = hs.get(AuthService)

    def _aliases(self):
        from homeserver.directory.aliases import AliasService
        return self.hs.get(AliasService)

    def _relations(self):
        from homeserver.history.relations import RelationsService  # history builds on rooms
        return self.hs.get(RelationsService)

    def _presence(self):
        from homeserver.client.presence import PresenceService
        return self.hs.get(PresenceService)

    # =========================================================================================
    # Creation
    # =========================================================================================
    async def create_room(self, requester, req: CreateRoomRequest) -> str:
        """POST /createRoom: the room ID. Order and checks per create_room.yaml; the alias is
        checked before anything is written (400 M_ROOM_IN_USE), the power levels are checked
        against every event the request implies (400 M_INVALID_ROOM_STATE) and a refusal by the
        auth rules half-way is reported the same way. 403 M_USER_SUSPENDED for suspended users."""
        check_not_suspended(requester)
        self.limiter.check("rc_message", requester.user_id, requester=requester)
        version = req.room_version or getattr(self.hs.config, "default_room_version", None) or "12"
        rv = get_room_version(version)
        if rv is None:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version!r} is not supported")
        if req.invite_3pid:
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED",
                              "Third-party invites need an identity server; this server trusts none")
        alias = None
        if req.room_alias_name is not None:
            alias = await self._aliases().check_new_room_alias(requester, req.room_alias_name)
        self._precheck_power(rv, requester.user_id, req)
        for user in req.invite:
            # modules/invite_permission.md: a local invitee blocking invites refuses the request
            # before anything is written (remote refusals come later and skip that invitee).
            await self.membership.check_invite_permission(user)

        initial_state = list(req.initial_state)
        if alias is not None:
            # create_room.yaml step 4; initial_state's own canonical alias (if any) still wins.
            initial_state.insert(0, {"type": "m.room.canonical_alias", "state_key": "",
                                     "content": {"alias": alias}})
        creation_content = dict(req.creation_content)
        override = req.power_level_content_override
        if req.preset == TRUSTED_PRIVATE_CHAT and req.invite:
            # Invitees get the creator's power: in v12 as additional creators, before as level
            # 100 (create_room.yaml, presets table and step 3). Invites are sent below, so
            # RoomCreationService does not see them.
            if rv.privileged_creators:
                extra = creation_content.get("additional_creators", [])
                if isinstance(extra, list):
                    creation_content["additional_creators"] = list(dict.fromkeys(extra + req.invite))
            elif not any(ev["type"] == "m.room.power_levels" and ev.get("state_key", "") == ""
                         for ev in req.initial_state):
                base = default_power_levels(rv, requester.user_id, TRUSTED_PRIVATE_CHAT, req.invite)
                base.update(override or {})
                override = base
        join_content: dict[str, Any] = {}
        await self.membership._add_profile(join_content, requester.user_id)
        try:
            room_id = await self.creation.create_room(
                requester.user_id, room_version=rv.identifier, preset=req.preset,
                initial_state=initial_state, invite=[], name=req.name, topic=req.topic,
                creation_content=creation_content, power_level_content_override=override,
                is_direct=req.is_direct, visibility=req.visibility, creator_join_content=join_content)
        except MatrixError as e:
            if e.code == 403:
                raise invalid_room_state(f"The initial state is not allowed: {e.msg}") from None
            raise
        if alias is not None:
            try:
                await self._aliases().create_alias(requester, alias, room_id, check_membership=False)
            except MatrixError as e:
                logger.warning("alias %s for new room %s not created: %s", alias, room_id, e.msg)
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken") from None
        for user in req.invite:
            content = {"is_direct": True} if req.is_direct else None
            try:
                await self.membership.update_membership(requester, user, room_id, "invite",
                                                        extra_content=content, ratelimit=False)
            except MatrixError as e:
                logger.info("invite of %s to new room %s failed: %s", user, room_id, e.msg)
        return room_id

    def _precheck_power(self, rv, creator: str, req: CreateRoomRequest) -> None:
        """Check, before writing anything, that the creator's level in the power levels the
        request produces lets them send every state event it implies (M_INVALID_ROOM_STATE)."""
        preset = req.preset or (PUBLIC_CHAT if req.visibility == "public" else PRIVATE_CHAT)
        pl = None
        for ev in req.initial_state:
            if ev["type"] == "m.room.power_levels" and ev.get("state_key", "") == "":
                pl = dict(ev["content"])
        if pl is None:
            pl = default_power_levels(rv, creator, preset, req.invite)
        if req.power_level_content_override:
            pl.update(req.power_level_content_override)
        if rv.privileged_creators:
            level: float = math.inf
        else:
            users = pl.get("users")
            if users is not None and not isinstance(users, dict):
                raise invalid_room_state("power levels 'users' must be an object")
            raw = (users or {}).get(creator, pl.get("users_default", 0))
            level = parse_level(raw, rv)
            if level is None:
                raise invalid_room_state(f"Invalid power level for {creator}")

        def needed(event_type: str, is_state: bool = True) -> int:
            events = pl.get("events") if isinstance(pl.get("events"), dict) else {}
            if event_type in events:
                v = parse_level(events[event_type], rv)
                if v is not None:
                    return v
            key = "state_default" if is_state else "events_default"
            v = parse_level(pl.get(key, 50 if is_state else 0), rv)
            return v if v is not None else 50

        implied = [ev["type"] for ev in req.initial_state if ev["type"] != "m.room.power_levels"]
        if req.name is not None:
            implied.append("m.room.name")
        if req.topic is not None:
            implied.append("m.room.topic")
        if req.room_alias_name is not None:
            implied.append("m.room.canonical_alias")
        for event_type in implied:
            if needed(event_type) > level:
                raise invalid_room_state(f"The power levels do not let the creator send {event_type}")
        if req.invite:
            inv = parse_level(pl.get("invite", 0), rv)
            if inv is not None and inv > level:
                raise invalid_room_state("The power levels do not let the creator invite")

    # =========================================================================================
    # Sending
    # =========================================================================================
    async def send_message(self, requester, room_id: str, event_type: str, content: dict, txn_id: str) -> Event:
        """PUT /rooms/{roomId}/send/{eventType}/{txnId}; idempotent per device, room, type and txnId.
        Relations are checked first (:meth:`RelationsService.check_new_relation`: 400
        M_DUPLICATE_ANNOTATION for a repeated reaction, 400 M_UNKNOWN for a thread rooted at an
        event that has a relation itself); a retransmission returns the first event unchecked.
        Suspended users may send only redactions of their own events (403 M_USER_SUSPENDED)."""
        check_event_type(event_type)
        if event_type != "m.room.redaction":
            check_not_suspended(requester)
        self.limiter.check("rc_message", requester.user_id, requester=requester)
        key = txn_key("send", room_id, event_type, txn_id)
        sent = await self.events.store.get_event_id_for_txn(requester.user_id, requester.device_id or "", key)
        previous = await self.events.store.get_event(sent) if sent else None
        if previous is not None:
            return previous
        await self._relations().check_new_relation(room_id, requester.user_id, event_type, content)
        extra = None
        if event_type == "m.room.redaction":
            redacts = content.get("redacts")
            if not isinstance(redacts, str) or not ids.is_valid_event_id(redacts):
                raise bad_json("m.room.redaction needs 'redacts', an event ID")
            await self.check_may_redact(requester, room_id, redacts)
            rv = await self._room_version(room_id)
            if not rv.redacts_in_content:
                # room_send.yaml: before v11, redacts moves from content to the top level.
                content = {k: v for k, v in content.items() if k != "redacts"}
                extra = {"redacts": redacts}
        if getattr(requester, "massaged_ts", None) is not None:  # an appservice's ?ts=
            extra = dict(extra or {}, origin_server_ts=requester.massaged_ts)
        event = await self.events.create_and_send_event(
            room_id, event_type, content, requester.user_id,
            txn_id=key, device_id=requester.device_id, extra_pdu_fields=extra)
        # Sending is a pro-active action: the sender is online (client-server-api "Presence").
        await self._presence().bump_activity(requester.user_id)
        return event

    async def send_state(self, requester, room_id: str, event_type: str, state_key: str, content: dict) -> Event:
        """PUT /rooms/{roomId}/state/{eventType}/{stateKey}. Member events become membership
        changes; canonical aliases are checked (M_BAD_ALIAS / M_INVALID_PARAM); sending the
        current content again returns the current event. Suspended users get 403
        M_USER_SUSPENDED except for the member events update_membership allows them (leaving)."""
        check_event_type(event_type)
        if event_type != "m.room.member":
            check_not_suspended(requester)  # member events: update_membership decides
        if len(state_key.encode("utf-8")) > MAX_STATE_KEY_BYTES:
            raise invalid_param("state_key is longer than 255 bytes")
        self.limiter.check("rc_message", requester.user_id, requester=requester)
        await self._room_version(room_id)
        if event_type == "m.room.member":
            return await self._send_member_state(requester, room_id, state_key, content)
        if event_type == "m.room.canonical_alias" and state_key == "":
            await self._aliases().validate_canonical_alias_content(room_id, content)
        current = await self.events.get_current_state_event(room_id, event_type, state_key)
        if current is not None and current.sender == requester.user_id and current.content == content:
            return current
        ts = getattr(requester, "massaged_ts", None)  # an appservice's ?ts=
        return await self.events.create_and_send_event(room_id, event_type, content, requester.user_id, state_key,
                                                       extra_pdu_fields={"origin_server_ts": ts} if ts else None)

    async def _send_member_state(self, requester, room_id: str, target: str, content: dict) -> Event:
        membership = content.get("membership")
        if not isinstance(membership, str) or membership not in MEMBER_ACTIONS:
            raise bad_json("m.room.member content needs a valid 'membership'")
        action = membership
        if membership == "leave" and target != requester.user_id:
            current = await self.events.get_membership(room_id, target)
            action = "unban" if current == "ban" else "kick"
        extra = {k: v for k, v in content.items() if k not in ("membership", "reason")}
        return await self.membership.update_membership(requester, target, room_id, action,
                                                       reason=content.get("reason"), extra_content=extra)

    async def redact(self, requester, room_id: str, event_id: str, txn_id: str, body: Mapping[str, Any]) -> Event:
        """PUT /rooms/{roomId}/redact/{eventId}/{txnId} (redaction.yaml): own events need the
        m.room.redaction level, other users' the ``redact`` level; server admins may redact
        events of this server's users."""
        if not ids.is_valid_event_id(event_id):
            raise invalid_param("Invalid event ID")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise bad_json("reason must be a string")
        self.limiter.check("rc_message", requester.user_id, requester=requester)
        rv = await self._room_version(room_id)
        await self.check_may_redact(requester, room_id, event_id)
        content = {k: v for k, v in body.items() if k != "redacts"}
        extra = None
        if rv.redacts_in_content:
            content["redacts"] = event_id
        else:
            extra = {"redacts": event_id}
        return await self.events.create_and_send_event(
            room_id, "m.room.redaction", content, requester.user_id,
            txn_id=txn_key("redact", room_id, event_id, txn_id), device_id=requester.device_id,
            extra_pdu_fields=extra)

    async def check_may_redact(self, requester, room_id: str, event_id: str) -> None:
        """Own events need nothing more here (the auth rules check the m.room.redaction level);
        other users' need the ``redact`` level, or a server admin redacting a local user's event.
        Suspended users may redact only their own events (403 M_USER_SUSPENDED)."""
        target = await self.events.get_event(event_id)
        if target is not None and target.room_id == room_id and target.sender == requester.user_id:
            return
        check_not_suspended(requester)
        state = await self.events.get_current_state_events(room_id, [("m.room.create", ""),
                                                                     ("m.room.power_levels", "")])
        if get_user_power_level(requester.user_id, state) >= get_named_level(state, "redact", 50):
            return
        if target is not None and self.membership.is_mine(target.sender) \
                and await self.auth.is_server_admin(requester.user_id):
            return
        raise forbidden("You don't have permission to redact this event")

    async def _room_version(self, room_id: str):
        rv = await self.events.get_room_version(room_id)
        if rv is None:
            raise not_found("Unknown room")
        return rv

    # =========================================================================================
    # Reading
    # =========================================================================================
    async def get_event(self, requester, room_id: str, event_id: str) -> Event:
        """GET /rooms/{roomId}/event/{eventId}: 404 M_NOT_FOUND when unknown, in another room,
        or not visible to the requester (rooms.yaml)."""
        await self._room_version(room_id)
        event = await self.events.get_event(event_id) if ids.is_valid_event_id(event_id) else None
        if event is None or event.room_id != room_id:
            raise not_found("Event not found.")
        shown = await self.visibility.visible_event(requester.user_id, event)
        if shown is None:
            raise not_found("Event not found.")
        return shown

    async def get_state_event(self, requester, room_id: str, event_type: str, state_key: str) -> Event:
        access = await self.visibility.room_access(requester.user_id, room_id)
        eid = access.state.get((event_type, state_key))
        event = await self.events.get_event(eid) if eid is not None else None
        if event is None:
            raise not_found("The room has no state with the given type or key.")
        return event

    async def get_state(self, requester, room_id: str) -> list[Event]:
        access = await self.visibility.room_access(requester.user_id, room_id)
        loaded = await self.events.get_events(access.state.values())
        return [loaded[e] for e in sorted(access.state.values(), key=lambda e: e) if e in loaded]

    async def get_members(self, requester, room_id: str, *, at: str | None = None,
                          membership: str | None = None, not_membership: str | None = None) -> list[Event]:
        """GET /rooms/{roomId}/members: the member events of the state the requester may read (the
        current one, the one at their departure, or at the ``at`` token, never past their
        departure), filtered: ``membership`` or not ``not_membership`` (an "or" when both)."""
        for v in (membership, not_membership):
            if v is not None and v not in ("join", "invite", "knock", "leave", "ban"):
                raise invalid_param(f"Invalid membership filter {v!r}")
        access = await self.visibility.room_access(requester.user_id, room_id)
        state = access.state
        if at is not None:
            pos = stream_position_of_token(at)
            if access.at_event_id is not None:
                leave_pos = (await self.extras.get_stream_orderings([access.at_event_id])).get(access.at_event_id)
                if leave_pos is not None:
                    pos = min(pos, leave_pos)
            eid = await self.extras.get_last_event_at_stream(room_id, pos)
            at_state = await self.events.get_state_ids_at(eid) if eid is not None else None
            if at_state is not None:
                state = at_state
        member_ids = [e for (t, _), e in state.items() if t == "m.room.member"]
        loaded = await self.events.get_events(member_ids)
        out = []
        for e in sorted(loaded.values(), key=lambda e: e.state_key or ""):
            m = e.membership
            if membership is not None and not_membership is not None:
                if not (m == membership or m != not_membership):
                    continue
            elif membership is not None and m != membership:
                continue
            elif not_membership is not None and m == not_membership:
                continue
            out.append(e)
        return out

    async def get_joined_members(self, requester, room_id: str) -> dict[str, dict]:
        """GET /rooms/{roomId}/joined_members: joined users only (403 otherwise); application
        services whose users are joined may read it too."""
        await self._room_version(room_id)
        joined = await self.events.get_joined_members(room_id)
        allowed = requester.user_id in joined
        appservice = getattr(requester, "app_service", None)
        if not allowed and appservice is not None and hasattr(appservice, "is_interested_in_user"):
            allowed = any(appservice.is_interested_in_user(u) for u in joined)
        if not allowed:
            raise forbidden("You aren't a member of the room.")
        events = await self.events.get_current_state_events(room_id, [("m.room.member", u) for u in joined])
        out: dict[str, dict] = {}
        for u in joined:
            ev = events.get(("m.room.member", u))
            info: dict[str, Any] = {}
            if ev is not None:
                if isinstance(ev.content.get("displayname"), str):
                    info["display_name"] = ev.content["displayname"]
                if isinstance(ev.content.get("avatar_url"), str):
                    info["avatar_url"] = ev.content["avatar_url"]
            out[u] = info
        return out

    async def timestamp_to_event(self, requester, room_id: str, ts: int, direction: str) -> tuple[str, int]:
        await self.visibility.room_access(requester.user_id, room_id)
        found = await self.extras.get_event_by_timestamp(room_id, ts, direction == "f")
        if found is None:
            raise not_found(f"Unable to find event from {ts} in direction {direction}")
        return found

    async def initial_sync(self, requester, room_id: str, limit: int = 20) -> dict:
        """GET /rooms/{roomId}/initialSync (room_initial_sync.yaml, deprecated): the state the
        requester may read, the latest visible messages and the room's directory visibility."""
        from .serialize import EventSerializer
        access = await self.visibility.room_access(requester.user_id, room_id)
        upto = self.events.current_stream_token()
        if access.at_event_id is not None:
            upto = (await self.extras.get_stream_orderings([access.at_event_id])).get(access.at_event_id, upto)
        rows = await self.events.store.get_room_events_stream(room_id, 0, upto, limit, newest_first=True)
        rows.reverse()
        visible = await self.visibility.filter_events_for_user(requester.user_id, [e for _, e in rows])
        serializer = self.hs.get(EventSerializer)
        state_events = await self.get_state(requester, room_id)
        if rows:
            first, last = rows[0][1], rows[-1][1]
            start = RoomPosition.before_event(first.depth, rows[0][0])
            end = RoomPosition.after_event(last.depth, rows[-1][0])
        else:
            start = end = RoomPosition(None, upto)
        from homeserver.storage.directory_store import DirectoryStore
        public = await self.hs.get(DirectoryStore).get_room_visibility(room_id)
        result = {
            "room_id": room_id,
            "messages": {
                "chunk": await self._relations().serialize_events(visible, requester.user_id,
                                                                  device_id=requester.device_id),
                "start": str(start), "end": str(end),
            },
            "state": await serializer.serialize_events(state_events, user_id=requester.user_id,
                                                       device_id=requester.device_id),
            "visibility": "public" if public else "private",
            "presence": [],
            "account_data": [],
        }
        if access.membership is not None:
            result["membership"] = access.membership
        return result

    # =========================================================================================
    # Reports
    # =========================================================================================
    async def report_event(self, requester, room_id: str, event_id: str, reason: Any, score: Any) -> None:
        """POST /rooms/{roomId}/report/{eventId}: the reporter must be joined; 404 otherwise and
        for unknown events (report_content.yaml). ``reason`` may be omitted (v1.13). ``score``
        was removed in v1.18: an old client's score is kept when it is a valid one (-100..0),
        otherwise ignored, never an error."""
        if reason is not None and not isinstance(reason, str):
            raise bad_json("reason must be a string")
        if not isinstance(score, int) or isinstance(score, bool) or not -100 <= score <= 0:
            score = None
        if await self.events.get_membership(room_id, requester.user_id) != "join":
            raise not_found("The event was not found or you are not joined to the room.")
        event = await self.events.get_event(event_id) if ids.is_valid_event_id(event_id) else None
        if event is None or event.room_id != room_id:
            raise not_found("The event was not found or you are not joined to the room.")
        await self.extras.add_report("event", requester.user_id, room_id=room_id, event_id=event_id,
                                     reason=reason, score=score)

    async def report_room(self, requester, room_id: str, reason: Any) -> None:
        if reason is None:
            raise missing_param("Missing 'reason'")
        if not isinstance(reason, str):
            raise bad_json("reason must be a string")
        if await self.events.get_room_version(room_id) is None:
            raise not_found("The room was not found.")
        await self.extras.add_report("room", requester.user_id, room_id=room_id, reason=reason)

    async def report_user(self, requester, user_id: str, reason: Any) -> None:
        if reason is None:
            raise missing_param("Missing 'reason'")
        if not isinstance(reason, str):
            raise bad_json("reason must be a string")
        if not ids.is_valid_user_id(user_id):
            raise invalid_param("Invalid user ID")
        if not self.membership.is_mine(user_id):
            raise not_found("The user was not found.")
        from homeserver.storage.accounts_store import AccountsStore
        if await self.hs.get(AccountsStore).get_user(user_id) is None:
            raise not_found("The user was not found.")
        await self.extras.add_report("user", requester.user_id, target_user_id=user_id, reason=reason)


def check_event_type(event_type: str) -> None:
    if not event_type:
        raise invalid_param("Event type must not be empty")
    if len(event_type.encode("utf-8")) > MAX_TYPE_BYTES:
        raise invalid_param("Event type is longer than 255 bytes")

