"""User profiles: display name, avatar URL, time zone and custom fields.

Sources: client-server-api "Profiles" (server behaviour, "Events on Change of Profile
Information"), data/api/client-server/profile.yaml (key names, M_KEY_TOO_LARGE,
M_PROFILE_TOO_LARGE, the 64 KiB limit), modules/guest_access.md (guests may only change their
display name). displayname/avatar_url live in the accounts' ``profiles`` table, other fields in
``profile_fields`` (both read through :class:`UserDataStore`).

Propagation: after a display name or avatar change the service awaits every callback in
:attr:`ProfileService.on_profile_changed` (``async fn(user_id, old_profile, new_profile)``; the
rooms code registers one that sends the new ``m.room.member`` events) and bumps the user's
presence so an ``m.presence`` with the new values reaches those who share a room.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable

from homeserver.accounts.auth import check_not_suspended
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.protocol.ids import get_domain, is_valid_user_id
from homeserver.storage.user_data_store import UserDataStore

logger = logging.getLogger(__name__)

#: profile.yaml ``keyName`` pattern.
KEY_NAME = re.compile(r"(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)")
MAX_KEY_BYTES = 255  # profile.yaml, M_KEY_TOO_LARGE
MAX_PROFILE_BYTES = 64 * 1024  # profile.yaml, M_PROFILE_TOO_LARGE
MAX_DISPLAYNAME_CHARS = 256  # Synapse's limit
MAX_AVATAR_URL_CHARS = 1000  # Synapse's limit
_MXC = re.compile(r"mxc://[^/]+/[^/]+")

def _json_size(obj: Any) -> int:
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


ProfileChangedCallback = Callable[[str, dict, dict], Awaitable[None]]


def check_key_name(key: str) -> None:
    """400 M_KEY_TOO_LARGE over 255 bytes; 400 M_INVALID_PARAM unless the profile.yaml pattern."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, "M_KEY_TOO_LARGE", f"Profile keys are at most {MAX_KEY_BYTES} bytes")
    if not KEY_NAME.fullmatch(key):
        raise invalid_param(f"Invalid profile key name {key!r}")


def check_value(key: str, value: Any) -> Any:
    """The value to store (None: remove). displayname: a string of at most 256 characters;
    avatar_url: an mxc:// URI; m.tz: a string; custom keys: any JSON. For displayname and
    avatar_url, null or "" clear the field."""
    if key in ("displayname", "avatar_url"):
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise bad_json(f"'{key}' must be a string")
        if key == "displayname" and len(value) > MAX_DISPLAYNAME_CHARS:
            raise bad_json(f"Display names are at most {MAX_DISPLAYNAME_CHARS} characters")
        if key == "avatar_url":
            if len(value) > MAX_AVATAR_URL_CHARS:
                raise bad_json(f"Avatar URLs are at most {MAX_AVATAR_URL_CHARS} characters")
            if not _MXC.fullmatch(value):
                raise invalid_param("'avatar_url' must be an mxc:// URI")
        return value
    if key == "m.tz" and not isinstance(value, str):
        raise bad_json("'m.tz' must be a string")
    return value


