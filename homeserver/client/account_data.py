"""Account data and room tags, and the account-data stream /sync reads.

Sources: client-server-api/modules/account_data.md ("Client Config": global and per-room data,
no inheritance; "Server Behaviour": m.fully_read and m.push_rules are managed by the server and
refused with 405 M_BAD_JSON, but readable), modules/tags.md (tags live in the room's ``m.tag``
account data; a tag name is at most 255 bytes), modules/push.md "Push Rules: Events" (push rule
changes reach clients as global ``m.push_rules`` account data).

Stream "account_data": every change (account data, tags, push rules) takes the next id of
``UserDataStore.account_data_ids``; :meth:`AccountDataService.get_changes_since` returns what
changed for one user between two tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

from homeserver.http.errors import MatrixError, bad_json, invalid_param
from homeserver.protocol.ids import is_valid_room_id
from homeserver.storage.user_data_store import GLOBAL, PUSH_RULES_TYPE, TAG_TYPE, UserDataStore

from .streams import StreamListener, notify_stream

T = TypeVar("T")

STREAM_NAME = "account_data"
#: account_data.md "Server Behaviour": types clients may read but not set.
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", PUSH_RULES_TYPE})
MAX_TAG_BYTES = 255  # tags.md


@dataclass
class AccountDataChanges:
    """What /sync puts in ``account_data`` (global) and ``rooms.*.account_data`` (per room):
    events of the form ``{"type": ..., "content": ...}``, oldest change first."""

    global_events: list[dict] = field(default_factory=list)
    room_events: dict[str, list[dict]] = field(default_factory=dict)
    token: int = 0


class AccountDataService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(UserDataStore)
        self.listeners: list[StreamListener] = []

    # --- the stream -----------------------------------------------------------------------------
    def current_token(self) -> int:
        """The account-data stream position below which every change is committed."""
        return self.store.account_data_ids.current_token()

    async def write(self, user_id: str, fn: Callable[[int], Awaitable[T]]) -> T:
        """Run ``fn(stream_id)`` with a fresh stream id, then wake the user's syncs. Every writer
        of the account-data stream (tags, push rules, read markers) goes through here."""
        ids = self.store.account_data_ids
        (stream_id,) = ids.allocate(1)
        try:
            result = await fn(stream_id)
        finally:
            ids.finish([stream_id])
        notify_stream(self.hs, self.listeners, STREAM_NAME, self.current_token(), users=(user_id,))
        return result

    async def get_changes_since(self, user_id: str, from_token: int | None, to_token: int | None = None
                                ) -> AccountDataChanges:
        """Account data of ``user_id`` changed in (from_token, to_token]; from_token None or 0 is
        an initial sync (everything, always including ``m.push_rules``). to_token None means the
        current token. ``m.push_rules`` content is the user's whole ruleset ``{"global": ...}``."""
        to = self.current_token() if to_token is None else to_token
        start = from_token or 0
        out = AccountDataChanges(token=to)
        if start >= to and start:
            return out
        rows = await self.store.get_account_data_changes(user_id, start, to)
        push_rules_included = False
        for row in rows:
            content = row.content
            if row.room_id == GLOBAL and row.data_type == PUSH_RULES_TYPE:
                content = await self._push_rules_content(user_id)
                push_rules_included = True
            event = {"type": row.data_type, "content": content}
            if row.room_id == GLOBAL:
                out.global_events.append(event)
            else:
                out.room_events.setdefault(row.room_id, []).append(event)
        if start == 0 and not push_rules_included:
            out.global_events.append({"type": PUSH_RULES_TYPE, "content": await self._push_rules_content(user_id)})
        return out

    async def _push_rules_content(self, user_id: str) -> dict:
        from .push_service import PushRulesService
        return {"global": await self.hs.get(PushRulesService).get_ruleset(user_id)}

    # --- account data ---------------------------------------------------------------------------
    @staticmethod
    def check_type(data_type: str) -> None:
        """account_data.md "Server Behaviour": 405 M_BAD_JSON for server-managed types."""
        if data_type in SERVER_MANAGED_TYPES:
            raise MatrixError(405, "M_BAD_JSON", f"Cannot set {data_type} through this API.")

    @staticmethod
    def check_room_id(room_id: str) -> None:
        if not is_valid_room_id(room_id):
            raise invalid_param(f"{room_id} is not a valid room ID.")

    async def get_global(self, user_id: str, data_type: str) -> dict | None:
        if data_type == PUSH_RULES_TYPE:
            return await self._push_rules_content(user_id)
        return await self.store.get_account_data(user_id, GLOBAL, data_type)

    async def get_room(self, user_id: str, room_id: str, data_type: str) -> dict | None:
        return await self.store.get_account_data(user_id, room_id, data_type)

    async def set_global(self, user_id: str, data_type: str, content: dict) -> int:
        """Store global account data (no policy check; endpoints call :meth:`check_type`)."""
        await self.write(user_id, lambda sid: self.store.set_account_data(user_id, GLOBAL, data_type, content, sid))
        return self.current_token()

    async def set_room(self, user_id: str, room_id: str, data_type: str, content: dict) -> int:
        """Store room account data; also how read markers store ``m.fully_read``."""
        await self.write(user_id, lambda sid: self.store.set_account_data(user_id, room_id, data_type, content, sid))
        return self.current_token()

    # --- tags -----------------------------------------------------------------------------------
    async def get_tags(self, user_id: str, room_id: str) -> dict:
        """tag -> tag object for the room (tags.yaml GET: ``{"tags": {...}}``'s value)."""
        content = await self.store.get_account_data(user_id, room_id, TAG_TYPE) or {}
        tags = content.get("tags")
        return tags if isinstance(tags, dict) else {}

    @staticmethod
    def check_tag(tag: str, content: object) -> dict:
        """tags.md: the name is at most 255 bytes; tag.yaml: an object whose ``order``, if present,
        is a number."""
        if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
            raise invalid_param(f"Tag names are at most {MAX_TAG_BYTES} bytes")
        if not isinstance(content, dict):
            raise bad_json("Tag content must be an object")
        order = content.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise bad_json("'order' must be a number")
        return content

    async def add_tag(self, user_id: str, room_id: str, tag: str, content: dict) -> None:
        await self.write(user_id, lambda sid: self.store.change_tags(user_id, room_id, sid, add=(tag, content)))

    async def remove_tag(self, user_id: str, room_id: str, tag: str) -> None:
        await self.write(user_id, lambda sid: self.store.change_tags(user_id, room_id, sid, remove=tag))
