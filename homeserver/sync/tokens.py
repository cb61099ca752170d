"""Sync tokens and room pagination tokens (pure, no I/O).

**Sync tokens** (``next_batch``, the ``since`` parameter, /events ``from``) compose one position
per stream as ``s<events>_<account_data>_<receipts>_<typing>_<presence>_<to_device>_<device_lists>``,
e.g. ``s12_3_7_0_4_2_5``. Each number is "everything of that stream up to and including this
position has been seen". Clients treat the string as opaque (client-server-api "Syncing").
The typing stream lives in memory and restarts at 0 with the server: a position above the current
one is clamped (see :meth:`SyncToken.clamped`).

**Room pagination tokens** (``prev_batch`` of a sync timeline, /messages ``from``/``to``/``start``/
``end``) name a point *between* events of one room in the order (depth, stream_ordering):

* ``t<depth>_<stream>``: the point just after the event at (depth, stream) (``stream`` may be
  negative: backfilled history sorts before the events stream). Paginating backwards
  (``dir=b``) from it returns the events with ``(depth, stream_ordering) <= (depth, stream)``,
  newest first; forwards (``dir=f``) the events ``> (depth, stream)``, oldest first.
* ``s<stream>``: a stream-only point (no depth): just after stream ordering ``stream``
  (backwards: ``stream_ordering <= stream``; forwards: ``> stream``). A whole sync token is
  accepted too and means its events position, so a client may pass ``next_batch`` to /messages.

A sync timeline whose first event is at (d, s) has ``prev_batch = "t<d>_<s - 1>"``: every
earlier event (d', s') satisfies (d', s') <= (d, s - 1) in tuple order, and the first event does
not. Parse with :func:`parse_room_position`; build with :func:`RoomPosition.before_event`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

#: Stream names as the notifier knows them, in token order.
STREAMS = ("events", "account_data", "receipts", "typing", "presence", "to_device", "device_lists")


class TokenError(ValueError):
    """A token that is not one of ours."""


def _nonneg_int(text: str) -> int:
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise TokenError(f"bad number {text!r}")
    return int(text)


@dataclass(frozen=True)
class SyncToken:
    events: int = 0
    account_data: int = 0
    receipts: int = 0
    typing: int = 0
    presence: int = 0
    to_device: int = 0
    device_lists: int = 0

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, s)) for s in STREAMS)

    @classmethod
    def parse(cls, text: str) -> "SyncToken":
        """Parse ``s<e>_<ad>_<r>_<t>_<p>_<td>_<dl>``; raises :class:`TokenError`."""
        if not isinstance(text, str) or not text.startswith("s"):
            raise TokenError("sync tokens start with 's'")
        parts = text[1:].split("_")
        if len(parts) != len(STREAMS):
            raise TokenError(f"sync tokens have {len(STREAMS)} positions")
        return cls(*(_nonneg_int(p) for p in parts))

    def as_dict(self) -> dict[str, int]:
        """``{stream name: position}`` (what Notifier.wait_for takes)."""
        return {s: getattr(self, s) for s in STREAMS}

    def clamped(self, current: "SyncToken") -> "SyncToken":
        """This token with every position above ``current``'s lowered to it (a token from before a
        restart of an in-memory stream, or a forged one, must not hide newer data forever)."""
        return SyncToken(*(min(getattr(self, s), getattr(current, s)) for s in STREAMS))

    def advanced_to(self, other: "SyncToken") -> "SyncToken":
        """Position-wise maximum."""
        return SyncToken(*(max(getattr(self, s), getattr(other, s)) for s in STREAMS))

    def copy_with(self, **positions: int) -> "SyncToken":
        return replace(self, **positions)


assert tuple(f.name for f in fields(SyncToken)) == STREAMS


@dataclass(frozen=True)
class RoomPosition:
    """A point between events of a room: after (depth, stream), or after ``stream`` when
    ``depth`` is None. See the module docstring for the pagination semantics."""

    depth: int | None
    stream: int

    def __str__(self) -> str:
        if self.depth is None:
            return f"s{self.stream}"
        return f"t{self.depth}_{self.stream}"

    @classmethod
    def before_event(cls, depth: int, stream_ordering: int) -> "RoomPosition":
        """The point just before the event at (depth, stream_ordering) (a timeline's prev_batch)."""
        return cls(depth, stream_ordering - 1)

    @classmethod
    def after_event(cls, depth: int, stream_ordering: int) -> "RoomPosition":
        return cls(depth, stream_ordering)

    def includes(self, depth: int, stream_ordering: int) -> bool:
        """Whether the event at (depth, stream_ordering) lies at or before this point (what a
        backwards pagination from here returns)."""
        if self.depth is None:
            return stream_ordering <= self.stream
        return (depth, stream_ordering) <= (self.depth, self.stream)


def parse_room_position(text: str) -> RoomPosition:
    """Parse ``t<depth>_<stream>``, ``s<stream>`` or a whole sync token (its events position);
    raises :class:`TokenError`."""
    if not isinstance(text, str) or len(text) < 2:
        raise TokenError("empty pagination token")
    if text[0] == "t":
        depth, sep, stream = text[1:].partition("_")
        if not sep:
            raise TokenError("topological tokens are t<depth>_<stream>")
        # Backfilled events have negative stream orderings (homeserver/storage/events_store.py).
        negative = stream.startswith("-")
        value = _nonneg_int(stream[1:] if negative else stream)
        return RoomPosition(_nonneg_int(depth), -value if negative else value)
    if text[0] == "s":
        if "_" in text:
            return RoomPosition(None, SyncToken.parse(text).events)
        return RoomPosition(None, _nonneg_int(text[1:]))
    raise TokenError("pagination tokens start with 't' or 's'")
