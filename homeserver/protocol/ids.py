"""Identifier grammars: server names, user IDs, room IDs, room aliases, event IDs.

Source: appendices.md "Identifier Grammar" ("Server Name", "User Identifiers", "Historical User
IDs", "Room IDs", "Room Aliases", "Event IDs"). Pure functions; validators return bool, parsers
raise ValueError.
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import string

# appendices.md "Common Identifier Format": user IDs, room IDs, aliases and event IDs, sigil and
# domain included, MUST NOT exceed 255 bytes.
MAX_ID_BYTES = 255

_PORT = re.compile(r"[0-9]{1,5}")
_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_NAME = re.compile(r"[0-9A-Za-z.-]{1,255}")
# appendices.md "User Identifiers": user_id_char = DIGIT / a-z / "-" / "." / "=" / "_" / "/" / "+"
_STRICT_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# The hash form of event IDs (v3+) and room IDs (v12): 32-byte SHA-256 in unpadded base64
# (standard alphabet in v3, URL-safe from v4).
_HASH_ID = re.compile(r"[A-Za-z0-9+/_-]{43}")


def parse_server_name(s: str) -> tuple[str, int | None]:
    """Split a server name into (host, port or None); raise ValueError if it is not valid.

    appendices.md "Server Name": ``hostname [ ":" port ]`` where hostname is a dotted-quad IPv4
    literal (each part 0–255), a bracketed IPv6 literal (RFC 3513), or a DNS name of letters,
    digits, "-" and ".". An IPv6 host is returned with its brackets.
    """
    if not isinstance(s, str) or not s:
        raise ValueError("Server name is empty")
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"Unterminated IPv6 literal in {s!r}")
        host, rest = s[: end + 1], s[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"Unexpected text after IPv6 literal in {s!r}")
        port_str = rest[1:] if rest else None
        inner = host[1:-1]
        if not _IPV6_CHARS.fullmatch(inner):
            raise ValueError(f"Invalid IPv6 literal {host!r}")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"Invalid IPv6 literal {host!r}") from None
    else:
        host, sep, port_str = s.partition(":")
        if not sep:
            port_str = None
        if _IPV4.fullmatch(host):
            if any(int(part) > 255 for part in host.split(".")):
                raise ValueError(f"Invalid IPv4 literal {host!r}")
        elif not _DNS_NAME.fullmatch(host):
            raise ValueError(f"Invalid host name {host!r}")
    port = None
    if port_str is not None:
        if not _PORT.fullmatch(port_str):
            raise ValueError(f"Invalid port in server name {s!r}")
        port = int(port_str)
    return host, port


def is_valid_server_name(s: str) -> bool:
    """Whether ``s`` matches the server-name grammar (appendices.md "Server Name")."""
    try:
        parse_server_name(s)
    except ValueError:
        return False
    return True


def _within_length(s: str) -> bool:
    try:
        return len(s.encode("utf-8")) <= MAX_ID_BYTES
    except UnicodeEncodeError:  # lone surrogates are not valid code points here
        return False


def _is_historical_localpart(localpart: str) -> bool:
    """Any non-surrogate code points except ":" and NUL (appendices.md "Historical User IDs")."""
    return ":" not in localpart and "\x00" not in localpart and not any(
        0xD800 <= ord(c) <= 0xDFFF for c in localpart)


def _split(s: str, sigil: str) -> tuple[str, str]:
    """(localpart, domain) of ``&localpart:domain``; raise ValueError if the shape is wrong."""
    if not isinstance(s, str) or not s.startswith(sigil):
        raise ValueError(f"Identifier must start with {sigil!r}")
    if not _within_length(s):
        raise ValueError(f"Identifier longer than {MAX_ID_BYTES} bytes")
    localpart, sep, domain = s[1:].partition(":")
    if not sep:
        raise ValueError("Identifier has no domain")
    if not is_valid_server_name(domain):
        raise ValueError(f"Invalid server name {domain!r}")
    return localpart, domain


def is_valid_localpart(s: str) -> bool:
    """Whether ``s`` is a user-ID localpart under the current grammar: one or more of
    ``a-z 0-9 . _ = - / +`` (appendices.md "User Identifiers"). Use for new registrations."""
    return isinstance(s, str) and _STRICT_LOCALPART.fullmatch(s) is not None


def parse_user_id(s: str) -> tuple[str, str]:
    """(localpart, server_name) of a user ID; raise ValueError if it is not valid.

    Accepts historical localparts (any code points but ":" and NUL, possibly empty) as servers
    must over federation (appendices.md "Historical User IDs").
    """
    localpart, domain = _split(s, "@")
    if not _is_historical_localpart(localpart):
        raise ValueError(f"Invalid user ID localpart in {s!r}")
    return localpart, domain


def is_valid_user_id(s: str, *, strict: bool = False) -> bool:
    """Whether ``s`` is a user ID. ``strict`` applies the current localpart grammar (for IDs this
    server creates or forwards to clients); otherwise historical localparts are accepted."""
    try:
        localpart, _ = parse_user_id(s)
    except ValueError:
        return False
    return is_valid_localpart(localpart) if strict else True


def is_valid_room_alias(s: str) -> bool:
    """``#localpart:domain``; localpart non-empty, any code points but ":" and NUL
    (appendices.md "Room Aliases")."""
    try:
        localpart, _ = _split(s, "#")
    except ValueError:
        return False
    return bool(localpart) and _is_historical_localpart(localpart)


def is_valid_room_id(s: str) -> bool:
    """``!opaque:domain`` (room versions before 12) or ``!`` + 43-character base64 hash (v12,
    the create event's ID with "!" as sigil) — appendices.md "Room IDs"."""
    return _is_valid_hash_or_domain_id(s, "!")


def is_valid_event_id(s: str) -> bool:
    """``$opaque:domain`` (rooms v1–v2) or ``$`` + 43-character base64 reference hash (v3+,
    standard or URL-safe alphabet) — appendices.md "Event IDs"."""
    return _is_valid_hash_or_domain_id(s, "$")


def _is_valid_hash_or_domain_id(s: str, sigil: str) -> bool:
    if not isinstance(s, str) or not s.startswith(sigil):
        return False
    if ":" not in s:
        return _HASH_ID.fullmatch(s, 1) is not None
    try:
        localpart, _ = _split(s, sigil)
    except ValueError:
        return False
    return bool(localpart) and _is_historical_localpart(localpart)


def get_domain(identifier: str) -> str:
    """The domain of ``&localpart:domain``; raise ValueError if there is none."""
    _, sep, domain = identifier.partition(":")
    if not sep or not domain:
        raise ValueError(f"{identifier!r} has no domain")
    return domain


def domain_or_none(identifier: object) -> str | None:
    """The domain of ``&localpart:domain`` like :func:`get_domain`, or None when ``identifier`` is
    not a string or has no domain (for comparisons over untrusted event fields)."""
    if not isinstance(identifier, str):
        return None
    _, sep, domain = identifier.partition(":")
    return domain if sep and domain else None


def random_string(n: int) -> str:
    """``n`` cryptographically random ASCII letters."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(n))


def new_v1_event_id(server_name: str) -> str:
    """A fresh ``$opaque:domain`` event ID for rooms v1–v2 (rooms/fragments/v1-event-ids.md)."""
    return f"${random_string(18)}:{server_name}"