class ProfileService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(UserDataStore)
        #: async fn(user_id, old_profile, new_profile), awaited after displayname/avatar_url changes.
        self.on_profile_changed: list[ProfileChangedCallback] = []
        #: Optional async fn(user_id) -> profile dict | None for remote users (federation query).
        self.remote_profile_fetcher: Callable[[str], Awaitable[dict | None]] | None = None
        #: async fn(user_id) -> bool asked when a local user is unknown; True: it may exist now
        #: (an application service created it: application-service-api.md "Querying").
        self.local_miss_hooks: list[Callable[[str], Awaitable[bool]]] = []

    def is_mine(self, user_id: str) -> bool:
        try:
            return get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    async def get_profile(self, user_id: str) -> dict:
        """Every field; 404 M_NOT_FOUND for unknown users (and remote ones without a fetcher),
        400 M_INVALID_PARAM for a string that is not a user ID (appendices.md "User Identifiers")."""
        if not is_valid_user_id(user_id):
            raise invalid_param("Invalid user ID")
        if not self.is_mine(user_id):
            profile = await self.remote_profile_fetcher(user_id) if self.remote_profile_fetcher else None
        else:
            profile = await self.store.get_profile(user_id)
            for hook in list(self.local_miss_hooks) if profile is None else ():
                if await hook(user_id):
                    profile = await self.store.get_profile(user_id)
                    break
        if profile is None:
            raise not_found("Profile was not found")
        return profile

    async def get_field(self, user_id: str, key: str) -> Any:
        """One field's value; 404 M_NOT_FOUND if the user or the field does not exist."""
        check_key_name(key)
        profile = await self.get_profile(user_id)
        if key not in profile:
            raise not_found(f"The user has no profile field {key!r}")
        return profile[key]

    async def get_profiles(self, user_ids) -> dict[str, dict]:
        """Profiles of local users (unknown ones left out); for presence and membership events."""
        return await self.store.get_profiles([u for u in user_ids if self.is_mine(u)])

    def _check_may_change(self, requester, user_id: str, key: str) -> None:
        if requester.user_id != user_id:
            raise forbidden("You cannot change another user's profile")
        if requester.is_guest and key != "displayname":
            raise forbidden("Guests may only change their display name")
        check_not_suspended(requester)  # "Account suspension": no profile changes

    async def set_field(self, requester, user_id: str, key: str, value: Any) -> None:
        """PUT /profile/{userId}/{keyName} after the body was unpacked."""
        check_key_name(key)
        self._check_may_change(requester, user_id, key)
        value = check_value(key, value)
        old = await self.store.get_profile(user_id)
        if old is None:
            raise not_found("Profile was not found")
        new = dict(old)
        if value is None and key in ("displayname", "avatar_url"):
            new.pop(key, None)
        else:
            new[key] = value
        if _json_size(new) > MAX_PROFILE_BYTES:
            raise MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB")
        if not await self.store.set_profile_field(user_id, key, value):
            raise not_found("Profile was not found")
        await self._changed(user_id, key, old, new)

    async def delete_field(self, requester, user_id: str, key: str) -> None:
        """DELETE /profile/{userId}/{keyName}: succeeds whether or not the field exists."""
        check_key_name(key)
        self._check_may_change(requester, user_id, key)
        old = await self.store.get_profile(user_id)
        if old is None:
            raise not_found("Profile was not found")
        if key not in old:
            return
        await self.store.delete_profile_field(user_id, key)
        new = {k: v for k, v in old.items() if k != key}
        await self._changed(user_id, key, old, new)

    async def erase(self, user_id: str) -> None:
        """Deactivation with ``erase`` (account_deactivation.yaml: "erase any non-event data"):
        remove every field, display name and avatar included; the usual change callbacks run
        (the rooms the user is still joined to get a member event without them)."""
        old = await self.store.get_profile(user_id)
        if not old:
            return
        for key in list(old):
            await self.store.delete_profile_field(user_id, key)
        for key in ("displayname", "avatar_url"):
            if key in old:
                await self._changed(user_id, key, old, {})
                break  # one callback round carries both fields

    async def _changed(self, user_id: str, key: str, old: dict, new: dict) -> None:
        if key not in ("displayname", "avatar_url") or old.get(key) == new.get(key):
            return
        for callback in list(self.on_profile_changed):
            try:
                await callback(user_id, old, new)
            except Exception:
                logger.exception("profile change callback failed for %s", user_id)
        from .presence import PresenceService
        try:
            await self.hs.get(PresenceService).profile_changed(user_id)
        except Exception:
            logger.exception("presence update after profile change failed for %s", user_id)
