"""The redaction algorithm: which keys of a PDU survive redaction, per room version.

Sources: rooms/fragments/v1-redactions.md (v1–v5), v6-redactions.md (v6–v7), rooms/v8.md
"Redactions" (v8), v9-redactions.md (v9–v10), v11-redactions.md (v11–v12). The rules are data: one
:class:`_Rules` record per :class:`RedactionRules` value, looked up from the room version.

Redaction also defines what event signatures and reference hashes cover
(server-server-api.md, "Signing Events"), so it must match the spec key for key.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .room_versions import RedactionRules, RoomVersion

# Keys the content of any event loses on redaction unless listed per type below.
_TOP_LEVEL_V1 = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership",
})
# v11-redactions.md: "origin", "membership" and "prev_state" are no longer kept.
_TOP_LEVEL_V11 = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "auth_events", "origin_server_ts",
})

_PL_V1 = frozenset({"ban", "events", "events_default", "kick", "redact", "state_default",
                    "users", "users_default"})

ALL_KEYS = None  # marker: the whole content is kept (m.room.create in v11+)


@dataclass(frozen=True)
class _Rules:
    top_level: frozenset
    # event type -> content keys kept (ALL_KEYS: keep everything)
    content: Mapping[str, frozenset | None] = field(default_factory=dict)
    # v11: m.room.member keeps content.third_party_invite.signed
    member_keeps_third_party_signed: bool = False


_V1_CONTENT = {
    "m.room.member": frozenset({"membership"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule"}),
    "m.room.power_levels": _PL_V1,
    "m.room.aliases": frozenset({"aliases"}),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
# v6-redactions.md: m.room.aliases content is no longer kept.
_V6_CONTENT = {k: v for k, v in _V1_CONTENT.items() if k != "m.room.aliases"}
# rooms/v8.md "Redactions": m.room.join_rules keeps "allow".
_V8_CONTENT = {**_V6_CONTENT, "m.room.join_rules": frozenset({"join_rule", "allow"})}
# v9-redactions.md: m.room.member keeps "join_authorised_via_users_server".
_V9_CONTENT = {**_V8_CONTENT,
               "m.room.member": frozenset({"membership", "join_authorised_via_users_server"})}
# v11-redactions.md: create keeps everything, power levels keep "invite", redaction keeps "redacts".
_V11_CONTENT = {
    **_V9_CONTENT,
    "m.room.create": ALL_KEYS,
    "m.room.power_levels": _PL_V1 | {"invite"},
    "m.room.redaction": frozenset({"redacts"}),
}

_RULES: Mapping[RedactionRules, _Rules] = MappingProxyType({
    RedactionRules.V1: _Rules(_TOP_LEVEL_V1, MappingProxyType(_V1_CONTENT)),
    RedactionRules.V6: _Rules(_TOP_LEVEL_V1, MappingProxyType(_V6_CONTENT)),
    RedactionRules.V8: _Rules(_TOP_LEVEL_V1, MappingProxyType(_V8_CONTENT)),
    RedactionRules.V9: _Rules(_TOP_LEVEL_V1, MappingProxyType(_V9_CONTENT)),
    RedactionRules.V11: _Rules(_TOP_LEVEL_V11, MappingProxyType(_V11_CONTENT),
                               member_keeps_third_party_signed=True),
})


def _same(value):
    return value


def redact(pdu: dict, room_version: RoomVersion, *, share_values: bool = False) -> dict:
    """A new dict holding only what survives redaction of ``pdu`` under the room version's rules.

    The input is not modified and the result shares no mutable values with it — unless
    ``share_values`` (for a result that is only read, e.g. encoded to be hashed or signed).
    ``unsigned`` is removed like every other unlisted top-level key (the spec's lists do not
    include it).
    """
    rules = _RULES[room_version.redaction_rules]
    dup = _same if share_values else copy.deepcopy
    out = {k: dup(v) for k, v in pdu.items() if k in rules.top_level and k != "content"}

    content = pdu.get("content")
    if not isinstance(content, dict):
        content = {}
    kept = rules.content.get(pdu.get("type"), frozenset())
    if kept is ALL_KEYS:
        new_content = dup(content)
    else:
        new_content = {k: dup(v) for k, v in content.items() if k in kept}
        if rules.member_keeps_third_party_signed and pdu.get("type") == "m.room.member":
            tpi = content.get("third_party_invite")
            if isinstance(tpi, dict) and "signed" in tpi:
                new_content["third_party_invite"] = {"signed": dup(tpi["signed"])}
    out["content"] = new_content
    return out
