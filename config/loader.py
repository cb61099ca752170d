"""Read a homeserver.yaml into a validated ``Config`` (config/schema.py).

Rules, in the order a reader meets them:

* Keys use Synapse's names and meanings. A key set to ``null`` counts as absent (default used).
* Relative paths (signing key, media store, sqlite file, TLS files, appservice files, log file,
  registration_shared_secret_path) are resolved against the directory holding the config file,
  not the working directory (Synapse resolves against the working directory).
* A bad value of a known key raises ``ConfigError`` naming its path, e.g.
  ``listeners[0].port: must be an integer 1-65535``.
* Unknown keys, at any depth, produce a warning naming them (``Config.warnings`` and the
  ``config.loader`` logger); with ``strict=True`` they raise ``ConfigError`` instead. Synapse keys
  that uzel accepts but does not act on (``SYNAPSE_KEYS_WITHOUT_EFFECT``) warn "has no effect" and
  never fail, so a Synapse file loads under ``strict``.
* Computed defaults: ``signing_key_path`` = ``<config dir>/<server_name>.signing.key``;
  ``media_store_path`` = ``<config dir>/media_store``; ``database`` = sqlite
  ``<config dir>/homeserver.db``; ``listeners`` absent = one plain listener on 127.0.0.1:8008
  serving client, federation, keys, media (an empty list is an error);
  ``public_baseurl`` — see ``_default_public_baseurl``.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import ipaddress
import logging
import os
import re
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml

from homeserver.protocol.ids import is_valid_user_id, parse_server_name
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

from .schema import (
    DEFAULT_IP_RANGE_BLACKLIST,
    RESOURCE_NAMES,
    Config,
    ConfigError,
    DatabaseConfig,
    FederationRatelimits,
    InviteRatelimits,
    JoinRatelimits,
    ListenerConfig,
    LoginRatelimits,
    LoginViaExistingSession,
    MediaUploadLimit,
    OldSigningKey,
    RatelimitingConfig,
    RatelimitSettings,
    SupportContact,
    TrustedKeyServer,
)

logger = logging.getLogger(__name__)

# Synapse keys a carried-over homeserver.yaml commonly holds that uzel reads but does not act on.
SYNAPSE_KEYS_WITHOUT_EFFECT = frozenset({
    "report_stats", "pid_file", "macaroon_secret_key", "form_secret", "suppress_key_server_warning",
    "log_config", "enable_metrics", "web_client_location", "admin_contact",
    "rc_presence", "rc_delayed_event_mgmt", "rc_reports", "thumbnail_sizes",
    "trusted_third_party_id_servers", "account_threepid_delegates", "use_presence",
})

# Synapse resource names uzel does not serve: dropped from a listener with a warning.
_SYNAPSE_ONLY_RESOURCES = frozenset({"static", "webclient", "metrics", "replication", "consent"})
# Synapse listener types uzel does not run: the listener is skipped with a warning.
_SYNAPSE_ONLY_LISTENER_TYPES = frozenset({"metrics", "manhole", "replication"})

_DEFAULT_RESOURCES = frozenset({"client", "federation", "keys", "media"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*")
_DURATION_UNITS = {None: 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                   "w": 7 * 86_400_000, "y": 365 * 86_400_000}
_MISSING: Any = object()


# --- public helpers -----------------------------------------------------------------------

def parse_size(value: int | str) -> int:
    """Bytes from an integer or a Synapse size string: "50M", "10K", "1G" (1024-based).

    Raises ValueError for anything else (negative numbers, unknown suffixes).
    """
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative size")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    raise ValueError("not a size")


def parse_duration(value: int | str) -> int:
    """Milliseconds from an integer (ms) or a Synapse duration string: "500ms", "30s", "5m",
    "1h", "1d", "1w", "1y". Raises ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative duration")
        return value
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value)
        if m:
            return int(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
    raise ValueError("not a duration")


def load_config(path: str | os.PathLike, *, strict: bool = False) -> Config:
    """Read and validate the YAML file at ``path``. Raises ConfigError (also for an unreadable
    file or invalid YAML; the error's path is then empty)."""
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError("", f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError("", f"{path} is not valid YAML: {e}") from None
    return parse_config(data, config_dir=os.path.dirname(path), config_path=path, strict=strict)


def parse_config(data: Any, *, config_dir: str, config_path: str | None = None,
                 strict: bool = False) -> Config:
    """Validate an already-parsed YAML document (a dict). Handy for tests:
    ``parse_config({"server_name": "test"}, config_dir=tmpdir)``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", "the config file must be a YAML mapping of keys to values")
    r = _Reader(os.path.abspath(config_dir), [])
    root = _Node(data, "", r)
    config = _build(root, r, config_path)

    unknown = [p for p in r.unknown if p not in SYNAPSE_KEYS_WITHOUT_EFFECT]
    ignored = [p for p in r.unknown if p in SYNAPSE_KEYS_WITHOUT_EFFECT]
    if strict and unknown:
        raise ConfigError(", ".join(unknown), "unknown key" + ("s" if len(unknown) > 1 else "")
                          + " (strict mode)")
    warnings = list(r.warnings)
    warnings += [f"{p}: unknown key, ignored" for p in unknown]
    warnings += [f"{p}: Synapse option has no effect in uzel, ignored" for p in ignored]
    for w in warnings:
        logger.warning("config: %s", w)
    return dataclasses.replace(config, warnings=tuple(warnings))


# --- reading machinery --------------------------------------------------------------------

class _Reader:
    """State shared while reading one file: config dir, unknown keys, warnings."""

    def __init__(self, config_dir: str, unknown: list[str]):
        self.config_dir = config_dir
        self.unknown = unknown
        self.warnings: list[str] = []

    def path(self, value: str) -> str:
        return os.path.normpath(os.path.join(self.config_dir, os.path.expanduser(value)))


class _Node:
    """A YAML mapping with its key path; remembers which keys were read so the rest can be
    reported as unknown by ``finish``."""

    def __init__(self, data: dict, path: str, reader: _Reader):
        self.data = data
        self.path = path
        self.reader = reader
        self.seen: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.key_path(key), message)

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value, or ``default`` when absent or null."""
        self.seen.add(key)
        value = self.data.get(key)
        return default if value is None else value

    def has(self, key: str) -> bool:
        self.seen.add(key)
        return self.data.get(key) is not None

    def section(self, key: str) -> _Node | None:
        value = self.get(key, None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, "must be a mapping of keys to values")
        return _Node(value, self.key_path(key), self.reader)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                self.reader.unknown.append(self.key_path(str(key)))

    # typed getters: each raises ConfigError naming the key
    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false (got {value!r})")
        return value

    def integer(self, key: str, default: int, lo: int = 0, hi: int | None = None) -> int:
        value = self.get(key, default)
        if value is _MISSING:
            raise self.error(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            rng = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            raise self.error(key, f"must be an integer {rng} (got {value!r})")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.error(key, f"must be a number >= 0 (got {value!r})")
        return float(value)

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is _MISSING:
            raise self.error(key, "is required")
        if value is not default and (not isinstance(value, str) or not value):
            raise self.error(key, f"must be a non-empty string (got {value!r})")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...],
               fold: Callable[[str], str] | None = None) -> str:
        value = self.get(key, default)
        fold = fold or (lambda v: v)
        if not isinstance(value, str) or fold(value) not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return fold(value)

    def str_list(self, key: str, default: Any) -> Any:
        value = self.get(key, default)
        if value is default:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"must be a list of non-empty strings (got {value!r})")
        return value

    def file_path(self, key: str, default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        return value if value is default else self.reader.path(value)

    def size(self, key: str, default: int) -> int:
        value = self.get(key, default)
        try:
            return parse_size(value)
        except ValueError:
            raise self.error(key, f"must be a size in bytes or like 50M, 512K, 1G (got {value!r})") from None

    def duration(self, key: str, default: int) -> int:
        value = self.get(key, default)
        try:
            return parse_duration(value)
        except ValueError:
            raise self.error(key, f"must be milliseconds or a duration like 30s, 5m, 1h, 1d (got {value!r})") from None

    def positive_size(self, key: str, default: Any = _MISSING) -> int:
        if not self.has(key) and default is _MISSING:
            raise self.error(key, "is required")
        value = self.size(key, default)
        if value <= 0:
            raise self.error(key, f"must be greater than zero (got {self.data.get(key)!r})")
        return value

    def positive_duration(self, key: str, default: Any = _MISSING) -> int:
        if not self.has(key) and default is _MISSING:
            raise self.error(key, "is required")
        value = self.duration(key, default)
        if value <= 0:
            raise self.error(key, f"must be a duration greater than zero (got {self.data.get(key)!r})")
        return value

    def networks(self, key: str, default: tuple[str, ...]) -> list:
        values = self.str_list(key, list(default))
        nets = []
        for i, v in enumerate(values):
            try:
                nets.append(ipaddress.ip_network(v, strict=False))
            except ValueError:
                raise ConfigError(f"{self.key_path(key)}[{i}]",
                                  f"must be an IP address or CIDR range (got {v!r})") from None
        return nets


def _default(cls: type, name: str) -> Any:
    """The default written in config/schema.py for ``cls.name`` (single source of defaults)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory()  # type: ignore[misc]
    raise KeyError(name)


# --- sections -----------------------------------------------------------------------------

def _build(root: _Node, r: _Reader, config_path: str | None) -> Config:
    d = functools.partial(_default, Config)

    server_name = root.string("server_name")
    try:
        parse_server_name(server_name)
    except ValueError as e:
        raise root.error("server_name", f"not a valid server name: {e}") from None

    listeners = _listeners(root, r)

    database = _database(root, r)

    # signing keys
    signing_key_path = root.file_path("signing_key_path", None) or r.path(
        f"{_file_safe(server_name)}.signing.key")
    old_signing_keys = _old_signing_keys(root)
    key_refresh_interval_ms = root.duration("key_refresh_interval", d("key_refresh_interval_ms"))
    trusted_key_servers = _trusted_key_servers(root)

    # registration
    shared_secret = root.string("registration_shared_secret", None)
    secret_path = root.file_path("registration_shared_secret_path", None)
    if shared_secret is not None and secret_path is not None:
        raise root.error("registration_shared_secret_path",
                         "cannot be set together with registration_shared_secret")
    if secret_path is not None:
        try:
            with open(secret_path, encoding="utf-8") as f:
                shared_secret = f.read().strip()
        except OSError as e:
            raise root.error("registration_shared_secret_path", f"cannot read {secret_path}: {e.strerror}") from None
        if not shared_secret:
            raise root.error("registration_shared_secret_path", f"{secret_path} is empty")
    enable_registration = root.boolean("enable_registration", d("enable_registration"))
    without_verification = root.boolean("enable_registration_without_verification",
                                     d("enable_registration_without_verification"))
    requires_token = root.boolean("registration_requires_token", d("registration_requires_token"))
    if enable_registration and not (without_verification or requires_token):
        # Synapse refuses the same: open registration with no verification step is an
        # invitation to spam. uzel has no email/captcha verification, so a token or the
        # explicit opt-in is required.
        raise root.error("enable_registration",
                         "open registration without verification is refused; set "
                         "registration_requires_token: true or enable_registration_without_verification: true")

    default_room_version = root.get("default_room_version", d("default_room_version"))
    if isinstance(default_room_version, int) and not isinstance(default_room_version, bool):
        default_room_version = str(default_room_version)
    if default_room_version not in KNOWN_ROOM_VERSIONS:
        raise root.error("default_room_version",
                         f"unknown room version {default_room_version!r} (known: {', '.join(KNOWN_ROOM_VERSIONS)})")

    presence = root.section("presence")
    presence_enabled = presence.boolean("enabled", d("presence_enabled")) if presence else d("presence_enabled")
    if presence:
        presence.finish()

    # well-known
    extra_wk = root.get("extra_well_known_client_content", {})
    if not isinstance(extra_wk, dict):
        raise root.error("extra_well_known_client_content", "must be a mapping")
    support_contacts, support_page = _support(root)

    # federation / outbound
    whitelist = root.str_list("federation_domain_whitelist", None)
    blacklist_key = "ip_range_blacklist"
    if not root.has("ip_range_blacklist") and root.has("federation_ip_range_blacklist"):
        blacklist_key = "federation_ip_range_blacklist"  # Synapse's older name
        r.warnings.append("federation_ip_range_blacklist: deprecated name, read as ip_range_blacklist")
    blacklist = root.networks(blacklist_key, DEFAULT_IP_RANGE_BLACKLIST)
    # Like Synapse: the unspecified addresses are always refused.
    for always in ("0.0.0.0/32", "::/128"):
        net = ipaddress.ip_network(always)
        if not any(net.subnet_of(b) for b in blacklist if b.version == net.version):
            blacklist.append(net)
    whitelist_ips = root.networks("ip_range_whitelist", ())
    plain_http = root.str_list("federation_client_plain_http_destinations", [])
    for i, name in enumerate(plain_http):
        try:
            parse_server_name(name)
        except ValueError as e:
            raise root.error(f"federation_client_plain_http_destinations[{i}]",
                             f"not a valid server name: {e}") from None

    url_preview = _url_preview(root)
    media_retention = _media_retention(root)

    appservice_files = tuple(r.path(p) for p in root.str_list("app_service_config_files", []))

    log_file = root.file_path("log_file", None)

    config = Config(
        server_name=server_name,
        public_baseurl=_public_baseurl(root, server_name, listeners),
        listeners=tuple(listeners),
        database=database,
        signing_key_path=signing_key_path,
        media_store_path=root.file_path("media_store_path", None) or r.path("media_store"),
        serve_server_wellknown=root.boolean("serve_server_wellknown", d("serve_server_wellknown")),
        extra_well_known_client_content=extra_wk,
        support_contacts=support_contacts,
        support_page=support_page,
        old_signing_keys=old_signing_keys,
        key_refresh_interval_ms=key_refresh_interval_ms,
        trusted_key_servers=trusted_key_servers,
        enable_registration=enable_registration,
        enable_registration_without_verification=without_verification,
        registration_requires_token=requires_token,
        registration_shared_secret=shared_secret,
        allow_guest_access=root.boolean("allow_guest_access", d("allow_guest_access")),
        default_room_version=default_room_version,
        allow_public_rooms_without_auth=root.boolean("allow_public_rooms_without_auth",
                                                  d("allow_public_rooms_without_auth")),
        allow_public_rooms_over_federation=root.boolean("allow_public_rooms_over_federation",
                                                     d("allow_public_rooms_over_federation")),
        require_auth_for_profile_requests=root.boolean("require_auth_for_profile_requests",
                                                    d("require_auth_for_profile_requests")),
        presence_enabled=presence_enabled,
        bcrypt_rounds=root.integer("bcrypt_rounds", d("bcrypt_rounds"), 4, 31),
        refreshable_access_token_lifetime_ms=root.positive_duration(
            "refreshable_access_token_lifetime", d("refreshable_access_token_lifetime_ms")),
        login_via_existing_session=_login_via_existing_session(root),
        turn_uris=tuple(root.str_list("turn_uris", [])),
        turn_shared_secret=root.string("turn_shared_secret", None),
        turn_username=root.string("turn_username", None),
        turn_password=root.string("turn_password", None),
        turn_user_lifetime_ms=root.duration("turn_user_lifetime", d("turn_user_lifetime_ms")),
        turn_allow_guests=root.boolean("turn_allow_guests", d("turn_allow_guests")),
        max_upload_size=root.size("max_upload_size", d("max_upload_size")),
        max_request_body_size=root.size("max_request_body_size", d("max_request_body_size")),
        enable_media_repo=root.boolean("enable_media_repo", d("enable_media_repo")),
        enable_authenticated_media=root.boolean("enable_authenticated_media", d("enable_authenticated_media")),
        **url_preview,
        **media_retention,
        max_image_pixels=root.positive_size("max_image_pixels", d("max_image_pixels")),
        max_pending_media_uploads=root.integer("max_pending_media_uploads", d("max_pending_media_uploads"), 1),
        unused_expiration_time=root.positive_duration("unused_expiration_time", d("unused_expiration_time")),
        media_upload_limits=_media_upload_limits(root),
        dynamic_thumbnails=root.boolean("dynamic_thumbnails", d("dynamic_thumbnails")),
        ratelimiting=_ratelimiting(root),
        federation_verify_certificates=root.boolean("federation_verify_certificates",
                                                 d("federation_verify_certificates")),
        federation_domain_whitelist=frozenset(whitelist) if whitelist is not None else None,
        ip_range_blacklist=tuple(blacklist),
        ip_range_whitelist=tuple(whitelist_ips),
        federation_client_plain_http_destinations=frozenset(plain_http),
        app_service_config_files=appservice_files,
        log_level=root.choice("log_level", d("log_level"), _LOG_LEVELS, fold=str.upper),
        log_format=root.choice("log_format", d("log_format"), ("text", "json")),  # type: ignore[arg-type]
        log_file=log_file,
        config_path=config_path,
    )
    root.finish()
    return config


def _file_safe(server_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", server_name)


def _listeners(root: _Node, r: _Reader) -> list[ListenerConfig]:
    # Synapse keeps the certificate paths at top level; a listener may override them (uzel).
    top_cert = root.file_path("tls_certificate_path", None)
    top_key = root.file_path("tls_private_key_path", None)
    raw = root.get("listeners", None)
    if raw is None:
        return [ListenerConfig(port=8008, bind_addresses=("127.0.0.1",), resources=_DEFAULT_RESOURCES)]
    if not isinstance(raw, list) or not raw:
        raise root.error("listeners", "must be a non-empty list of listeners")
    listeners = []
    for i, item in enumerate(raw):
        path = f"listeners[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a mapping with port, type, resources, ...")
        node = _Node(item, path, r)
        ltype = node.string("type", "http")
        if ltype in _SYNAPSE_ONLY_LISTENER_TYPES:
            r.warnings.append(f"{path}.type: Synapse listener type {ltype!r} is not served by uzel; listener skipped")
            node.seen.update(item.keys())
            continue
        if ltype != "http":
            raise node.error("type", f"must be 'http' (got {ltype!r})")
        if node.has("path"):
            raise node.error("path", "UNIX socket listeners are not supported; use port")
        port = node.integer("port", _MISSING, 1, 65535)
        if node.has("bind_addresses") and node.has("bind_address"):
            raise node.error("bind_address", "set bind_addresses or bind_address, not both")
        if node.has("bind_address"):  # Synapse's older singular form
            addresses = [node.string("bind_address")]
        else:
            addresses = node.str_list("bind_addresses", list(_default(ListenerConfig, "bind_addresses")))
        for j, addr in enumerate(addresses):
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise ConfigError(f"{path}.bind_addresses[{j}]", f"must be an IP address (got {addr!r})") from None
        tls = node.boolean("tls", False)
        cert = node.file_path("tls_certificate_path", None) or top_cert
        key = node.file_path("tls_private_key_path", None) or top_key
        if tls and not cert:
            raise node.error("tls", "tls: true needs tls_certificate_path (top level or on the listener)")
        if tls and not key:
            raise node.error("tls", "tls: true needs tls_private_key_path (top level or on the listener)")
        listeners.append(ListenerConfig(
            port=port,
            bind_addresses=tuple(addresses),
            type="http",
            tls=tls,
            tls_certificate_path=cert if tls else None,
            tls_private_key_path=key if tls else None,
            x_forwarded=node.boolean("x_forwarded", False),
            resources=_resources(node, r),
        ))
        node.finish()
    if not listeners:
        raise root.error("listeners", "no http listener left (uzel serves only type: http)")
    for a in range(len(listeners)):
        for b in range(a):
            la, lb = listeners[a], listeners[b]
            if la.port == lb.port and set(la.bind_addresses) & set(lb.bind_addresses):
                raise ConfigError(f"listeners[{a}].port", f"port {la.port} is already used by listeners[{b}]")
    return listeners


def _resources(node: _Node, r: _Reader) -> frozenset[str]:
    raw = node.get("resources", None)
    if raw is None:
        raise node.error("resources", "is required: a list like [{names: [client, federation]}]")
    if not isinstance(raw, list):
        raise node.error("resources", "must be a list of {names: [...]} entries")
    names: set[str] = set()
    for i, item in enumerate(raw):
        rpath = node.key_path(f"resources[{i}]")
        if not isinstance(item, dict):
            raise ConfigError(rpath, "must be a mapping with a names list")
        rnode = _Node(item, rpath, r)
        rnode.get("compress")  # Synapse's option; uzel leaves compression to the proxy
        for j, name in enumerate(rnode.str_list("names", [])):
            if name in RESOURCE_NAMES:
                names.add(name)
            elif name in _SYNAPSE_ONLY_RESOURCES:
                r.warnings.append(f"{rpath}.names[{j}]: Synapse resource {name!r} is not served by uzel; ignored")
            else:
                raise ConfigError(f"{rpath}.names[{j}]",
                                  f"unknown resource {name!r} (expected one of {', '.join(sorted(RESOURCE_NAMES))})")
        rnode.finish()
    return frozenset(names)


def _public_baseurl(root: _Node, server_name: str, listeners: list[ListenerConfig]) -> str:
    """``public_baseurl``, or the default derived from the first client listener:

    * explicit value: must be an http(s) URL; a trailing "/" is added;
    * client listener with tls: ``https://<host>[:port]/`` (port omitted when 443);
    * client listener without tls but with x_forwarded: a reverse proxy terminates TLS, so
      Synapse's default ``https://<server_name>/``;
    * client listener, plain, no proxy: ``http://<host>[:port]/`` (port omitted when 80);
    * no client listener: ``https://<server_name>/``.

    ``<host>`` is server_name without its port.
    """
    value = root.string("public_baseurl", None)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise root.error("public_baseurl", f"must be an http:// or https:// URL (got {value!r})")
        return value if value.endswith("/") else value + "/"
    host, _ = parse_server_name(server_name)
    client = next((lst for lst in listeners if "client" in lst.resources), None)
    if client is None or (not client.tls and client.x_forwarded):
        return f"https://{server_name}/"
    scheme, default_port = ("https", 443) if client.tls else ("http", 80)
    port = "" if client.port == default_port else f":{client.port}"
    return f"{scheme}://{host}{port}/"


def _database(root: _Node, r: _Reader) -> DatabaseConfig:
    node = root.section("database")
    if node is None:
        return DatabaseConfig(engine="sqlite", path=r.path("homeserver.db"), pool_min=1, pool_max=1)
    name = node.choice("name", "sqlite3", ("sqlite3", "psycopg2", "sqlite", "postgres", "postgresql"))
    for synapse_key in ("allow_unsafe_locale", "txn_limit"):
        node.get(synapse_key)  # Synapse options without effect in uzel: accepted silently
    args = node.section("args") or _Node({}, node.key_path("args"), r)
    if name in ("sqlite3", "sqlite"):
        db = args.string("database", None) or "homeserver.db"
        for k in ("cp_min", "cp_max"):
            args.get(k)  # Synapse ignores them for sqlite too (one connection)
        args.finish()
        node.finish()
        return DatabaseConfig(engine="sqlite", path=db if db == ":memory:" else r.path(db), pool_min=1, pool_max=1)

    pool_min = args.integer("cp_min", _default(DatabaseConfig, "pool_min"), 1)
    pool_max = args.integer("cp_max", _default(DatabaseConfig, "pool_max"), 1)
    if pool_max < pool_min:
        raise args.error("cp_max", f"must be >= cp_min ({pool_min})")
    for k in list(args.data):
        if isinstance(k, str) and k.startswith("cp_"):
            args.get(k)  # Twisted adbapi pool options (cp_reconnect, cp_noisy, ...): no effect
    dsn = args.string("dsn", None)
    if dsn is not None:
        for k in args.data:
            if k not in args.seen:
                raise args.error(str(k), "cannot be combined with dsn")
    else:
        # Every other arg is a libpq connection keyword; Synapse's "database" is libpq "dbname".
        words = []
        for k, v in args.data.items():
            if k in args.seen:
                continue
            args.get(k)
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise args.error(str(k), f"must be a string or number (got {v!r})")
            if not re.fullmatch(r"[a-z_]+", str(k)):
                raise args.error(str(k), "is not a libpq connection keyword")
            words.append(f"{'dbname' if k == 'database' else k}={_libpq_quote(str(v))}")
        dsn = " ".join(words)
    args.finish()
    node.finish()
    return DatabaseConfig(engine="postgres", dsn=dsn, pool_min=pool_min, pool_max=pool_max)


def _libpq_quote(value: str) -> str:
    """A libpq conninfo value: quoted when empty or holding spaces, quotes or backslashes."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _old_signing_keys(root: _Node) -> dict[str, OldSigningKey]:
    node = root.section("old_signing_keys")
    if node is None:
        return {}
    keys = {}
    for key_id in list(node.data):
        entry = node.section(str(key_id))
        if entry is None:
            raise node.error(str(key_id), "must be {key: <base64>, expired_ts: <ms>}")
        alg, sep, version = str(key_id).partition(":")
        if alg != "ed25519" or not sep or not re.fullmatch(r"[A-Za-z0-9_]+", version):
            raise node.error(str(key_id), "key id must look like ed25519:<version> (letters, digits, _)")
        b64 = entry.string("key")
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise entry.error("key", "must be the unpadded base64 of a 32-byte ed25519 verify key")
        keys[str(key_id)] = OldSigningKey(key_id=str(key_id), key=b64.rstrip("="),
                                          expired_ts=entry.integer("expired_ts", _MISSING))
        entry.finish()
    node.finish()
    return keys


def _trusted_key_servers(root: _Node) -> tuple[TrustedKeyServer, ...]:
    raw = root.get("trusted_key_servers", [])
    if not isinstance(raw, list):
        raise root.error("trusted_key_servers", "must be a list of {server_name: ...} entries")
    servers = []
    for i, item in enumerate(raw):
        path = f"trusted_key_servers[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a mapping with server_name")
        node = _Node(item, path, root.reader)
        name = node.string("server_name")
        try:
            parse_server_name(name)
        except ValueError as e:
            raise node.error("server_name", f"not a valid server name: {e}") from None
        vk = node.get("verify_keys", {})
        if not isinstance(vk, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in vk.items()):
            raise node.error("verify_keys", "must map key ids to unpadded base64 keys")
        servers.append(TrustedKeyServer(name, dict(vk), node.boolean("accept_keys_insecurely", False)))
        node.finish()
    return tuple(servers)


