"""Canonical JSON encoding and strict JSON parsing (appendices.md, "Canonical JSON").

Pure functions, no I/O. Encoding is delegated to the ``canonicaljson`` library; this module adds
the number rules the library does not apply:

* integral floats (``1e10``, ``-0.0``) are written as integers, as the spec's examples require
  (``{"a":-0,"b":1e10}`` → ``{"a":0,"b":10000000000}``);
* for room versions with ``strict_canonicaljson`` (v6+, rooms/fragments/v6-canonical-json.md),
  :func:`check_canonical_values` rejects floats and integers outside ``[-(2**53)+1, 2**53-1]``.
  Older versions must tolerate such values (rooms/fragments/v1-canonical-json.md), so the encoder
  itself never refuses them; non-integral floats are encoded as Python writes them.
"""
from __future__ import annotations

import json
from typing import Any

import canonicaljson

from .room_versions import RoomVersion

# appendices.md, "Canonical JSON": numbers must lie in [-(2**53)+1, (2**53)-1].
MIN_SAFE_INTEGER = -(2**53) + 1
MAX_SAFE_INTEGER = 2**53 - 1


def encode_canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of ``obj`` (appendices.md, "Canonical JSON").

    Keys sorted by code point, no insignificant whitespace, non-ASCII written as UTF-8.
    Raises ValueError for NaN/Infinity.
    """
    return canonicaljson.encode_canonical_json(integralise_floats(obj))


def encode_integral_json(obj: Any) -> bytes:
    """:func:`encode_canonical_json` of an ``obj`` already passed through :func:`integralise_floats`
    (or a part of one): skips that walk."""
    return canonicaljson.encode_canonical_json(obj)


def integralise_floats(obj: Any) -> Any:
    """``obj`` with every integral float replaced by an int; copies only the containers that change."""
    if isinstance(obj, float):
        if obj.is_integer():
            return int(obj)
        return obj
    if isinstance(obj, dict):
        new = None
        for k, v in obj.items():
            nv = integralise_floats(v)
            if nv is not v:
                if new is None:
                    new = dict(obj)
                new[k] = nv
        return obj if new is None else new
    if isinstance(obj, (list, tuple)):
        new_list = None
        for i, v in enumerate(obj):
            nv = integralise_floats(v)
            if nv is not v:
                if new_list is None:
                    new_list = list(obj)
                new_list[i] = nv
        return obj if new_list is None else new_list
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def parse_json(data: bytes | str) -> Any:
    """Parse JSON from the wire.

    Raises ValueError for bytes that are not UTF-8, text that is not JSON, and the non-standard
    constants ``NaN``, ``Infinity`` and ``-Infinity``. Duplicate keys are accepted (last one wins).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"JSON is not valid UTF-8: {e}") from None
    else:
        text = data
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"Invalid JSON: {e}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def check_canonical_values(obj: Any, room_version: RoomVersion) -> None:
    """Raise ValueError if ``obj`` holds values the room version's JSON rules forbid.

    Only room versions with ``strict_canonicaljson`` (v6+) are checked: there, floats and integers
    outside [-(2**53)+1, 2**53-1] are invalid (rooms/fragments/v6-canonical-json.md).
    """
    if not room_version.strict_canonicaljson:
        return
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                raise ValueError(f"Integer {value} is outside the canonical JSON range")
        elif isinstance(value, float):
            raise ValueError(f"Float {value!r} is not allowed in canonical JSON")
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
