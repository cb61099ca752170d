"""Server access control lists (pure): is a server allowed to take part in a room?

client-server-api/modules/server_acls.md and the ``m.room.server_acl`` event schema: the ACL's
``allow_ip_literals`` (default true), then ``deny``, then ``allow`` (default: nobody) are checked in
that order, against the server name without its port; ``*`` matches any run of characters and
``?`` one character. server-server-api.md "Server Access Control Lists (ACLs)" says which requests
are protected (federation/handlers/acl.py applies it).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from .ids import parse_server_name


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _host(server_name: str) -> str:
    try:
        host, _port = parse_server_name(server_name)
    except ValueError:
        host = server_name
    return host


def _is_ip_literal(host: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        return True
    except ValueError:
        return False


def _patterns(content: Mapping[str, Any], key: str) -> list[str]:
    value = content.get(key)
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def server_allowed(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """Whether ``server_name`` may take part in a room whose ``m.room.server_acl`` content is
    ``acl_content`` (None: the room has no ACL, everyone may)."""
    if acl_content is None:
        return True
    host = _host(server_name)
    allow_ip = acl_content.get("allow_ip_literals", True)
    if allow_ip is False and _is_ip_literal(host):
        return False
    if any(_glob(p).fullmatch(host) for p in _patterns(acl_content, "deny")):
        return False
    return any(_glob(p).fullmatch(host) for p in _patterns(acl_content, "allow"))
