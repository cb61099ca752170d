"""Application service registrations: parsing and validating the YAML files listed in
``app_service_config_files``, and the namespace rules every other part asks.

Spec: application-service-api.md "Registration" (data/api/application-service/definitions/
registration.yaml, namespace_list.yaml): ``id``, ``url`` (null: no traffic), ``as_token``,
``hs_token``, ``sender_localpart``, ``namespaces`` (``users``/``aliases``/``rooms``, each a list
of ``{regex, exclusive}``), ``rate_limited``, ``protocols``, ``receive_ephemeral`` (v1.13; the
MSC2409 key ``de.sorunome.msc2409.push_ephemeral`` is accepted too). "each ``as_token`` and ``id``
MUST be unique per application service ... The homeserver MUST enforce this."

uzel extensions read from the registration (the unstable keys bridges already write):

* ``org.matrix.msc3202`` / ``push_to_device``: to-device messages for the service's users are
  pushed in transactions (MSC2409 ``de.sorunome.msc2409.to_device``). Without it they are pushed
  anyway when ``receive_ephemeral`` is on (as Synapse does with its MSC2409 switch).
* ``io.element.msc4190`` is accepted (device management is always allowed for appservices).

Namespace regexes are Python regular expressions matched from the start of the ID
(``re.match``, Synapse's reading); write ``.*`` or ``:server$`` explicitly. The ``users``
namespace only ever covers local users (application-service-api.md "Registration", note).

Pure: no I/O except :func:`load_registrations`, which reads the files.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from config.schema import ConfigError
from homeserver.protocol import ids

logger = logging.getLogger(__name__)

NAMESPACE_KINDS = ("users", "aliases", "rooms")
_EPHEMERAL_KEYS = ("receive_ephemeral", "de.sorunome.msc2409.push_ephemeral")
_TO_DEVICE_KEYS = ("push_to_device", "org.matrix.msc3202", "de.sorunome.msc2409.push_to_device")
_KNOWN_KEYS = {"id", "url", "as_token", "hs_token", "sender_localpart", "namespaces", "rate_limited",
               "protocols", "io.element.msc4190", "org.matrix.msc4190", *_EPHEMERAL_KEYS, *_TO_DEVICE_KEYS}


class RegistrationError(ConfigError):
    """A registration file is invalid; the message names the file and the field."""

    def __init__(self, source: str, field_path: str, message: str):
        where = f"{source}: {field_path}" if field_path else source
        super().__init__("app_service_config_files", f"{where}: {message}")
        self.source = source
        self.field_path = field_path


@dataclass(frozen=True)
class Namespace:
    regex: str
    exclusive: bool
    pattern: re.Pattern = field(compare=False, repr=False)

    def matches(self, value: str) -> bool:
        return self.pattern.match(value) is not None


@dataclass(frozen=True)
class AppService:
    """One registered application service (what ``Requester.app_service`` holds)."""

    id: str
    url: str | None
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)
    sender_localpart: str
    server_name: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    push_to_device: bool = False
    source: str = ""

    @property
    def sender(self) -> str:
        """The service's own user, ``@sender_localpart:server``."""
        return f"@{self.sender_localpart}:{self.server_name}"

    @property
    def wants_to_device(self) -> bool:
        return self.push_to_device or self.receive_ephemeral

    # --- users: local only (registration.yaml, namespaces.users) ------------------------------
    def _is_local(self, user_id: str) -> bool:
        try:
            return ids.get_domain(user_id) == self.server_name
        except ValueError:
            return False

    def is_interested_in_user(self, user_id: str) -> bool:
        """The sender, or a local user matching a ``users`` namespace."""
        if user_id == self.sender:
            return True
        return self._is_local(user_id) and any(ns.matches(user_id) for ns in self.users)

    def is_exclusive_user(self, user_id: str) -> bool:
        if user_id == self.sender:
            return True
        return self._is_local(user_id) and any(ns.exclusive and ns.matches(user_id) for ns in self.users)

    # --- aliases and rooms ----------------------------------------------------------------------
    def is_interested_in_alias(self, alias: str) -> bool:
        return any(ns.matches(alias) for ns in self.aliases)

    def is_exclusive_alias(self, alias: str) -> bool:
        return any(ns.exclusive and ns.matches(alias) for ns in self.aliases)

    def is_interested_in_room_id(self, room_id: str) -> bool:
        return any(ns.matches(room_id) for ns in self.rooms)

    def is_interested_in_room(self, room_id: str, aliases: Iterable[str], joined_members: Iterable[str]) -> bool:
        """registration.yaml: every event of a room whose ID or one of whose aliases matches, or
        where a user of the service is a joined member."""
        return (self.is_interested_in_room_id(room_id)
                or any(self.is_interested_in_alias(a) for a in aliases)
                or any(self.is_interested_in_user(u) for u in joined_members))

    def is_interested_in_event(self, event_type: str, sender: str, state_key: str | None, room_id: str,
                               room_interested: bool) -> bool:
        """An event is pushed when the service is interested in its room, its sender, or (for
        membership events) its target."""
        if room_interested or self.is_interested_in_user(sender):
            return True
        return event_type == "m.room.member" and isinstance(state_key, str) and self.is_interested_in_user(state_key)


# =============================================================================================
# Parsing
# =============================================================================================

