"""The typed shape of uzel's configuration: what ``load_config`` returns.

YAML keys follow Synapse's homeserver.yaml names and meanings wherever Synapse has the concept, so a
Synapse config mostly carries over; attribute names below equal the YAML key unless noted. Values are
already validated and normalised (sizes in bytes, durations in milliseconds, paths absolute). The
defaults written here are the single source the loader uses; ``config/loader.py`` documents the
rules that derive the computed ones (public_baseurl, signing_key_path, media_store_path, database).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is invalid; ``path`` names the key, e.g. ``listeners[0].port``."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# The resources a listener can serve (Synapse's ``listeners[].resources[].names``).
# client: /_matrix/client, /_synapse/admin, /.well-known/matrix/client; federation: /_matrix/federation;
# keys: /_matrix/key; media: /_matrix/media; openid: /_matrix/federation/v1/openid/userinfo only;
# health: /health.
RESOURCE_NAMES = frozenset({"client", "federation", "keys", "media", "openid", "health"})

# Networks uzel never connects to for federation, media or previews unless whitelisted
# (Synapse's DEFAULT_IP_RANGE_BLACKLIST, plus "this network" 0.0.0.0/8, reserved 240.0.0.0/4 and
# the unspecified IPv6 address, which Synapse adds separately).
DEFAULT_IP_RANGE_BLACKLIST: tuple[str, ...] = (
    "0.0.0.0/8",  # "this network"
    "127.0.0.0/8",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private (RFC 1918)
    "100.64.0.0/10",  # carrier-grade NAT
    "192.0.0.0/24",  # IETF protocol assignments
    "169.254.0.0/16",  # link-local
    "192.88.99.0/24",  # former 6to4 relay anycast
    "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # benchmarking, documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, includes broadcast
    "::/128",  # unspecified
    "::1/128",  # loopback
    "fe80::/10",  # link-local
    "fc00::/7",  # unique local
    "2001:db8::/32",  # documentation
    "ff00::/8",  # multicast
    "fec0::/10",  # deprecated site-local
)


@dataclass(frozen=True)
class ListenerConfig:
    """One entry of ``listeners``. uzel serves only ``type: http``."""

    port: int
    # Synapse's default when the key is absent; generated configs write ["127.0.0.1"].
    bind_addresses: tuple[str, ...] = ("::", "0.0.0.0")
    type: str = "http"
    tls: bool = False
    # Per-listener paths (uzel extension) or, when absent, the top-level Synapse keys
    # tls_certificate_path / tls_private_key_path. Always set when tls is true.
    tls_certificate_path: str | None = None
    tls_private_key_path: str | None = None
    # Trust X-Forwarded-For / X-Forwarded-Proto from the peer (a reverse proxy).
    x_forwarded: bool = False
    resources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DatabaseConfig:
    """``database``: Synapse's ``name: sqlite3 | psycopg2`` plus ``args``."""

    engine: Literal["sqlite", "postgres"]
    path: str | None = None  # sqlite: absolute file path or ":memory:"
    dsn: str | None = None  # postgres: libpq connection string (key=value form or postgresql:// URL)
    pool_min: int = 5  # args.cp_min (1 for sqlite)
    pool_max: int = 10  # args.cp_max (1 for sqlite)


@dataclass(frozen=True)
class OldSigningKey:
    """One entry of ``old_signing_keys``: a retired key still published for verification."""

    key_id: str  # "ed25519:<version>"
    key: str  # unpadded base64 of the 32-byte verify key
    expired_ts: int  # ms since the epoch (Synapse's key name)


@dataclass(frozen=True)
class TrustedKeyServer:
    """One entry of ``trusted_key_servers`` (notary servers for remote signing keys)."""

    server_name: str
    verify_keys: dict[str, str] = field(default_factory=dict)  # key_id -> unpadded base64
    accept_keys_insecurely: bool = False


@dataclass(frozen=True)
class RatelimitSettings:
    """A token bucket: sustained ``per_second`` actions, bursts of up to ``burst_count``."""

    per_second: float
    burst_count: int


@dataclass(frozen=True)
class LoginRatelimits:
    """``rc_login``: by client IP, by account, and failed attempts per account."""

    address: RatelimitSettings = RatelimitSettings(0.003, 5)
    account: RatelimitSettings = RatelimitSettings(0.003, 5)
    failed_attempts: RatelimitSettings = RatelimitSettings(0.17, 3)


@dataclass(frozen=True)
class JoinRatelimits:
    """``rc_joins``: joins to rooms this server is already in (local) and to new ones (remote)."""

    local: RatelimitSettings = RatelimitSettings(0.1, 10)
    remote: RatelimitSettings = RatelimitSettings(0.01, 10)


