"""Room aliases: creating, resolving and deleting ``#alias:server`` mappings, the local aliases of
a room, and the check of ``m.room.canonical_alias`` content before it is sent.

Spec: client-server-api "Room aliases" (directory.yaml), m.room.canonical_alias and
room_state.yaml (400 M_BAD_ALIAS / M_INVALID_PARAM), appendices "Room Aliases".

Seams for later work:

* ``remote_resolver``: federation sets it to an ``async (alias) -> (room_id, servers) | None``
  that asks the alias's server (server-server-api ``GET /_matrix/federation/v1/query/directory``).
  Until then, aliases of other servers resolve to 404. :meth:`AliasService.resolve_local` is what
  that federation query endpoint answers with.
* ``namespace_hooks``: application services add ``(alias, requester) -> "reserved" | "owner" | None``:
  "reserved" when the alias is in another service's exclusive namespace (creating it is 400
  M_EXCLUSIVE), "owner" when the requester is the service whose namespace holds it (it may create
  the alias without being in the room and delete it).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Mapping

from homeserver.accounts.auth import AuthService, Requester
from homeserver.http.errors import MatrixError, forbidden, invalid_param, missing_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.power_levels import get_power_level_for_event, get_user_power_level
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.directory_store import DirectoryStore

logger = logging.getLogger(__name__)

RemoteResolver = Callable[[str], Awaitable["tuple[str, list[str]] | None"]]
NamespaceHook = Callable[[str, Requester], "str | None"]


def bad_alias(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_ALIAS", msg)


class AliasService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(DirectoryStore)
        self.events = hs.get(RoomEventService)
        self.auth = hs.get(AuthService)
        self.remote_resolver: RemoteResolver | None = None
        self.namespace_hooks: list[NamespaceHook] = []
        #: ``async (alias) -> bool`` asked when a local alias is unknown; True means the alias may
        #: exist now (an application service created it: application-service-api.md "Querying").
        self.local_miss_hooks: list[Callable[[str], Awaitable[bool]]] = []

    # --- checks ---------------------------------------------------------------------------------
    def check_alias_syntax(self, alias: Any) -> str:
        """``alias`` if it is a valid room alias (appendices "Room Aliases"), else 400 M_INVALID_PARAM."""
        if not isinstance(alias, str) or not ids.is_valid_room_alias(alias):
            raise invalid_param("Room alias invalid")
        return alias

    def is_local(self, alias: str) -> bool:
        return ids.get_domain(alias) == self.hs.hostname

    def _namespace(self, alias: str, requester: Requester) -> str | None:
        verdicts = {hook(alias, requester) for hook in self.namespace_hooks}
        if "owner" in verdicts:
            return "owner"
        return "reserved" if "reserved" in verdicts else None

    def _check_creatable(self, alias: str, requester: Requester) -> str | None:
        """Syntax, our domain and appservice namespaces; returns the namespace verdict."""
        self.check_alias_syntax(alias)
        if not self.is_local(alias):
            raise invalid_param("Room alias must be on this server")
        verdict = self._namespace(alias, requester)
        if verdict == "reserved":
            raise MatrixError(400, "M_EXCLUSIVE", "Room alias is reserved by an application service")
        return verdict

    # --- create / delete ------------------------------------------------------------------------
    async def create_alias(self, requester: Requester, alias: str, room_id: Any, *,
                           check_membership: bool = True) -> None:
        """``PUT /directory/room/{roomAlias}``: map a local alias to a room the requester is joined
        to. 400 M_INVALID_PARAM for a bad or foreign alias or room ID, 400 M_EXCLUSIVE for an alias
        reserved by an application service, 404 for an unknown room, 403 when not joined (server
        admins and the namespace's appservice excepted), 409 M_UNKNOWN when the alias exists."""
        verdict = self._check_creatable(alias, requester)
        if room_id is None:
            raise missing_param("Missing room_id")
        if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id):
            raise invalid_param("room_id is not a valid room ID")
        if check_membership and verdict != "owner":
            if await self.events.get_room_version(room_id) is None:
                raise not_found("Room not found")
            membership = await self.events.get_membership(room_id, requester.user_id)
            if membership != "join" and not await self.auth.is_server_admin(requester.user_id):
                raise forbidden("You must be in the room to create an alias for it")
        if not await self.store.create_alias(alias, room_id, requester.user_id, self.hs.clock_ms()):
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists.")

    async def check_new_room_alias(self, requester: Requester, localpart: Any) -> str:
        """For ``POST /createRoom`` with ``room_alias_name``: the full alias, checked before the room
        is made (400 M_INVALID_PARAM when invalid, 400 M_ROOM_IN_USE when taken). The caller then
        calls :meth:`create_alias` with ``check_membership=False`` once the room exists."""
        if not isinstance(localpart, str) or not localpart or ":" in localpart:
            raise invalid_param("room_alias_name is not a valid alias localpart")
        alias = f"#{localpart}:{self.hs.hostname}"
        self._check_creatable(alias, requester)
        if await self.store.get_alias(alias) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        return alias

    async def delete_alias(self, requester: Requester, alias: str) -> str:
        """``DELETE /directory/room/{roomAlias}``: remove a local alias. Allowed for the alias's
        creator, server admins, the appservice owning its namespace and users who may send
        ``m.room.canonical_alias`` in the room; 403 otherwise, 404 when unknown. The alias is then
        dropped from the room's canonical alias event when the requester may change it (directory.yaml,
        DELETE note). Returns the room ID."""
        self.check_alias_syntax(alias)
        record = await self.store.get_alias(alias) if self.is_local(alias) else None
        if record is None:
            raise not_found(f"Room alias {alias} not found.")
        if not (record.creator == requester.user_id or self._namespace(alias, requester) == "owner"
                or await self.auth.is_server_admin(requester.user_id)
                or await self.may_change_canonical_alias(record.room_id, requester.user_id)):
            raise forbidden("You don't have permission to delete the alias.")
        room_id = await self.store.delete_alias(alias)
        if room_id is None:
            raise not_found(f"Room alias {alias} not found.")
        await self._remove_from_canonical_alias(room_id, alias, requester.user_id)
        return room_id

    async def may_change_canonical_alias(self, room_id: str, user_id: str) -> bool:
        """Whether a joined member's power level reaches the level for sending
        ``m.room.canonical_alias`` (the test for deleting others' aliases and publishing rooms)."""
        state = await self.events.get_current_state_events(
            room_id, [("m.room.create", ""), ("m.room.power_levels", "")])
        if ("m.room.create", "") not in state:
            return False
        if await self.events.get_membership(room_id, user_id) != "join":
            return False
        needed = get_power_level_for_event("m.room.canonical_alias", state, is_state=True)
        return get_user_power_level(user_id, state) >= needed

    async def _remove_from_canonical_alias(self, room_id: str, alias: str, user_id: str) -> None:
        event = await self.events.get_current_state_event(room_id, "m.room.canonical_alias")
        if event is None or not isinstance(event.content, dict):
            return
        content = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self.events.create_and_send_event(room_id, "m.room.canonical_alias", content, user_id, "")
        except MatrixError as e:
            logger.info("not updating the canonical alias of %s after deleting %s: %s", room_id, alias, e.msg)

    # --- resolving ------------------------------------------------------------------------------
    async def resolve_local(self, alias: str) -> tuple[str, list[str]] | None:
        """(room_id, servers) of one of our aliases, or None. ``servers``: this server first, then
        the other servers with members joined to the room."""
        record = await self.store.get_alias(alias)
        if record is None:
            return None
        servers = {self.hs.hostname}
        for user in await self.events.get_joined_members(record.room_id):
            try:
                servers.add(ids.get_domain(user))
            except ValueError:
                continue
        return record.room_id, [self.hs.hostname] + sorted(servers - {self.hs.hostname})

    async def resolve(self, alias: str) -> tuple[str, list[str]]:
        """``GET /directory/room/{roomAlias}`` and joins by alias: (room_id, servers). 400
        M_INVALID_PARAM for an invalid alias, 404 M_NOT_FOUND when unknown. Aliases of other
        servers go to ``remote_resolver`` (federation), 404 when there is none."""
        self.check_alias_syntax(alias)
        if self.is_local(alias):
            found = await self.resolve_local(alias)
            for hook in list(self.local_miss_hooks) if found is None else ():
                if await hook(alias):
                    found = await self.resolve_local(alias)
                    break
        elif self.remote_resolver is not None:
            found = await self.remote_resolver(alias)
        else:
            found = None
        if found is None:
            raise not_found(f"Room alias {alias} not found.")
        return found

    async def get_local_aliases(self, requester: Requester, room_id: str) -> list[str]:
        """``GET /rooms/{roomId}/aliases``: for members (joined) of the room or anyone when its
        history is world_readable; 403 otherwise (server admins excepted)."""
        if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id):
            raise invalid_param("Invalid room ID")
        if await self.events.get_membership(room_id, requester.user_id) != "join":
            event = await self.events.get_current_state_event(room_id, "m.room.history_visibility")
            visibility = event.content.get("history_visibility") if event is not None else None
            if visibility != "world_readable" and not await self.auth.is_server_admin(requester.user_id):
                raise forbidden("You are not a member of the room.")
        return await self.store.get_aliases_for_room(room_id)

    # --- m.room.canonical_alias ----------------------------------------------------------------
    async def validate_canonical_alias_content(self, room_id: str, content: Mapping[str, Any],
                                               previous_content: Mapping[str, Any] | None = None) -> None:
        """Check the content of an ``m.room.canonical_alias`` event about to be sent in ``room_id``
        (room_state.yaml, 400): M_INVALID_PARAM when ``alias`` is not a valid alias or
        ``alt_aliases`` is not a list of valid aliases; M_BAD_ALIAS when an alias that is new
        compared to the current event (or ``previous_content``) does not resolve to this room.
        An empty or null ``alias`` means no canonical alias."""
        if previous_content is None:
            current = await self.events.get_current_state_event(room_id, "m.room.canonical_alias")
            previous_content = current.content if current is not None and isinstance(current.content, dict) else {}
        alias = content.get("alias")
        if alias is not None and alias != "":
            if not isinstance(alias, str) or not ids.is_valid_room_alias(alias):
                raise invalid_param(f"Invalid alias {alias!r}")
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise invalid_param("The alt_aliases property must be a list.")
        for a in alt:
            if not isinstance(a, str) or not ids.is_valid_room_alias(a):
                raise invalid_param(f"Invalid alias {a!r} in alt_aliases")
        to_check = []
        if isinstance(alias, str) and alias and alias != previous_content.get("alias"):
            to_check.append(alias)
        old_alt = previous_content.get("alt_aliases")
        old_alt = set(a for a in old_alt if isinstance(a, str)) if isinstance(old_alt, list) else set()
        to_check.extend(a for a in dict.fromkeys(alt) if a not in old_alt and a not in to_check)
        for a in to_check:
            try:
                target, _ = await self.resolve(a)
            except MatrixError:
                raise bad_alias(f"The alias {a} does not point to this room.")
            if target != room_id:
                raise bad_alias(f"The alias {a} does not point to this room.")