def _media_upload_limits(root: _Node) -> tuple[MediaUploadLimit, ...]:
    """``media_upload_limits``: a list of ``{time_period: <duration>, max_size: <size>}``
    (Synapse's shape), both required and greater than zero."""
    raw = root.get("media_upload_limits", [])
    if not isinstance(raw, list):
        raise root.error("media_upload_limits", "must be a list of {time_period, max_size} entries")
    limits = []
    for i, item in enumerate(raw):
        path = f"media_upload_limits[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a mapping like {time_period: 1h, max_size: 100M}")
        node = _Node(item, path, root.reader)
        limits.append(MediaUploadLimit(time_period_ms=node.positive_duration("time_period"),
                                       max_bytes=node.positive_size("max_size")))
        node.finish()
    return tuple(limits)


def _url_preview(root: _Node) -> dict:
    """url_preview_enabled and its keys (Synapse's). Like Synapse, previews without an explicit
    url_preview_ip_range_blacklist are refused: the deny list is what stops server-side request
    forgery, so it must be a conscious choice. 0.0.0.0 and :: are always added."""
    enabled = root.boolean("url_preview_enabled", _default(Config, "url_preview_enabled"))
    has_blacklist = root.has("url_preview_ip_range_blacklist")
    if enabled and not has_blacklist:
        raise root.error("url_preview_ip_range_blacklist",
                         "is required when url_preview_enabled is true (list the address ranges URL "
                         "previews must never reach, e.g. the ip_range_blacklist defaults)")
    blacklist = root.networks("url_preview_ip_range_blacklist", ())
    if enabled:
        for always in ("0.0.0.0/32", "::/128"):
            net = ipaddress.ip_network(always)
            if not any(net.subnet_of(b) for b in blacklist if b.version == net.version):
                blacklist.append(net)
    url_blacklist = root.get("url_preview_url_blacklist", [])
    if not isinstance(url_blacklist, list):
        raise root.error("url_preview_url_blacklist", "must be a list of mappings of URL parts to patterns")
    for i, entry in enumerate(url_blacklist):
        if not isinstance(entry, dict) or not entry or not all(
                isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool)
                for k, v in entry.items()):
            raise ConfigError(f"url_preview_url_blacklist[{i}]",
                              "must be a mapping of URL parts (scheme, netloc, path, ...) to patterns")
        for k, v in entry.items():
            if isinstance(v, str) and v.startswith("^"):
                try:
                    re.compile(v)
                except re.error as e:
                    raise ConfigError(f"url_preview_url_blacklist[{i}].{k}", f"invalid regex: {e}") from None
    return {
        "url_preview_enabled": enabled,
        "url_preview_ip_range_blacklist": tuple(blacklist),
        "url_preview_ip_range_whitelist": tuple(root.networks("url_preview_ip_range_whitelist", ())),
        "url_preview_url_blacklist": tuple({k: str(v) for k, v in e.items()} for e in url_blacklist),
        "max_spider_size": root.positive_size("max_spider_size", _default(Config, "max_spider_size")),
    }