@dataclass(frozen=True)
class InviteRatelimits:
    """``rc_invites``: invites sent into a room, received by a user, sent by a user."""

    per_room: RatelimitSettings = RatelimitSettings(0.3, 10)
    per_user: RatelimitSettings = RatelimitSettings(0.003, 5)
    per_issuer: RatelimitSettings = RatelimitSettings(0.3, 10)


@dataclass(frozen=True)
class FederationRatelimits:
    """``rc_federation``: inbound federation request shaping per origin server (Synapse's meaning)."""

    window_size: int = 1000  # ms
    sleep_limit: int = 10  # requests per window before delaying
    sleep_delay: int = 500  # ms added per request over sleep_limit
    reject_limit: int = 50  # requests per window before rejecting with 429
    concurrent: int = 3  # requests processed at once per origin


@dataclass(frozen=True)
class RatelimitingConfig:
    """All ``rc_*`` keys, grouped. ``enabled`` is uzel's top-level ``enable_ratelimiting``:
    false turns every limiter off (tests, benchmarks, closed deployments)."""

    enabled: bool = True
    rc_message: RatelimitSettings = RatelimitSettings(0.2, 10)
    rc_registration: RatelimitSettings = RatelimitSettings(0.17, 3)
    rc_registration_token_validity: RatelimitSettings = RatelimitSettings(0.1, 5)
    rc_login: LoginRatelimits = LoginRatelimits()
    rc_joins: JoinRatelimits = JoinRatelimits()
    rc_joins_per_room: RatelimitSettings = RatelimitSettings(1, 10)
    rc_invites: InviteRatelimits = InviteRatelimits()
    # None: admins' redactions count against rc_message like everyone's (Synapse's meaning).
    rc_admin_redaction: RatelimitSettings | None = None
    rc_3pid_validation: RatelimitSettings = RatelimitSettings(0.003, 5)
    rc_media_create: RatelimitSettings = RatelimitSettings(10, 200)
    rc_key_requests: RatelimitSettings = RatelimitSettings(20, 100)
    rc_federation: FederationRatelimits = FederationRatelimits()


@dataclass(frozen=True)
class MediaUploadLimit:
    """One ``media_upload_limits`` entry (Synapse's): a user may upload at most ``max_bytes`` in
    any window of ``time_period_ms``. YAML: ``{time_period: <duration>, max_size: <size>}``."""

    time_period_ms: int
    max_bytes: int


@dataclass(frozen=True)
class LoginViaExistingSession:
    """``login_via_existing_session`` (Synapse's section): whether signed-in users may mint
    single-use m.login.token tokens with POST /_matrix/client/v1/login/get_token (client-server-api
    "Login", login_token.yaml), for signing in another device."""

    enabled: bool = False
    require_ui_auth: bool = True  # re-prompt for the password on every request (the spec's MUST)
    token_timeout_ms: int = 5 * 60 * 1000  # YAML key: token_timeout


