"""Query parameters of client endpoints: booleans and non-negative integers, 400 M_INVALID_PARAM
for anything else (the wording follows Synapse's). Parameters with rules of their own (pagination
tokens, ``dir``, filters: homeserver/history/params.py; thumbnail dimensions; admin timestamps)
stay with their endpoints."""
from __future__ import annotations

from .errors import invalid_param

MAX_SAFE_INTEGER = 2**53 - 1


def bool_arg(request, name: str, default: bool | None = False) -> bool | None:
    """The query parameter ``name``: ``true`` or ``false``; ``default`` when absent."""
    value = request.arg(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise invalid_param(f"Boolean query parameter {name!r} must be one of ['true', 'false']")
    return value == "true"


def int_arg(request, name: str, default: int, *, maximum: int | None = None) -> int:
    """The query parameter ``name``: a non-negative integer, ``default`` when absent or empty,
    capped at ``maximum`` when given."""
    value = request.arg(name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise invalid_param(f"Query parameter {name!r} must be an integer") from None
    if n < 0:
        raise invalid_param(f"Query parameter {name!r} must not be negative")
    if n > MAX_SAFE_INTEGER:  # appendices.md "Canonical JSON": integers stay within [-(2**53)+1, (2**53)-1]
        raise invalid_param(f"Query parameter {name!r} is too large")
    return n if maximum is None else min(n, maximum)