def _media_retention(root: _Node) -> dict:
    """media_retention: {local_media_lifetime, remote_media_lifetime} (Synapse's section);
    absent or null: media is kept forever."""
    sec = root.section("media_retention")
    if sec is None:
        return {"local_media_lifetime_ms": None, "remote_media_lifetime_ms": None}
    out = {}
    for key in ("local_media_lifetime", "remote_media_lifetime"):
        out[f"{key}_ms"] = sec.positive_duration(key) if sec.has(key) else None
    sec.finish()
    return out


def _login_via_existing_session(root: _Node) -> LoginViaExistingSession:
    """login_via_existing_session: {enabled, require_ui_auth, token_timeout} (Synapse's section)."""
    default = LoginViaExistingSession()
    sec = root.section("login_via_existing_session")
    if sec is None:
        return default
    value = LoginViaExistingSession(
        enabled=sec.boolean("enabled", default.enabled),
        require_ui_auth=sec.boolean("require_ui_auth", default.require_ui_auth),
        token_timeout_ms=sec.positive_duration("token_timeout", default.token_timeout_ms))
    sec.finish()
    return value


# support.yaml roles: the two the spec defines, or a namespaced identifier (appendices.md
# "Common Namespaced Identifier Grammar") outside the reserved m. namespace.
_SUPPORT_ROLES = ("m.role.admin", "m.role.security")
_NAMESPACED_ID = re.compile(r"[a-z][a-z0-9_\-]*(\.[a-z0-9_\-]+)+")


