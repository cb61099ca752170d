"""Stored filters (client-server-api "Filtering", filter.yaml) and resolving the ``filter``
parameter of /sync into the pure filter objects of :mod:`.filtering`."""
from __future__ import annotations

import json

from homeserver.http.errors import MatrixError, not_found
from homeserver.storage.user_data_store import UserDataStore

from .filtering import FilterError, SyncFilter, parse_sync_filter


def _filter_error(e: FilterError) -> MatrixError:
    return MatrixError(400, e.errcode, e.message)


class FilterService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(UserDataStore)

    async def create_filter(self, user_id: str, filter_json: dict) -> str:
        """Validate and store; returns the filter ID (decimal digits, so never starting with "{")."""
        try:
            parse_sync_filter(filter_json)
        except FilterError as e:
            raise _filter_error(e) from None
        return str(await self.store.add_filter(user_id, filter_json))

    async def get_filter_json(self, user_id: str, filter_id: str) -> dict:
        """The stored filter; 404 M_NOT_FOUND if this user has no filter with that ID."""
        if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:
            raise not_found("No such filter")
        found = await self.store.get_filter(user_id, int(filter_id))
        if found is None:
            raise not_found("No such filter")
        return found

    async def resolve_sync_filter(self, user_id: str, filter_param: str | None) -> SyncFilter:
        """The /sync ``filter`` query parameter: absent → empty filter; starting with "{" →
        inline filter JSON (400 M_NOT_JSON / M_BAD_JSON / M_INVALID_PARAM when bad); else a
        stored filter ID (404 M_NOT_FOUND when unknown)."""
        if filter_param is None or filter_param == "":
            return SyncFilter()
        if filter_param.lstrip().startswith("{"):
            obj = _parse_inline(filter_param)
        else:
            obj = await self.get_filter_json(user_id, filter_param)
        try:
            return parse_sync_filter(obj)
        except FilterError as e:
            raise _filter_error(e) from None


def _parse_inline(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise MatrixError(400, "M_NOT_JSON", "The filter parameter is not valid JSON") from None
