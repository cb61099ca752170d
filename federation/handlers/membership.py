"""Membership over federation: joins, leaves, knocks and invites, in both roles.

server-server-api.md "Joining Rooms", "Restricted rooms", "Knocking upon a room", "Inviting to a
room", "Leaving Rooms (Rejecting Invites)"; joins-v2.yaml, leaving-v2.yaml, knocks.yaml,
invites-v2.yaml.

``hs.get(FederationMembershipHandler)``

Resident side (we are in the room; the endpoints in federation/api/membership.py call these):

* ``make_membership(origin, room_id, user_id, membership, versions)`` — the event template for
  ``make_join`` / ``make_leave`` / ``make_knock`` (prev_events from the forward extremities,
  auth_events from the current state), after checking the auth rules would allow it; restricted
  joins name a local user able to invite in ``join_authorised_via_users_server``.
* ``send_membership(origin, room_id, event_id, pdu, membership, omit_members=False)`` — check
  the signed event, co-sign restricted joins we authorised, run it through the pipeline (it is
  relayed to the room's other servers) and answer: the state and auth chain for joins (members
  left out with ``omit_members``), the stripped state for knocks, nothing for leaves.
* ``on_invite(origin, room_id, event_id, body)`` — a remote server invites a local user: sign the
  event and keep it as an out-of-band membership with its ``invite_room_state``.

Joining side (the seams of homeserver/rooms/membership.py):

* ``remote_join(requester, room_id, servers, content)`` — make_join, sign, send_join v2 (full
  state), check the state and auth chain (signatures, auth), store them as outliers, then the join
  event with that state through the pipeline.
* ``remote_knock(...)``, ``remote_leave(requester, room_id, content)`` (rejecting an invite,
  retracting a knock) and ``remote_invite(event)`` (sending our invite to the invitee's server).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from homeserver.http.errors import MatrixError, forbidden, not_found
from homeserver.protocol import event_auth, ids
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import get_named_level, get_user_power_level
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion, get_room_version
from homeserver.protocol.signing import sign_event
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.pipeline import MAX_PREV_EVENTS, RoomEventService
from homeserver.rooms.serialize import STRIPPED_STATE_TYPES
from homeserver.rooms.state import RoomStateService
from homeserver.storage.events_store import EventsStore

from ..sender import FederationSender
from .acl import ServerAclChecker
from .events import FederationEventHandler, PduRejected, path_id

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"
FED_V2 = "/_matrix/federation/v2"
MEMBER = "m.room.member"
#: rooms/v*.md: how many members the room summary's heroes hold (client-server-api /sync).
HEROES = 5


def incompatible_room_version(rv: str) -> MatrixError:
    return MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                       f"Your homeserver does not support the features required to join this room",
                       room_version=rv)


def _remote_error(e) -> MatrixError:
    code = e.code if 400 <= e.code < 500 else 502
    return MatrixError(code, e.errcode or "M_UNKNOWN", e.msg or "Remote server refused the request")


class FederationMembershipHandler:
    def __init__(self, hs):
        self.hs = hs
        self.events: RoomEventService = hs.get(RoomEventService)
        self.store: EventsStore = hs.get(EventsStore)
        self.state: RoomStateService = hs.get(RoomStateService)
        self.fed_events: FederationEventHandler = hs.get(FederationEventHandler)
        self.sender: FederationSender = hs.get(FederationSender)
        self.acl: ServerAclChecker = hs.get(ServerAclChecker)

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    def is_mine(self, user_id: str) -> bool:
        try:
            return ids.get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    # =========================================================================================
    # Resident side
    # =========================================================================================
    async def make_membership(self, origin: str, room_id: str, user_id: str, membership: str,
                              versions: Iterable[str] | None) -> dict:
        """``{"event": template, "room_version": ...}`` for make_join/make_leave/make_knock."""
        if not ids.is_valid_user_id(user_id) or ids.get_domain(user_id) != origin:
            raise forbidden("The user must belong to the requesting server")
        rv = await self.events.get_room_version(room_id)
        snap = await self.state.get_snapshot(room_id) if rv is not None else None
        if rv is None or snap is None:
            raise not_found(f"Unknown room {room_id}")
        await self.acl.check(origin, room_id)
        if versions is not None and rv.identifier not in versions:
            raise incompatible_room_version(rv.identifier)
        if membership == "knock" and not rv.knock_join_rule:
            raise incompatible_room_version(rv.identifier)
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            await self._authorise_restricted_join(room_id, rv, snap.state, user_id, content)
        template = await self._template(room_id, rv, snap, user_id, content)
        event = Event(dict(template, **({"event_id": "$template:" + self.hs.hostname}
                                       if rv.event_format == EventFormat.V1 else {})), rv)
        try:
            event_auth.check_auth_rules(event, await self.state.auth_state_for(event, snap.state))
        except event_auth.AuthError as e:
            raise forbidden(f"You are not allowed to {membership} this room: {e}") from None
        return {"event": template, "room_version": rv.identifier}

    async def _template(self, room_id: str, rv: RoomVersion, snap, user_id: str, content: dict) -> dict:
        chosen = sorted(snap.extremities.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PREV_EVENTS]
        prev_ids = [e for e, _ in chosen]
        depth = min(max((d for _, d in chosen), default=0) + 1, 2**53 - 1)
        pdu: dict[str, Any] = {
            "room_id": room_id, "type": MEMBER, "sender": user_id, "state_key": user_id,
            "content": content, "origin_server_ts": self.hs.clock_ms(), "depth": depth,
            "origin": self.hs.hostname,
        }
        draft = Event(dict(pdu, event_id="$draft", prev_events=[], auth_events=[]), rv, event_id="$draft")
        auth_ids = sorted(snap.state[k] for k in event_auth.auth_types_for_event(rv, draft) if k in snap.state)
        refs = await self._refs(rv, prev_ids + auth_ids)
        pdu["prev_events"] = [refs[e] for e in prev_ids]
        pdu["auth_events"] = [refs[e] for e in auth_ids]
        return pdu

    async def _refs(self, rv: RoomVersion, event_ids: list[str]) -> dict[str, Any]:
        if rv.event_format != EventFormat.V1:
            return {e: e for e in event_ids}
        events = await self.store.get_events(event_ids, allow_rejected=True)
        out = {}
        for e in event_ids:
            hashes = events[e].get("hashes") if e in events else None
            sha = hashes.get("sha256") if isinstance(hashes, dict) else None
            out[e] = [e, {"sha256": sha}] if sha else [e, {}]
        return out

    async def _authorise_restricted_join(self, room_id: str, rv: RoomVersion, state: dict, user_id: str,
                                         content: dict) -> None:
        """"Restricted rooms": when the join rule is restricted and the user is neither invited nor
        joined, a local member able to invite vouches for the join — if the user is in one of the
        allowed rooms as far as we know."""
        jr_id = state.get(("m.room.join_rules", ""))
        jr = await self.store.get_event(jr_id) if jr_id else None
        rule = jr.content.get("join_rule") if jr is not None else None
        restricted = (rule == "restricted" and rv.restricted_join_rule) or \
                     (rule == "knock_restricted" and rv.knock_restricted_join_rule)
        if not restricted:
            return
        if await self.events.get_membership(room_id, user_id) in ("join", "invite"):
            return
        allow = jr.content.get("allow")
        rooms = [a.get("room_id") for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"
                 and isinstance(a.get("room_id"), str)] if isinstance(allow, list) else []
        in_any = False
        for other in rooms:
            if await self.events.get_membership(other, user_id) == "join":
                in_any = True
                break
        if not in_any:
            if not any([await self.events.get_room_version(r) is not None for r in rooms]):
                raise MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN",
                                  "This server is in none of the rooms the join is restricted to")
            # joins-v2.yaml: 403 when the room does not permit the user to join (Synapse's
            # joining side would try other servers on M_UNABLE_TO_GRANT_JOIN, then answer 502).
            raise forbidden("You are not in any of the rooms or spaces required to join this room")
        keys = [("m.room.create", ""), ("m.room.power_levels", "")]
        loaded = await self.store.get_events([state[k] for k in keys if k in state])
        pl_state = {k: loaded[state[k]] for k in keys if k in state and state[k] in loaded}
        needed = get_named_level(pl_state, "invite", 0)
        for member in await self.events.get_joined_members(room_id):
            if self.is_mine(member) and get_user_power_level(member, pl_state) >= needed:
                content["join_authorised_via_users_server"] = member
                return
        # joins-v2.yaml: the user qualifies but no member of ours may invite: another server may.
        raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "This server cannot send invites to you")

    async def send_membership(self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str,
                              *, omit_members: bool = False) -> dict:
        """Handle send_join / send_leave / send_knock: check, persist, relay, answer."""
        rv = await self.events.get_room_version(room_id)
        if rv is None:
            raise not_found(f"Unknown room {room_id}")
        await self.acl.check(origin, room_id)
        from homeserver.protocol.pdu import PduFormatError, parse_pdu
        try:
            event = parse_pdu(pdu, rv)
        except PduFormatError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid event: {e}") from None
        if event.event_id != event_id:
            raise MatrixError(400, "M_BAD_JSON", "The event ID does not match the path")
        if event.room_id != room_id:
            raise MatrixError(400, "M_BAD_JSON", "The event is for another room")
        if event.type != MEMBER or event.membership != membership or event.state_key != event.sender:
            raise MatrixError(400, "M_BAD_JSON", f"Not a {membership} event of its sender")
        if ids.get_domain(event.sender) != origin:
            raise forbidden("The event's sender must belong to the requesting server")
        via = event.content.get("join_authorised_via_users_server") if membership == "join" else None
        if isinstance(via, str) and rv.restricted_join_rule and self.is_mine(via):
            # We authorised this join in make_join: co-sign it (rooms/v8.md auth rule 4.3.2).
            event = Event(sign_event(event.pdu, rv, self.hs.hostname, self.hs.signing_key), rv)
        try:
            await self.fed_events.check_signatures(event)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        self.sender.relay_event(event.event_id, exclude=[origin])
        try:
            stored = await self.fed_events.receive_pdu(origin, event)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        finally:
            self.sender.forget_relay(event.event_id)  # used by now, unless the event was refused
        meta = (await self.store.get_event_metas([event.event_id])).get(event.event_id)
        if stored.rejected_reason is not None or meta is None or meta.soft_failed:
            raise forbidden(f"The {membership} event was not accepted: {stored.rejected_reason or 'soft-failed'}")
        if membership == "leave":
            return {}
        if membership == "knock":
            return {"knock_room_state": await self.room_state_pdus(room_id)}
        return await self._join_response(room_id, stored, omit_members)

    async def _join_response(self, room_id: str, event: Event, omit_members: bool) -> dict:
        """joins-v2.yaml: the state before the join and its auth chain (v2 keeps the same shape)."""
        state_ids = await self.events.get_state_ids_before(event.event_id) or {}
        included = dict(state_ids)
        servers_in_room: list[str] = []
        if omit_members:
            heroes = await self._heroes(state_ids, event.sender)
            included = {k: v for k, v in state_ids.items() if k[0] != MEMBER or k[1] in heroes}
            members = await self.events.get_joined_members(room_id)
            servers_in_room = sorted({ids.get_domain(m) for m in members if m != event.sender}
                                     | {self.hs.hostname})
        chain_ids = await self.store.get_auth_chain_ids(sorted(set(included.values()) | set(event.auth_event_ids)))
        chain_ids |= set(event.auth_event_ids)
        if omit_members:
            chain_ids -= set(included.values())
        loaded = await self.store.get_events(set(included.values()) | chain_ids, allow_rejected=True)
        state = [loaded[e].pdu for e in sorted(set(included.values())) if e in loaded]
        chain = [loaded[e].pdu for e in sorted(chain_ids) if e in loaded]
        body: dict[str, Any] = {"origin": self.hs.hostname, "auth_chain": chain, "state": state,
                                "event": event.pdu, "members_omitted": omit_members}
        if omit_members:
            body["servers_in_room"] = servers_in_room
        return body

    async def _heroes(self, state_ids: dict, joiner: str) -> set[str]:
        """The members whose events an ``omit_members`` answer keeps: the heroes when the room has
        no name nor canonical alias, and the create event's sender and the power-level users
        (their memberships are needed to check later events)."""
        keep: set[str] = set()
        if ("m.room.name", "") not in state_ids and ("m.room.canonical_alias", "") not in state_ids:
            keep |= set(sorted(sk for (t, sk) in state_ids if t == MEMBER and sk != joiner)[:HEROES])
        wanted = [state_ids[k] for k in (("m.room.create", ""), ("m.room.power_levels", "")) if k in state_ids]
        for ev in (await self.store.get_events(wanted)).values():
            if ev.type == "m.room.create":
                keep.add(ev.sender)
            elif isinstance(ev.content.get("users"), dict):
                keep |= {u for u in ev.content["users"] if isinstance(u, str)}
        return keep

    async def room_state_pdus(self, room_id: str, member: str | None = None) -> list[dict]:
        """``invite_room_state`` / ``knock_room_state`` as federation sends them since v1.16: the
        full PDUs of the stripped-state events (the create event always among them) and, when
        given, ``member``'s membership event (invites-v2.yaml, knocks.yaml)."""
        keys = [(t, "") for t in STRIPPED_STATE_TYPES]
        if member is not None:
            keys.append((MEMBER, member))
        events = await self.events.get_current_state_events(room_id, keys)
        return [events[k].pdu for k in keys if k in events]

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: dict) -> dict:
        """invites-v2.yaml: a remote server invites one of our users."""
        from homeserver.protocol.pdu import PduFormatError, parse_pdu
        from homeserver.storage.accounts_store import AccountsStore
        ident = body.get("room_version")
        if not isinstance(ident, str):
            raise MatrixError(400, "M_MISSING_PARAM", "room_version is required")
        rv = get_room_version(ident)
        if rv is None:
            raise incompatible_room_version(ident)
        try:
            event = parse_pdu(body.get("event"), rv)
        except PduFormatError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid event: {e}") from None
        if event.event_id != event_id or event.room_id != room_id:
            raise MatrixError(400, "M_BAD_JSON", "The event does not match the path")
        if event.type != MEMBER or event.membership != "invite" or not isinstance(event.state_key, str):
            raise MatrixError(400, "M_BAD_JSON", "Not an invite event")
        if not self.is_mine(event.state_key):
            raise MatrixError(400, "M_BAD_JSON", "The invited user is not on this server")
        if ids.get_domain(event.sender) != origin:
            raise forbidden("The inviter must belong to the requesting server")
        await self.acl.check(origin, room_id)
        if not await self.hs.get(AccountsStore).user_exists(event.state_key):
            raise not_found("Unknown user")
        # client-server-api modules/invite_permission.md: 403 M_INVITE_BLOCKED (v1.18).
        await self.hs.get(MembershipService).check_invite_permission(event.state_key)
        try:
            await self.fed_events.check_signatures(event)
        except PduRejected as e:
            raise forbidden(str(e)) from None
        from .invite_state import check_invite_room_state
        await check_invite_room_state(self.fed_events, rv, room_id, body.get("invite_room_state"))
        if await self.events.get_membership(room_id, event.state_key) in ("join", "ban"):
            raise forbidden("The user is already joined to or banned from the room")
        signed = sign_event(event.pdu, rv, self.hs.hostname, self.hs.signing_key)
        stored_pdu = dict(signed)
        invite_state = body.get("invite_room_state")
        if isinstance(invite_state, list):
            unsigned = dict(stored_pdu.get("unsigned") or {})
            unsigned["invite_room_state"] = stripped_client_state(invite_state)
            stored_pdu["unsigned"] = unsigned
        await self.events.store_out_of_band_membership(Event(stored_pdu, rv, event_id=event.event_id))
        return {"event": signed}

    # =========================================================================================
    # Joining side (seams of homeserver/rooms/membership.py)
    # =========================================================================================
    async def _make(self, servers: list[str], room_id: str, user_id: str, membership: str
                    ) -> tuple[str, RoomVersion, dict]:
        """make_join/make_leave/make_knock through the first server that answers."""
        from ..client import FederationError, FederationUnreachable
        args = {"ver": sorted(KNOWN_ROOM_VERSIONS)} if membership in ("join", "knock") else None
        last: Exception | None = None
        for server in servers:
            try:
                resp = await self.client.get_json(
                    server, f"{FED_V1}/make_{membership}/{path_id(room_id)}/{path_id(user_id)}", args)
            except FederationError as e:
                if e.errcode == "M_INCOMPATIBLE_ROOM_VERSION":
                    raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", e.msg) from None
                last = e
                continue
            except FederationUnreachable as e:
                last = e
                continue
            rv = get_room_version(str(resp.get("room_version", "1")))
            template = resp.get("event")
            if rv is None:
                raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version")
            if not isinstance(template, dict) or template.get("room_id") != room_id \
                    or template.get("sender") != user_id or template.get("state_key") != user_id \
                    or template.get("type") != MEMBER:
                last = MatrixError(502, "M_UNKNOWN", f"{server} sent a bad make_{membership} template")
                continue
            return server, rv, template
        if isinstance(last, MatrixError):
            raise last
        if last is not None and hasattr(last, "code"):
            raise _remote_error(last)
        raise MatrixError(404, "M_NOT_FOUND", f"No known servers could help with the {membership}: {last}")

    def _sign_template(self, template: dict, rv: RoomVersion, content: dict) -> Event:
        pdu = {k: v for k, v in template.items() if k not in ("signatures", "hashes", "unsigned", "event_id")}
        new_content = dict(content)
        via = (template.get("content") or {}).get("join_authorised_via_users_server")
        if isinstance(via, str) and content.get("membership") == "join":
            new_content["join_authorised_via_users_server"] = via
        pdu["content"] = new_content
        pdu["origin"] = self.hs.hostname
        pdu["origin_server_ts"] = self.hs.clock_ms()
        if rv.event_format == EventFormat.V1:
            pdu["event_id"] = ids.new_v1_event_id(self.hs.hostname)
        return Event(sign_event(pdu, rv, self.hs.hostname, self.hs.signing_key), rv)

    async def remote_join(self, requester, room_id: str, servers: list[str], content: dict) -> str:
        from ..client import FederationError, FederationUnreachable
        user_id = requester.user_id
        server, rv, template = await self._make(servers, room_id, user_id, "join")
        event = self._sign_template(template, rv, content)
        try:
            resp = await self.client.put_json(
                server, f"{FED_V2}/send_join/{path_id(room_id)}/{path_id(event.event_id)}", event.pdu)
        except FederationError as e:
            raise _remote_error(e) from None
        except FederationUnreachable as e:
            raise MatrixError(502, "M_UNKNOWN", f"send_join to {server} failed: {e.reason}") from None
        returned = resp.get("event")
        if isinstance(returned, dict):
            try:
                signed_back = await self.fed_events.check_pdu(returned, rv, room_id=room_id)
                if signed_back.event_id == event.event_id:
                    event = signed_back
            except PduRejected as e:
                logger.info("%s returned a bad join event: %s", server, e)
        state_pdus = resp.get("state") if isinstance(resp.get("state"), list) else []
        chain_pdus = resp.get("auth_chain") if isinstance(resp.get("auth_chain"), list) else []
        checked = await self.fed_events.check_pdus(list(chain_pdus) + list(state_pdus), rv, room_id)
        stored = await self.fed_events.store_outliers(server, room_id, rv, checked)
        state_ids: set[str] = set()
        for pdu in state_pdus:
            eid = _event_id_or_none(pdu, rv)
            if eid is not None:
                state_ids.add(eid)
        state: dict = {}
        for eid in state_ids:
            ev = stored.get(eid)
            if ev is not None and ev.is_state() and ev.rejected_reason is None:
                state[ev.state_tuple] = eid
        create_id = state.get(("m.room.create", ""))
        create = stored.get(create_id) if create_id else None
        if create is None or create.room_id != room_id:
            raise MatrixError(502, "M_UNKNOWN", f"{server} sent a join state without the room's create event")
        # Also for a room we knew but had left (stale state): the resident's state is the truth.
        joined = await self.events.handle_remote_event(event, state_before=state, soft_fail_check=False)
        if joined.rejected_reason is not None:
            raise forbidden(f"The join was rejected: {joined.rejected_reason}")
        return room_id

    async def remote_knock(self, requester, room_id: str, servers: list[str], content: dict) -> str:
        from ..client import FederationError, FederationUnreachable
        server, rv, template = await self._make(servers, room_id, requester.user_id, "knock")
        event = self._sign_template(template, rv, content)
        try:
            resp = await self.client.put_json(
                server, f"{FED_V1}/send_knock/{path_id(room_id)}/{path_id(event.event_id)}", event.pdu)
        except FederationError as e:
            raise _remote_error(e) from None
        except FederationUnreachable as e:
            raise MatrixError(502, "M_UNKNOWN", f"send_knock to {server} failed: {e.reason}") from None
        pdu = dict(event.pdu)
        state = resp.get("knock_room_state")
        if isinstance(state, list):
            pdu["unsigned"] = {"knock_room_state": stripped_client_state(state)}
        await self.events.store_out_of_band_membership(Event(pdu, rv, event_id=event.event_id))
        return room_id

    async def remote_leave(self, requester, room_id: str, content: dict) -> None:
        """Reject an invite / retract a knock: make_leave + send_leave v2 through the server of
        the inviter (or the room), then record the leave as our out-of-band membership."""
        from ..client import FederationError, FederationUnreachable
        user_id = requester.user_id
        row = await self.store.get_membership(room_id, user_id)
        servers: list[str] = []
        if row is not None:
            ev = await self.store.get_event(row[1], allow_rejected=True)
            if ev is not None:
                servers.append(ids.get_domain(ev.sender))
                for s in (ev.unsigned.get("invite_room_state") or []) if isinstance(ev.unsigned, dict) else []:
                    if isinstance(s, dict) and isinstance(s.get("sender"), str):
                        try:
                            servers.append(ids.get_domain(s["sender"]))
                        except ValueError:
                            pass
        if ":" in room_id:
            servers.append(ids.get_domain(room_id))
        servers = [s for s in dict.fromkeys(servers) if s != self.hs.hostname]
        if not servers:
            raise MatrixError(404, "M_NOT_FOUND", "No known servers")
        server, rv, template = await self._make(servers, room_id, user_id, "leave")
        event = self._sign_template(template, rv, content)
        try:
            await self.client.put_json(
                server, f"{FED_V2}/send_leave/{path_id(room_id)}/{path_id(event.event_id)}", event.pdu)
        except FederationError as e:
            raise _remote_error(e) from None
        except FederationUnreachable as e:
            raise MatrixError(502, "M_UNKNOWN", f"send_leave to {server} failed: {e.reason}") from None
        await self.events.store_out_of_band_membership(event)

    async def remote_invite(self, event: Event) -> Event:
        """Send our invite to the invitee's server (invites-v2.yaml) and return it with that
        server's signature; its refusal aborts the invite."""
        from ..client import FederationError, FederationUnreachable
        target = event.state_key
        destination = ids.get_domain(target)
        rv = event.room_version
        pdu = {k: v for k, v in event.pdu.items() if k != "unsigned"}
        body = {"room_version": rv.identifier, "event": pdu,
                "invite_room_state": await self.room_state_pdus(event.room_id, event.sender)}
        try:
            resp = await self.client.put_json(
                destination, f"{FED_V2}/invite/{path_id(event.room_id)}/{path_id(event.event_id)}", body)
        except FederationError as e:
            raise _remote_error(e) from None
        except FederationUnreachable as e:
            raise MatrixError(502, "M_UNKNOWN", f"Inviting {target} failed: {e.reason}") from None
        returned = resp.get("event")
        if not isinstance(returned, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{destination} sent no signed invite")
        try:
            signed = await self.fed_events.check_pdu(returned, rv, room_id=event.room_id)
            await self.fed_events.keyring.verify_json_for_server(
                destination, _redacted(signed), valid_at_ts=None)
        except Exception as e:
            raise MatrixError(502, "M_UNKNOWN", f"{destination} sent a bad signed invite: {e}") from None
        if signed.event_id != event.event_id:
            raise MatrixError(502, "M_UNKNOWN", f"{destination} changed the invite event")
        out = dict(signed.pdu)
        if isinstance(event.unsigned, dict) and event.unsigned:
            out["unsigned"] = event.unsigned
        return Event(out, rv, event_id=event.event_id)


def stripped_client_state(events: list) -> list[dict]:
    """Stripped state as clients see it (client-server-api "Stripped state": type, state_key,
    sender, content) from what another server sent (full PDUs since v1.16, stripped before)."""
    out = []
    for e in events:
        if isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(e.get("state_key"), str) \
                and isinstance(e.get("content"), dict):
            out.append({"type": e["type"], "state_key": e["state_key"], "sender": e.get("sender"),
                        "content": e["content"]})
    return out


def _redacted(event: Event) -> dict:
    from homeserver.protocol.redaction import redact
    return redact(event.pdu, event.room_version)


def _event_id_or_none(pdu, rv: RoomVersion) -> str | None:
    try:
        return Event(pdu, rv).event_id
    except Exception:
        return None