def parse_registration(data: Any, server_name: str, source: str = "<registration>") -> AppService:
    """An :class:`AppService` from a registration mapping; raises :class:`RegistrationError`
    naming ``source`` and the offending field."""
    def fail(field_path: str, message: str) -> RegistrationError:
        return RegistrationError(source, field_path, message)

    if not isinstance(data, Mapping):
        raise fail("", "a registration must be a YAML mapping")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if key not in data:
            raise fail(key, "required field is missing")
        if not isinstance(data[key], str) or not data[key]:
            raise fail(key, "must be a non-empty string")
    if "url" not in data:
        raise fail("url", "required field is missing (use null for a service that receives no traffic)")
    url = data["url"]
    if url is not None:
        if not isinstance(url, str):
            raise fail("url", "must be a string or null")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise fail("url", f"{url!r} is not an http(s) URL")
        url = url.rstrip("/")
    if data["as_token"] == data["hs_token"]:
        raise fail("hs_token", "must differ from as_token")
    localpart = data["sender_localpart"]
    if not ids.is_valid_localpart(localpart) or len(f"@{localpart}:{server_name}".encode()) > ids.MAX_ID_BYTES:
        raise fail("sender_localpart", f"{localpart!r} is not a valid user ID localpart")
    if "namespaces" not in data:
        raise fail("namespaces", "required field is missing")
    namespaces = data["namespaces"]
    if not isinstance(namespaces, Mapping):
        raise fail("namespaces", "must be a mapping with users, aliases and rooms lists")
    parsed: dict[str, tuple[Namespace, ...]] = {}
    for kind in NAMESPACE_KINDS:
        items = namespaces.get(kind)
        if items is None:
            parsed[kind] = ()
            continue
        if not isinstance(items, list):
            raise fail(f"namespaces.{kind}", "must be a list")
        out = []
        for i, item in enumerate(items):
            where = f"namespaces.{kind}[{i}]"
            if not isinstance(item, Mapping):
                raise fail(where, "must be a mapping with 'regex' and 'exclusive'")
            regex = item.get("regex")
            if not isinstance(regex, str) or not regex:
                raise fail(f"{where}.regex", "must be a non-empty string")
            exclusive = item.get("exclusive", False)
            if not isinstance(exclusive, bool):
                raise fail(f"{where}.exclusive", "must be true or false")
            try:
                pattern = re.compile(regex)
            except re.error as e:
                raise fail(f"{where}.regex", f"invalid regular expression {regex!r}: {e}") from None
            out.append(Namespace(regex, exclusive, pattern))
        parsed[kind] = tuple(out)
    unknown_kinds = sorted(set(namespaces) - set(NAMESPACE_KINDS))
    if unknown_kinds:
        raise fail("namespaces", f"unknown namespace kind(s) {', '.join(map(str, unknown_kinds))}")

    rate_limited = data.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise fail("rate_limited", "must be true or false")
    protocols = data.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and p for p in protocols):
        raise fail("protocols", "must be a list of non-empty strings")
    flags = {}
    for key in (*_EPHEMERAL_KEYS, *_TO_DEVICE_KEYS, "io.element.msc4190", "org.matrix.msc4190"):
        value = data.get(key)
        if value is not None and not isinstance(value, bool):
            raise fail(key, "must be true or false")
        flags[key] = bool(value)
    return AppService(
        id=data["id"], url=url, as_token=data["as_token"], hs_token=data["hs_token"],
        sender_localpart=localpart, server_name=server_name,
        users=parsed["users"], aliases=parsed["aliases"], rooms=parsed["rooms"],
        rate_limited=rate_limited, protocols=tuple(dict.fromkeys(protocols)),
        receive_ephemeral=any(flags[k] for k in _EPHEMERAL_KEYS),
        push_to_device=any(flags[k] for k in _TO_DEVICE_KEYS), source=source)


def check_unique(services: Iterable[AppService]) -> None:
    """Refuse two services with the same ``id``, ``as_token`` or sender (registration "MUST")."""
    seen_ids: dict[str, AppService] = {}
    seen_tokens: dict[str, AppService] = {}
    seen_senders: dict[str, AppService] = {}
    for s in services:
        if s.id in seen_ids:
            raise RegistrationError(s.source, "id", f"{s.id!r} is also the id of {seen_ids[s.id].source}")
        if s.as_token in seen_tokens:
            raise RegistrationError(s.source, "as_token", f"the same as_token is used by {seen_tokens[s.as_token].source}")
        if s.as_token in {o.hs_token for o in seen_ids.values()}:
            raise RegistrationError(s.source, "as_token", "is the hs_token of another registration")
        if s.sender in seen_senders:
            raise RegistrationError(s.source, "sender_localpart",
                                    f"{s.sender} is also the sender of {seen_senders[s.sender].source}")
        seen_ids[s.id] = seen_tokens[s.as_token] = seen_senders[s.sender] = s


def load_registrations(paths: Iterable[str], server_name: str) -> list[AppService]:
    """Read and validate every registration file (config ``app_service_config_files``)."""
    import yaml

    services = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise RegistrationError(path, "", f"cannot read the file: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise RegistrationError(path, "", f"not valid YAML: {e}") from None
        services.append(parse_registration(data, server_name, path))
        extra = unknown_keys(data)
        if extra:
            logger.warning("appservice registration %s: ignoring unknown keys %s", path, ", ".join(map(str, extra)))
    check_unique(services)
    return services


def unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """Top-level keys uzel does not read (logged as a warning at start-up)."""
    return sorted(k for k in data if k not in _KNOWN_KEYS) if isinstance(data, Mapping) else []