def _support(root: _Node) -> tuple[tuple[SupportContact, ...], str | None]:
    """support_contacts (a list of {role, matrix_id, email_address}) and support_page (an
    http(s) URL), published in /.well-known/matrix/support (support.yaml)."""
    page = root.string("support_page", None)
    if page is not None:
        parts = urlsplit(page)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise root.error("support_page", f"must be an http:// or https:// URL (got {page!r})")
    raw = root.get("support_contacts", [])
    if not isinstance(raw, list):
        raise root.error("support_contacts", "must be a list of {role, matrix_id, email_address} entries")
    contacts = []
    for i, item in enumerate(raw):
        path = f"support_contacts[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a mapping with role and matrix_id and/or email_address")
        node = _Node(item, path, root.reader)
        role = node.string("role")
        if role not in _SUPPORT_ROLES and (role.startswith("m.") or len(role) > 255
                                           or not _NAMESPACED_ID.fullmatch(role)):
            raise node.error("role", f"must be m.role.admin, m.role.security or a namespaced identifier "
                                     f"like org.example.role (got {role!r})")
        matrix_id = node.string("matrix_id", None)
        if matrix_id is not None and not is_valid_user_id(matrix_id):
            raise node.error("matrix_id", f"must be a Matrix user ID like @admin:example.org (got {matrix_id!r})")
        email = node.string("email_address", None)
        if email is not None and (email.count("@") != 1 or email.startswith("@") or email.endswith("@")
                                  or any(c.isspace() for c in email)):
            raise node.error("email_address", f"must be an email address (got {email!r})")
        if matrix_id is None and email is None:
            raise ConfigError(path, "needs matrix_id, email_address or both")
        contacts.append(SupportContact(role=role, matrix_id=matrix_id, email_address=email))
        node.finish()
    return tuple(contacts), page


