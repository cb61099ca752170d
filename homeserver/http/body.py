"""Fields of a JSON request body (after :meth:`HttpRequest.json`): 400 M_MISSING_PARAM when a
required field is absent or null, M_BAD_JSON when a field has the wrong JSON type."""
from __future__ import annotations

from typing import Any, Mapping

from .errors import bad_json, missing_param


def required_str(body: Mapping[str, Any], key: str) -> str:
    """``body[key]``, a string; absent or null is M_MISSING_PARAM."""
    value = body.get(key)
    if value is None:
        raise missing_param(f"Missing '{key}'")
    if not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    return value


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    """``body[key]`` when it is a string, None when absent or null."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    return value


def required_object(body: Mapping[str, Any], key: str) -> dict:
    """``body[key]``, a JSON object; absent or null is M_MISSING_PARAM."""
    value = body.get(key)
    if value is None:
        raise missing_param(f"Missing '{key}'")
    if not isinstance(value, dict):
        raise bad_json(f"'{key}' must be an object")
    return value
