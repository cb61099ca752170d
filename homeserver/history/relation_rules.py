"""Pure rules for relationships, edits and searchable text (no I/O).

Sources (client-server-api): "Forming relationships between events" (``m.relates_to`` with
``rel_type`` and ``event_id``), modules/event_annotations.md (``key``),
modules/event_replacements.md "Validity of replacement events" and "Server-side aggregation of
``m.replace`` relationships" (most recent by ``origin_server_ts``, ties to the lexicographically
largest event ID), modules/search.md "room_events" (the searched keys).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from homeserver.protocol.events import Event

REPLACE = "m.replace"


@dataclass(frozen=True)
class Relation:
    rel_type: str
    parent_id: str
    key: str | None = None  # m.annotation only


def parse_relation(content: Any) -> Relation | None:
    """The relationship an event's content declares, or None (malformed ones are ignored).
    ``m.in_reply_to`` alone is a rich reply, not a relationship with a ``rel_type``."""
    if not isinstance(content, Mapping):
        return None
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if not isinstance(rel_type, str) or not rel_type or not isinstance(parent, str) or not parent.startswith("$"):
        return None
    if len(rel_type) > 255 or len(parent) > 255:
        return None
    key = rel.get("key") if rel_type == "m.annotation" else None
    return Relation(rel_type, parent, key if isinstance(key, str) else None)


def searchable_text(event_type: str, content: Any) -> tuple[str, str] | None:
    """``(search key, text)`` of an event the search index covers, or None: ``content.body`` of
    ``m.room.message``, ``content.name`` of ``m.room.name``, ``content.topic`` of ``m.room.topic``
    together with the ``text/plain`` body of its ``m.topic``."""
    if not isinstance(content, Mapping):
        return None
    if event_type == "m.room.message":
        body = content.get("body")
        return ("content.body", body) if isinstance(body, str) and body.strip() else None
    if event_type == "m.room.name":
        name = content.get("name")
        return ("content.name", name) if isinstance(name, str) and name.strip() else None
    if event_type == "m.room.topic":
        parts = []
        topic = content.get("topic")
        if isinstance(topic, str) and topic.strip():
            parts.append(topic)
        rich = content.get("m.topic")
        reps = rich.get("m.text") if isinstance(rich, Mapping) else None
        if isinstance(reps, list):
            for rep in reps:
                if isinstance(rep, Mapping) and rep.get("mimetype", "text/plain") == "text/plain" \
                        and isinstance(rep.get("body"), str) and rep["body"] not in parts:
                    parts.append(rep["body"])
        return ("content.topic", "\n".join(parts)) if parts else None
    return None


def is_valid_replacement(original: Event, edit: Event) -> bool:
    """modules/event_replacements.md "Validity of replacement events"."""
    if edit.room_id != original.room_id or edit.sender != original.sender or edit.type != original.type:
        return False
    if original.is_state() or edit.is_state():
        return False
    own = parse_relation(original.content)
    if own is not None and own.rel_type == REPLACE:
        return False
    rel = parse_relation(edit.content)
    if rel is None or rel.rel_type != REPLACE or rel.parent_id != original.event_id:
        return False
    if edit.type == "m.room.encrypted":
        return True  # m.new_content is inside the ciphertext
    return isinstance(edit.content.get("m.new_content"), Mapping)


def edit_order_key(origin_server_ts: Any, event_id: str) -> tuple[int, str]:
    """Sort key of replacements: most recent ``origin_server_ts``, then largest event ID, last."""
    ts = origin_server_ts if isinstance(origin_server_ts, int) and not isinstance(origin_server_ts, bool) else 0
    return ts, event_id


def latest_valid_edit(original: Event, edits: Iterable[Event]) -> Event | None:
    """The most recent valid replacement of ``original`` among ``edits``, or None."""
    valid = [e for e in edits if is_valid_replacement(original, e)]
    if not valid:
        return None
    return max(valid, key=lambda e: edit_order_key(e.origin_server_ts, e.event_id))