@dataclass(frozen=True)
class SupportContact:
    """One ``support_contacts`` entry, published in /.well-known/matrix/support (support.yaml):
    a role (m.role.admin, m.role.security or a namespaced one) and at least one of a Matrix user
    ID and an email address."""

    role: str
    matrix_id: str | None = None
    email_address: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. See config/sample_config.py for each key's meaning."""

    # --- server identity ---
    server_name: str
    public_baseurl: str  # always ends with "/"
    listeners: tuple[ListenerConfig, ...]
    database: DatabaseConfig
    signing_key_path: str
    media_store_path: str
    serve_server_wellknown: bool = False
    extra_well_known_client_content: dict = field(default_factory=dict)
    # /.well-known/matrix/support (uzel keys; Synapse has none): served only when one is set.
    support_contacts: tuple[SupportContact, ...] = ()
    support_page: str | None = None

    # --- signing keys and key servers ---
    old_signing_keys: dict[str, OldSigningKey] = field(default_factory=dict)  # by key_id
    key_refresh_interval_ms: int = 24 * 3600 * 1000  # YAML key: key_refresh_interval
    trusted_key_servers: tuple[TrustedKeyServer, ...] = ()

    # --- registration and rooms ---
    enable_registration: bool = False
    enable_registration_without_verification: bool = False
    registration_requires_token: bool = False
    # From registration_shared_secret, or the file named by registration_shared_secret_path.
    registration_shared_secret: str | None = None
    allow_guest_access: bool = False
    default_room_version: str = "12"
    allow_public_rooms_without_auth: bool = False
    allow_public_rooms_over_federation: bool = False
    require_auth_for_profile_requests: bool = False
    presence_enabled: bool = True  # YAML: presence.enabled

    # --- passwords and access tokens ---
    bcrypt_rounds: int = 12  # bcrypt cost factor for new password hashes, 4-31
    # Lifetime of access tokens that come with a refresh token (YAML key:
    # refreshable_access_token_lifetime). Tokens without a refresh token never expire.
    refreshable_access_token_lifetime_ms: int = 5 * 60 * 1000
    login_via_existing_session: LoginViaExistingSession = LoginViaExistingSession()

    # --- VoIP (GET /voip/turnServer; Synapse's keys) ---
    turn_uris: tuple[str, ...] = ()
    turn_shared_secret: str | None = None  # coturn use-auth-secret (time-limited credentials)
    turn_username: str | None = None  # static credentials, when there is no shared secret
    turn_password: str | None = None
    turn_user_lifetime_ms: int = 60 * 60 * 1000  # YAML key: turn_user_lifetime
    turn_allow_guests: bool = True

    # --- request and media limits ---
    max_upload_size: int = 50 * 1024 * 1024  # bytes
    # uzel key: cap on every request body that is not a media upload (JSON bodies, federation
    # transactions). Synapse uses 200 KiB for listeners without media; uzel allows 1 MiB.
    max_request_body_size: int = 1024 * 1024
    enable_media_repo: bool = True
    enable_authenticated_media: bool = True
    url_preview_enabled: bool = False
    # URL previews (homeserver/media/preview.py), Synapse's keys. The IP deny list is REQUIRED
    # when previews are on (the loader refuses a config without it); 0.0.0.0 and :: always added.
    url_preview_ip_range_blacklist: tuple[IPNetwork, ...] = ()
    url_preview_ip_range_whitelist: tuple[IPNetwork, ...] = ()
    # Synapse's url_preview_url_blacklist: each entry maps URL parts (scheme, netloc, hostname,
    # port, path, query, fragment, username, password) to a glob, or a regex when it starts with
    # "^"; a URL matching every part of one entry is refused.
    url_preview_url_blacklist: tuple[dict, ...] = ()
    max_spider_size: int = 10 * 1024 * 1024  # largest page or image fetched for a preview
    # media_retention (Synapse's section): delete local media not accessed for this long /
    # cached remote media not accessed for this long; None: keep forever. Applied hourly.
    local_media_lifetime_ms: int | None = None  # YAML: media_retention.local_media_lifetime
    remote_media_lifetime_ms: int | None = None  # YAML: media_retention.remote_media_lifetime
    # Decoded images (thumbnails) may have at most this many pixels (all frames counted).
    max_image_pixels: int = 32 * 1024 * 1024
    # Media ids a user may hold created (POST /media/v1/create) but not yet uploaded.
    max_pending_media_uploads: int = 5
    # How long a created media id waits for its upload, in ms (attribute named like the YAML key,
    # as homeserver/media/repository.py reads it).
    unused_expiration_time: int = 24 * 3600 * 1000
    # Per-user upload quotas; empty: none besides max_upload_size.
    media_upload_limits: tuple[MediaUploadLimit, ...] = ()
    # Render thumbnails at the size asked for when no pre-generated standard size serves it.
    # false: always answer with a pre-generated size (Synapse's default). uzel defaults to true.
    dynamic_thumbnails: bool = True

    # --- rate limiting ---
    ratelimiting: RatelimitingConfig = RatelimitingConfig()

    # --- federation and outbound connections ---
    federation_verify_certificates: bool = True
    federation_domain_whitelist: frozenset[str] | None = None  # None: federate with everyone
    ip_range_blacklist: tuple[IPNetwork, ...] = ()
    ip_range_whitelist: tuple[IPNetwork, ...] = ()
    # uzel-only test switch: server names ("host:port" or IP literals) the federation client
    # contacts over plain HTTP at that host and port (no .well-known, SRV or TLS). For test
    # federations on loopback; never in production. See federation/client.py.
    federation_client_plain_http_destinations: frozenset[str] = frozenset()

    # --- application services ---
    app_service_config_files: tuple[str, ...] = ()

    # --- logging ---
    log_level: str = "INFO"  # DEBUG | INFO | WARNING | ERROR | CRITICAL
    log_format: Literal["text", "json"] = "text"
    log_file: str | None = None  # None: stderr

    # --- about the file itself ---
    config_path: str | None = None
    warnings: tuple[str, ...] = ()  # unknown/ignored keys found while loading

    def client_listener(self) -> ListenerConfig | None:
        """The first listener serving the client API, or None."""
        return next((lst for lst in self.listeners if "client" in lst.resources), None)

    def ip_allowed(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether uzel may connect out to ``address``: whitelisted, or not blacklisted.

        An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as its IPv4 address.
        """
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.ip_range_whitelist if net.version == ip.version):
            return True
        return not any(ip in net for net in self.ip_range_blacklist if net.version == ip.version)

    def url_preview_ip_allowed(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Like :meth:`ip_allowed`, for URL previews: url_preview_ip_range_whitelist, else not in
        url_preview_ip_range_blacklist."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.url_preview_ip_range_whitelist if net.version == ip.version):
            return True
        return not any(ip in net for net in self.url_preview_ip_range_blacklist if net.version == ip.version)