def _ratelimit(node: _Node, key: str, default: RatelimitSettings | None) -> RatelimitSettings | None:
    """One {per_second, burst_count} section; a missing half keeps its default (for
    rc_admin_redaction, whose default is None, rc_message's default)."""
    sec = node.section(key)
    if sec is None:
        return default
    base = default or RatelimitingConfig().rc_message
    settings = RatelimitSettings(sec.number("per_second", base.per_second),
                                 sec.integer("burst_count", base.burst_count))
    sec.finish()
    return settings


def _ratelimit_group(root: _Node, key: str, cls: type) -> Any:
    sec = root.section(key)
    default = cls()
    if sec is None:
        return default
    values = {f.name: _ratelimit(sec, f.name, getattr(default, f.name)) for f in dataclasses.fields(cls)}
    sec.finish()
    return cls(**values)


def _ratelimiting(root: _Node) -> RatelimitingConfig:
    d = RatelimitingConfig()
    singles = {name: _ratelimit(root, name, getattr(d, name)) for name in (
        "rc_message", "rc_registration", "rc_registration_token_validity", "rc_joins_per_room",
        "rc_admin_redaction", "rc_3pid_validation", "rc_media_create", "rc_key_requests")}
    fed = root.section("rc_federation")
    federation = d.rc_federation
    if fed is not None:
        federation = FederationRatelimits(**{f.name: fed.integer(f.name, getattr(d.rc_federation, f.name))
                                             for f in dataclasses.fields(FederationRatelimits)})
        fed.finish()
    return RatelimitingConfig(
        enabled=root.boolean("enable_ratelimiting", d.enabled),
        rc_login=_ratelimit_group(root, "rc_login", LoginRatelimits),
        rc_joins=_ratelimit_group(root, "rc_joins", JoinRatelimits),
        rc_invites=_ratelimit_group(root, "rc_invites", InviteRatelimits),
        rc_federation=federation,
        **singles,
    )


def known_top_level_keys() -> frozenset[str]:
    """Every top-level key the loader reads (deprecated aliases and the Synapse keys without
    effect excluded): what the sample config must document."""
    r = _Reader("/", [])
    root = _Node({"server_name": "example.org"}, "", r)
    _build(root, r, None)
    return frozenset(root.seen - {"federation_ip_range_blacklist"})
