"""Presence of local users and the presence stream /sync reads.

Sources: client-server-api/modules/presence.md (states online/unavailable/offline, "Last active
ago", ``currently_active``, "Idle timeout"), presence.yaml (GET/PUT /presence/{userId}/status),
event schema m.presence (content carries ``displayname``/``avatar_url`` too), "Events on Change
of Profile Information".

Disabled by ``presence.enabled: false`` (config ``presence_enabled``): PUT is accepted and
ignored, GET answers ``offline``, nothing is written to the stream.

Timeouts (Synapse's behaviour, simplified): a user whose syncs stop for
``SYNC_ONLINE_TIMEOUT_MS`` goes offline; an online user without activity for ``IDLE_TIMEOUT_MS``
is reported ``unavailable``. Only users that synced are timed out (a user who only PUTs presence
keeps what they set).

Remote users (federation's ``m.presence`` EDUs, federation/handlers/edus.py): stored in the same
table through :meth:`PresenceService.set_remote_state` and shown like local users to those who
share a room with them; one not updated for ``REMOTE_TIMEOUT_MS`` while online counts as offline
(server-server-api.md "Presence"). Changes of local users are announced to ``on_local_change``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Collection, Iterable

from homeserver.http.errors import bad_json, invalid_param, missing_param
from homeserver.protocol.ids import get_domain
from homeserver.storage.user_data_store import PresenceRow, UserDataStore

from .streams import StreamListener, notify_stream

logger = logging.getLogger(__name__)

STREAM_NAME = "presence"
STATES = ("online", "unavailable", "offline")
IDLE_TIMEOUT_MS = 5 * 60 * 1000  # presence.md "Idle timeout": e.g. 5 minutes
SYNC_ONLINE_TIMEOUT_MS = 90 * 1000  # no /sync for this long: offline
CURRENTLY_ACTIVE_MS = 60 * 1000  # online and active within this: currently_active
REMOTE_TIMEOUT_MS = 30 * 60 * 1000  # a remote user not updated for this long: offline (as Synapse)
_TIMER_INTERVAL_S = 10.0
MAX_STATUS_MSG_CHARS = 1024


@dataclass(frozen=True)
class PresenceState:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int


def presence_content(state: PresenceState, now_ms: int, profile: dict | None = None) -> dict:
    """The m.presence content / GET status body for a state (pure)."""
    presence = state.state
    idle = now_ms - state.last_active_ts
    if presence == "online" and idle >= IDLE_TIMEOUT_MS:
        presence = "unavailable"
    content: dict = {"presence": presence, "last_active_ago": max(0, idle)}
    if presence == "online":
        content["currently_active"] = idle < CURRENTLY_ACTIVE_MS
    if state.status_msg is not None:
        content["status_msg"] = state.status_msg
    if profile:
        for key in ("displayname", "avatar_url"):
            if key in profile:
                content[key] = profile[key]
    return content


def federation_update(state: PresenceState, now_ms: int) -> dict:
    """One entry of an ``m.presence`` EDU's ``push`` list (server-server-api.md "Presence",
    presence.yaml ``UserPresenceUpdate``) for a local user's state (pure)."""
    content = presence_content(state, now_ms)
    update = {"user_id": state.user_id, "presence": content["presence"],
              "last_active_ago": content["last_active_ago"]}
    if "currently_active" in content:
        update["currently_active"] = content["currently_active"]
    if state.status_msg is not None:
        update["status_msg"] = state.status_msg
    return update


def parse_presence_body(body: dict) -> tuple[str, str | None]:
    """(presence, status_msg) of a PUT /presence/{userId}/status body."""
    if "presence" not in body:
        raise missing_param("Missing 'presence'")
    presence = body["presence"]
    if not isinstance(presence, str):
        raise bad_json("'presence' must be a string")
    if presence not in STATES:
        raise invalid_param(f"Invalid presence state {presence!r}")
    status_msg = body.get("status_msg")
    if status_msg is not None and not isinstance(status_msg, str):
        raise bad_json("'status_msg' must be a string")
    if status_msg is not None and len(status_msg) > MAX_STATUS_MSG_CHARS:
        raise invalid_param(f"'status_msg' is at most {MAX_STATUS_MSG_CHARS} characters")
    return presence, status_msg


