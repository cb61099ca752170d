"""The deprecated /events and /initialSync (old_sync.yaml), reshaped from /sync responses (pure).

* GET /events: the room events, ephemeral events and presence that a long-polling /sync from
  ``from`` returns, as one ``chunk`` (room events carry their ``room_id``);
* GET /initialSync: an initial /sync (``state_after``: the current state) as a list of rooms with
  ``messages`` (``start`` = the timeline's prev_batch, ``end`` = the sync token) and ``state``.
"""
from __future__ import annotations

from typing import Any, Mapping

from homeserver.client.filtering import SyncFilter, parse_sync_filter


def legacy_filter(limit: int, archived: bool) -> SyncFilter:
    return parse_sync_filter({"room": {"timeline": {"limit": max(1, limit)}, "include_leave": archived}})


def events_chunk(response: Mapping[str, Any]) -> list[dict]:
    """The /events ``chunk`` of a /sync response."""
    chunk: list[dict] = []
    rooms = response.get("rooms", {})
    for section in ("join", "leave"):
        for room_id, room in rooms.get(section, {}).items():
            for ev in room.get("timeline", {}).get("events", []):
                chunk.append(dict(ev, room_id=room_id))
            for ev in room.get("ephemeral", {}).get("events", []):
                chunk.append(dict(ev, room_id=room_id))
    chunk.extend(response.get("presence", {}).get("events", []))
    return chunk


def initial_sync_body(response: Mapping[str, Any]) -> dict:
    """The /initialSync body of an initial /sync response made with ``use_state_after``."""
    end = response["next_batch"]
    rooms_out: list[dict] = []
    rooms = response.get("rooms", {})
    for section, membership in (("join", "join"), ("leave", "leave")):
        for room_id, room in rooms.get(section, {}).items():
            timeline = room.get("timeline", {})
            state = room.get("state_after", room.get("state", {})).get("events", [])
            entry = {
                "room_id": room_id, "membership": membership,
                "messages": {"chunk": [dict(e, room_id=room_id) for e in timeline.get("events", [])],
                             "start": timeline.get("prev_batch", end), "end": end},
                "state": [dict(e, room_id=room_id) for e in state],
                "account_data": room.get("account_data", {}).get("events", []),
            }
            vis = next((e.get("content", {}).get("join_rule") for e in state
                        if e.get("type") == "m.room.join_rules" and e.get("state_key") == ""), None)
            if vis in ("public", "invite"):
                entry["visibility"] = "public" if vis == "public" else "private"
            rooms_out.append(entry)
    for room_id, room in rooms.get("invite", {}).items():
        events = room.get("invite_state", {}).get("events", [])
        invite = events[-1] if events else None
        entry = {"room_id": room_id, "membership": "invite",
                 "state": [dict(e, room_id=room_id) for e in events]}
        if invite is not None:
            entry["invite"] = dict(invite, room_id=room_id)
        rooms_out.append(entry)
    return {"end": end, "rooms": rooms_out, "presence": response.get("presence", {}).get("events", []),
            "account_data": response.get("account_data", {}).get("events", [])}
