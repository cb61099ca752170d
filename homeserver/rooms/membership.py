"""Membership changes of local users: join, leave, invite, kick, ban, unban, knock, forget.

Spec: client-server-api "Room membership" (joining.yaml, inviting.yaml, leaving.yaml, kicking.yaml,
banning.yaml, knocking.yaml), "Restricted rooms", modules/guest_access.md "Server behaviour",
"Stripped state"; rooms/vN.md for the auth rules the pipeline enforces.

Every change is an ``m.room.member`` event sent through the one pipeline
(:meth:`RoomEventService.create_and_send_event`); this service decides the content (the target's
display name and avatar on joins, invites and knocks; ``reason``; ``join_authorised_via_users_server``
for restricted joins), refuses what the spec refuses before the auth rules would (invite of a
joined user, unban of a user who is not banned, knocks in rooms that do not allow them) and counts
the rc_joins / rc_invites rate limits.

Seams for federation (None until it sets them):

* ``remote_join(requester, room_id, servers, content) -> room_id``: join a room this server is
  not in through one of ``servers``;
* ``remote_knock(requester, room_id, servers, content) -> room_id``;
* ``remote_leave(requester, room_id, content) -> None``: reject an invite or retract a knock
  for a room this server is not in;
* ``remote_invite(event) -> event``: an invite of another server's user, built and authorised
  here, is sent to the invitee's server (``PUT /invite``) before it is persisted; the seam returns
  it with that server's signature added, or raises to refuse the invite.

Without them such requests get 404 M_NOT_FOUND "No known servers".
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable, Mapping

from twisted.internet import defer

from homeserver.accounts.auth import Requester, check_not_suspended
from homeserver.accounts.ratelimit import Ratelimiter
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import get_named_level, get_user_power_level
from homeserver.storage.room_extras_store import RoomExtrasStore

from .guest_kicks import GuestAccessEnforcer
from .pipeline import RoomEventService
from .serialize import STRIPPED_STATE_TYPES, strip_event

logger = logging.getLogger(__name__)

JOIN, LEAVE, INVITE, BAN, KNOCK = "join", "leave", "invite", "ban", "knock"
#: Actions of update_membership (kick and unban are "leave" with a different check).
ACTIONS = ("join", "leave", "invite", "kick", "ban", "unban", "knock")

RemoteJoin = Callable[[Any, str, list, dict], Awaitable[str]]
RemoteLeave = Callable[[Any, str, dict], Awaitable[None]]


#: modules/invite_permission.md (v1.18, MSC4380): the account data a user blocks invites with.
INVITE_PERMISSION_TYPE = "m.invite_permission_config"


def no_known_servers() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "No known servers")


def invite_blocked() -> MatrixError:
    """403 M_INVITE_BLOCKED (modules/invite_permission.md "Server behaviour")."""
    return MatrixError(403, "M_INVITE_BLOCKED", "The user does not accept invites")


class MembershipService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.limiter = hs.get(Ratelimiter)
        self.extras = hs.get(RoomExtrasStore)
        self.remote_join: RemoteJoin | None = None
        self.remote_knock: RemoteJoin | None = None
        self.remote_leave: RemoteLeave | None = None
        self.remote_invite: Callable[[Event], Awaitable[Event]] | None = None
        hs.get(GuestAccessEnforcer)  # guests leave rooms that stop allowing them

    def is_mine(self, user_id: str) -> bool:
        try:
            return ids.get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    # =========================================================================================
    async def update_membership(self, requester, target: str, room_id: str, action: str, *,
                                reason: Any = None, servers: Iterable[str] = (),
                                extra_content: Mapping[str, Any] | None = None, txn_id: str | None = None,
                                ratelimit: bool = True) -> Event:
        """Change ``target``'s membership of ``room_id`` as ``requester``; return the member event
        (the existing one when nothing changes: join while joined with the same profile, invite
        of an invited user, leave after leaving). ``action`` is one of :data:`ACTIONS`.

        Raises 400 M_INVALID_PARAM (bad user ID), M_BAD_JSON (reason not a string), 403
        M_FORBIDDEN (auth rules, already joined, not banned, guests), 403 M_USER_SUSPENDED (joins,
        knocks and invites of suspended requesters), 403 M_INVITE_BLOCKED (a local invitee blocks
        invites; a remote invitee's server says so itself), 404 M_NOT_FOUND (unknown room,
        or a remote room without the federation seam: "No known servers"), 429 M_LIMIT_EXCEEDED."""
        if action not in ACTIONS:
            raise ValueError(f"unknown membership action {action!r}")
        if not isinstance(target, str) or not ids.is_valid_user_id(target):
            raise invalid_param(f"Invalid user ID {target!r}")
        if reason is not None and not isinstance(reason, str):
            raise bad_json("reason must be a string")
        user_id = requester.user_id
        if action in ("join", "knock", "leave") and target != user_id:
            raise forbidden("Cannot change another user's membership this way")
        if action in ("join", "knock", "invite"):
            # "Account suspension": no joining, knocking, accepting (a join) or sending invites;
            # leaving and rejecting invites stay allowed.
            check_not_suspended(requester)

        if ratelimit:
            self._ratelimit(requester, target, room_id, action)

        rv = await self.events.get_room_version(room_id)
        if rv is None or (action in ("join", "knock") and await self._left_by_this_server(room_id, action)):
            return await self._remote_room(requester, room_id, action, reason, list(servers), extra_content)

        # The target's membership is read while a join reads the joiner's profile (two database
        # reads at once; on PostgreSQL each is a round trip).
        reading = defer.ensureDeferred(self.events.get_membership(room_id, target))
        content: dict[str, Any] = dict(extra_content or {})
        extra_pdu: dict[str, Any] | None = None
        if action == "join":
            content["membership"] = JOIN
            await self._add_profile(content, target)  # logs and goes on when the read fails
        current = await reading
        if action == "join":
            if requester.is_guest:
                await self._check_guest_access(room_id)
                content["kind"] = "guest"  # as Synapse marks guests' joins
            if current == JOIN:
                existing = await self._current_member_event(room_id, target)
                if existing is not None and _same_join(existing.content, content, reason):
                    return existing
            if current not in (JOIN, INVITE):
                await self._authorise_restricted_join(room_id, target, content)
        elif action == "knock":
            if not rv.knock_join_rule:
                raise forbidden("This room version does not support knocking")
            if current in (JOIN, INVITE, BAN):
                raise forbidden({JOIN: "You are already in the room", INVITE: "You are already invited",
                                 BAN: "You are banned from the room"}[current])
            content["membership"] = KNOCK
            await self._add_profile(content, target)
        elif action == "leave":
            if current == LEAVE:
                existing = await self._current_member_event(room_id, target)
                if existing is not None:
                    return existing
            if current is None:
                raise forbidden("You are not a member of this room")
            content["membership"] = LEAVE
        elif action == "invite":
            if current == JOIN:
                raise forbidden(f"{target} is already in the room")
            if current == BAN:
                raise forbidden(f"{target} is banned from the room")
            if current == INVITE:
                existing = await self._current_member_event(room_id, target)
                if existing is not None:
                    return existing
            await self.check_invite_permission(target)
            content["membership"] = INVITE
            await self._add_profile(content, target)
            extra_pdu = {"unsigned": {"invite_room_state": await self.stripped_state(room_id)}}
        elif action == "kick":
            if current not in (JOIN, INVITE, KNOCK):
                raise forbidden(f"{target} is not in the room")
            content["membership"] = LEAVE
        elif action == "ban":
            content["membership"] = BAN
        elif action == "unban":
            if current != BAN:
                raise forbidden(f"{target} is not banned")
            content["membership"] = LEAVE
        if reason is not None:
            content["reason"] = reason
        before_persist = None
        if action == "invite" and not self.is_mine(target) and self.remote_invite is not None:
            before_persist = self.remote_invite
        return await self.events.create_and_send_event(
            room_id, "m.room.member", content, user_id, target, txn_id=txn_id,
            device_id=requester.device_id, extra_pdu_fields=extra_pdu, before_persist=before_persist)

    def _ratelimit(self, requester, target: str, room_id: str, action: str) -> None:
        key = requester.user_id
        if action == "join":
            self.limiter.check("rc_joins.local", key, requester=requester)
            self.limiter.check("rc_joins_per_room", room_id, requester=requester)
        elif action == "invite":
            self.limiter.check("rc_invites.per_room", room_id, requester=requester)
            self.limiter.check("rc_invites.per_user", target, requester=requester)
            self.limiter.check("rc_invites.per_issuer", key, requester=requester)
        elif action == "knock":
            self.limiter.check("rc_joins.local", key, requester=requester)

    async def _remote_room(self, requester, room_id: str, action: str, reason, servers: list,
                           extra_content) -> Any:
        """A room this server has no state of: joins and knocks go over federation; leaving
        rejects an out-of-band invite or retracts a knock."""
        content: dict[str, Any] = dict(extra_content or {})
        if reason is not None:
            content["reason"] = reason
        if action in ("join", "knock"):
            if not ids.is_valid_room_id(room_id):
                raise invalid_param("Invalid room ID")
            if ":" in room_id:
                domain = ids.get_domain(room_id)
                if domain != self.hs.hostname and domain not in servers:
                    servers = servers + [domain]
            servers = servers + await self._inviting_servers(room_id, requester.user_id)
            servers = servers + await self._resident_servers(room_id)
            servers = [s for s in dict.fromkeys(servers) if s != self.hs.hostname]
            seam = self.remote_join if action == "join" else self.remote_knock
            if seam is None or not servers:
                raise no_known_servers()
            content["membership"] = action
            await self._add_profile(content, requester.user_id)
            return await seam(requester, room_id, servers, content)
        if action == "leave":
            row = await self.events.store.get_membership(room_id, requester.user_id)
            if row is None:
                raise not_found("Unknown room")
            if row[0] in (LEAVE, BAN):
                return await self.events.store.get_event(row[1], allow_rejected=True)
            if self.remote_leave is None:
                raise no_known_servers()
            content["membership"] = LEAVE
            await self.remote_leave(requester, room_id, content)
            return await self.events.store.get_event(
                (await self.events.store.get_membership(room_id, requester.user_id) or row)[1],
                allow_rejected=True)
        raise not_found("Unknown room")

    async def _left_by_this_server(self, room_id: str, action: str) -> bool:
        """A room we know but none of our users is joined to any more: our copy of its state is
        stale, so joins and knocks go through a resident server (as Synapse does) when federation
        can do it and other servers' users are (or the room's creator was) in it."""
        seam = self.remote_join if action == "join" else self.remote_knock
        if seam is None:
            return False
        joined = await self.events.get_joined_members(room_id)
        if any(self.is_mine(m) for m in joined):
            return False
        if joined:
            return True  # others are (as far as we know) still there
        create = await self.events.get_current_state_event(room_id, "m.room.create")
        return create is not None and not self.is_mine(create.sender)

    async def _resident_servers(self, room_id: str) -> list[str]:
        """Servers of the joined members in our (possibly stale) copy of a room we left."""
        out = []
        for member in await self.events.get_joined_members(room_id):
            try:
                out.append(ids.get_domain(member))
            except ValueError:
                continue
        return sorted(set(out))

    async def _inviting_servers(self, room_id: str, user_id: str) -> list[str]:
        """The server of whoever invited the user (an out-of-band invite to a room we are not
        in): it can help with the join (room IDs of v12 rooms name no server)."""
        row = await self.events.store.get_membership(room_id, user_id)
        if row is None or row[0] != INVITE:
            return []
        ev = await self.events.store.get_event(row[1], allow_rejected=True)
        try:
            return [ids.get_domain(ev.sender)] if ev is not None else []
        except ValueError:
            return []

    # --- content ---------------------------------------------------------------------------------
    async def _add_profile(self, content: dict, user_id: str) -> None:
        """displayname and avatar_url of a local user (client-server-api m.room.member)."""
        if not self.is_mine(user_id):
            return
        from homeserver.client.profile import ProfileService
        try:
            profiles = await self.hs.get(ProfileService).get_profiles([user_id])
        except Exception:
            logger.exception("reading the profile of %s failed", user_id)
            return
        profile = profiles.get(user_id) or {}
        for key in ("displayname", "avatar_url"):
            value = profile.get(key)
            if isinstance(value, str) and key not in content:
                content[key] = value

    async def _current_member_event(self, room_id: str, user_id: str) -> Event | None:
        return await self.events.get_current_state_event(room_id, "m.room.member", user_id)

    async def _check_guest_access(self, room_id: str) -> None:
        """modules/guest_access.md: guests may join only with guest_access "can_join"."""
        ev = await self.events.get_current_state_event(room_id, "m.room.guest_access")
        if ev is None or ev.content.get("guest_access") != "can_join":
            raise MatrixError(403, "M_FORBIDDEN", "Guest access is not allowed in this room")

    async def _authorise_restricted_join(self, room_id: str, user_id: str, content: dict) -> None:
        """Restricted rooms ("Restricted rooms", rooms/v8.md): a join without an invite needs a
        joined member of an allowed room, and ``join_authorised_via_users_server`` names a local
        member able to invite. Nothing to do for other join rules."""
        rv = await self.events.get_room_version(room_id)
        jr = await self.events.get_current_state_event(room_id, "m.room.join_rules")
        rule = jr.content.get("join_rule") if jr is not None else None
        restricted = (rule == "restricted" and rv.restricted_join_rule) or \
                     (rule == "knock_restricted" and rv.knock_restricted_join_rule)
        if not restricted:
            return
        allow = jr.content.get("allow")
        allowed_rooms = [a.get("room_id") for a in allow if isinstance(a, dict)
                         and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)] \
            if isinstance(allow, list) else []
        ok = False
        for other in allowed_rooms:
            if await self.events.get_membership(other, user_id) == JOIN:
                ok = True
                break
        if not ok:
            raise forbidden("You do not belong to any of the rooms this room is restricted to")
        state = await self.events.get_current_state_events(room_id, [("m.room.create", ""),
                                                                     ("m.room.power_levels", "")])
        needed = get_named_level(state, "invite", 0)
        for member in await self.events.get_joined_members(room_id):
            if self.is_mine(member) and get_user_power_level(member, state) >= needed:
                content["join_authorised_via_users_server"] = member
                return
        raise forbidden("No local user of this server can authorise your join")

    # --- invite permission (modules/invite_permission.md, v1.18) -----------------------------
    async def invites_blocked(self, user_id: str) -> bool:
        """Whether a local user blocks every invite: ``m.invite_permission_config`` account data
        with ``default_action: "block"`` (any other or missing value: invites as normal)."""
        if not self.is_mine(user_id):
            return False
        from homeserver.client.account_data import AccountDataService  # client builds on rooms
        content = await self.hs.get(AccountDataService).get_global(user_id, INVITE_PERMISSION_TYPE)
        return isinstance(content, dict) and content.get("default_action") == "block"

    async def check_invite_permission(self, user_id: str) -> None:
        """403 M_INVITE_BLOCKED when the local ``user_id`` blocks invites: for the client
        invite endpoints, createRoom's ``invite`` list and federation's PUT /invite."""
        if await self.invites_blocked(user_id):
            raise invite_blocked()

    async def stripped_state(self, room_id: str) -> list[dict]:
        """The room's stripped state for invites and knocks."""
        events = await self.events.get_current_state_events(room_id, [(t, "") for t in STRIPPED_STATE_TYPES])
        return [strip_event(events[(t, "")]) for t in STRIPPED_STATE_TYPES if (t, "") in events]

    # --- forget ----------------------------------------------------------------------------------
    async def forget(self, requester, room_id: str) -> None:
        """POST /rooms/{roomId}/forget: only once left or banned (400 M_UNKNOWN otherwise)."""
        row = await self.events.store.get_membership(room_id, requester.user_id)
        if row is None:
            if await self.events.get_room_version(room_id) is None:
                raise not_found("Unknown room")
            return
        if row[0] not in (LEAVE, BAN):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self.extras.forget_room(requester.user_id, room_id, row[1])

    async def get_forgotten_rooms(self, user_id: str) -> set[str]:
        return await self.extras.get_forgotten_rooms(user_id)

    # --- deactivation ---------------------------------------------------------------------------
    async def leave_all_rooms(self, user_id: str) -> None:
        """Deactivation (account_deactivation.yaml): leave every room ``user_id`` is joined to,
        reject their invites and retract their knocks, as the user themselves; a room that
        refuses (e.g. a remote invite without the federation seam) is logged and skipped."""
        requester = Requester(user_id, None, None)
        for room_id in await self.events.get_rooms_for_user(user_id, (JOIN, INVITE, KNOCK)):
            try:
                await self.update_membership(requester, user_id, room_id, "leave", ratelimit=False)
            except MatrixError as e:
                logger.info("deactivated %s could not leave %s: %s", user_id, room_id, e.msg)

    # --- profile propagation ------------------------------------------------------------------
    async def on_profile_changed(self, user_id: str, old: dict, new: dict) -> None:
        """Send a new join event with the new display name/avatar into each joined room
        (client-server-api "Events on Change of Profile Information")."""
        for room_id in await self.events.get_rooms_for_user(user_id, ("join",)):
            existing = await self._current_member_event(room_id, user_id)
            if existing is None or existing.membership != JOIN:
                continue
            content = {k: v for k, v in existing.content.items() if k not in ("displayname", "avatar_url")}
            for key in ("displayname", "avatar_url"):
                if isinstance(new.get(key), str):
                    content[key] = new[key]
            if content == existing.content:
                continue
            try:
                await self.events.create_and_send_event(room_id, "m.room.member", content, user_id, user_id)
            except MatrixError as e:
                logger.info("profile update of %s in %s refused: %s", user_id, room_id, e.msg)


def _same_join(old: Mapping, new: Mapping, reason) -> bool:
    if old.get("membership") != JOIN or reason is not None:
        return False
    keys = set(old) | set(new)
    return all(old.get(k) == new.get(k) for k in keys
               if k not in ("reason", "join_authorised_via_users_server"))