class PresenceService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(UserDataStore)
        self.enabled: bool = bool(getattr(hs.config, "presence_enabled", True))
        self.listeners: list[StreamListener] = []
        #: async fn(user_id) -> the users whose presence ``user_id`` may see (sharing a room).
        #: Defaults to a lookup through the rooms' membership store when it exists.
        self.visible_users_provider: Callable[[str], Awaitable[set[str]]] | None = None
        #: async fn(user_id) -> the rooms ``user_id`` is joined to (whose members a change wakes).
        self.joined_rooms_provider: Callable[[str], Awaitable[list[str]]] | None = None
        self._states: dict[str, PresenceState] = {}  # cache of local users' rows
        self._last_sync: dict[str, int] = {}
        #: Remote users last updated (online or unavailable), for REMOTE_TIMEOUT_MS.
        self._remote_updates: dict[str, int] = {}
        #: ``fn(PresenceState)`` called when a local user's presence is written (federation).
        self.on_local_change: list[Callable[[PresenceState], object]] = []
        self._timer = None

    # --- the stream -----------------------------------------------------------------------------
    def current_token(self) -> int:
        return self.store.presence_ids.current_token()

    async def get_changes_since(self, user_id: str, from_token: int | None, to_token: int | None = None, *,
                                interested_users: Collection[str] | None = None) -> list[dict]:
        """m.presence events (``{"type", "sender", "content"}``) of users visible to ``user_id``
        (themselves included) whose presence changed in (from_token, to_token]; from_token None
        or 0 gives everyone's current presence. ``interested_users`` overrides the visibility
        lookup (sync usually knows the room members already)."""
        if not self.enabled:
            return []
        to = self.current_token() if to_token is None else to_token
        start = from_token or 0
        if start >= to:
            return []
        users = set(interested_users) if interested_users is not None else await self.visible_users(user_id)
        users.add(user_id)
        rows = await self.store.get_presence_changes(start, to, users)
        return await self._events(rows)

    async def _events(self, rows: Iterable[PresenceRow]) -> list[dict]:
        rows = list(rows)
        profiles = await self._profiles([r.user_id for r in rows])
        now = self.hs.clock_ms()
        return [{"type": "m.presence", "sender": r.user_id,
                 "content": presence_content(_state(r), now, profiles.get(r.user_id))} for r in rows]

    async def _profiles(self, user_ids: list[str]) -> dict[str, dict]:
        from .profile import ProfileService
        return await self.hs.get(ProfileService).get_profiles(user_ids) if user_ids else {}

    # --- who sees whom ----------------------------------------------------------------------------
    async def visible_users(self, user_id: str) -> set[str]:
        """Users sharing a joined room with ``user_id`` (presence.md "Security considerations")."""
        if self.visible_users_provider is not None:
            return set(await self.visible_users_provider(user_id))
        store = _events_store(self.hs)
        if store is None:
            return {user_id}
        users = {user_id}
        for room_id in await store.get_rooms_for_user(user_id):
            users.update(await store.get_members(room_id))
        return users

    async def _joined_rooms(self, user_id: str) -> list[str]:
        if self.joined_rooms_provider is not None:
            return list(await self.joined_rooms_provider(user_id))
        store = _events_store(self.hs)
        return list(await store.get_rooms_for_user(user_id)) if store is not None else []

    async def may_see(self, observer: str, target: str) -> bool:
        return observer == target or target in await self.visible_users(observer)

    # --- reading and writing --------------------------------------------------------------------
    def is_mine(self, user_id: str) -> bool:
        try:
            return get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    async def _get_state(self, user_id: str) -> PresenceState | None:
        state = self._states.get(user_id)
        if state is None:
            row = (await self.store.get_presence([user_id])).get(user_id)
            if row is not None:
                state = _state(row)
                self._states[user_id] = state
        return state

    async def current_states(self, user_ids: Iterable[str]) -> list[PresenceState]:
        """The stored presence of these users (those never set are left out)."""
        out = []
        for user_id in user_ids:
            state = await self._get_state(user_id)
            if state is not None:
                out.append(state)
        return out

    async def get_status(self, user_id: str) -> dict:
        """The GET /presence/{userId}/status body (``offline`` if never set or disabled)."""
        if not self.enabled:
            return {"presence": "offline"}
        state = await self._get_state(user_id)
        if state is None:
            return {"presence": "offline"}
        return presence_content(state, self.hs.clock_ms())

    async def set_state(self, user_id: str, presence: str, status_msg: str | None = None) -> None:
        """Set presence explicitly (PUT status). Setting ``online`` counts as activity."""
        if not self.enabled:
            return
        now = self.hs.clock_ms()
        old = await self._get_state(user_id)
        last_active = now if presence == "online" or old is None else old.last_active_ts
        await self._write(PresenceState(user_id, presence, status_msg, last_active))

    async def bump_activity(self, user_id: str) -> None:
        """A pro-active action (sending an event): online, last active now. Writes only when the
        state changes or the previous write is older than CURRENTLY_ACTIVE_MS."""
        if not self.enabled or not self.is_mine(user_id):
            return
        now = self.hs.clock_ms()
        old = await self._get_state(user_id)
        if old is not None and old.state == "online" and now - old.last_active_ts < CURRENTLY_ACTIVE_MS:
            return
        await self._write(PresenceState(user_id, "online", old.status_msg if old else None, now))

    async def on_user_sync(self, user_id: str, set_presence: str | None = "online") -> None:
        """Called by /sync with its ``set_presence`` parameter: ``online`` (the default) marks an
        offline user online, ``unavailable`` sets that, ``offline`` leaves presence alone. Keeps
        the user from timing out to offline while they keep syncing."""
        if not self.enabled:
            return
        now = self.hs.clock_ms()
        self._last_sync[user_id] = now
        self._ensure_timer()
        if set_presence not in ("online", "unavailable"):
            return
        old = await self._get_state(user_id)
        if set_presence == "online":
            if old is None or old.state == "offline":
                await self._write(PresenceState(user_id, "online", old.status_msg if old else None, now))
        elif old is None or old.state != "unavailable":
            await self._write(PresenceState(user_id, "unavailable", old.status_msg if old else None,
                                            old.last_active_ts if old else now))

    async def profile_changed(self, user_id: str) -> None:
        """Re-announce the user's presence so the new displayname/avatar_url reach others."""
        if not self.enabled:
            return
        old = await self._get_state(user_id)
        await self._write(old or PresenceState(user_id, "offline", None, self.hs.clock_ms()))

    async def set_remote_state(self, user_id: str, presence: str, status_msg: str | None,
                               last_active_ts: int) -> None:
        """A remote user's presence as their server pushed it (``m.presence`` EDU)."""
        if not self.enabled or self.is_mine(user_id) or presence not in STATES:
            return
        if presence == "offline":
            self._remote_updates.pop(user_id, None)
        else:
            self._remote_updates[user_id] = self.hs.clock_ms()
            self._ensure_timer()
        old = await self._get_state(user_id)
        new = PresenceState(user_id, presence, status_msg, last_active_ts)
        if old == new:
            return
        await self._write(new)

    async def _write(self, state: PresenceState) -> None:
        ids = self.store.presence_ids
        (stream_id,) = ids.allocate(1)
        try:
            await self.store.set_presence(state.user_id, state.state, state.status_msg, state.last_active_ts,
                                          stream_id)
            self._states[state.user_id] = state
        finally:
            ids.finish([stream_id])
        try:
            rooms = await self._joined_rooms(state.user_id)
        except Exception:
            logger.exception("joined rooms lookup failed for %s", state.user_id)
            rooms = []
        notify_stream(self.hs, self.listeners, STREAM_NAME, self.current_token(), rooms=rooms,
                      users=(state.user_id,))
        if self.is_mine(state.user_id):
            for fn in list(self.on_local_change):
                try:
                    fn(state)
                except Exception:
                    logger.exception("presence change listener failed for %s", state.user_id)

    # --- timeouts -------------------------------------------------------------------------------
    def _ensure_timer(self) -> None:
        if self._timer is not None:
            return
        from twisted.internet import defer, task
        loop = task.LoopingCall(lambda: defer.ensureDeferred(self._check_timeouts()))
        loop.clock = self.hs.reactor
        self._timer = loop
        loop.start(_TIMER_INTERVAL_S, now=False).addErrback(lambda f: logger.error("presence timer: %s", f))
        try:
            self.hs.reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        except Exception:
            pass

    def stop(self) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self._timer = None

    async def _check_timeouts(self) -> None:
        now = self.hs.clock_ms()
        for last_seen, timeout_ms in ((self._last_sync, SYNC_ONLINE_TIMEOUT_MS),
                                      (self._remote_updates, REMOTE_TIMEOUT_MS)):
            for user_id, last in list(last_seen.items()):
                if now - last < timeout_ms:
                    continue
                del last_seen[user_id]
                try:
                    old = await self._get_state(user_id)
                    if old is not None and old.state != "offline":
                        await self._write(PresenceState(user_id, "offline", old.status_msg, old.last_active_ts))
                except Exception:
                    logger.exception("presence timeout for %s failed", user_id)


def _state(row: PresenceRow) -> PresenceState:
    return PresenceState(row.user_id, row.state, row.status_msg, row.last_active_ts)


def _events_store(hs):
    try:
        from homeserver.storage.events_store import EventsStore
    except ImportError:
        return None
    return hs.get(EventsStore)
