"""The commented homeserver.yaml that ``uzel generate-config`` writes: every key uzel reads, each
with its meaning and default, set to the value this server will use.

Pure text generation: the caller supplies secrets and paths; writing files is the CLI's job.
tests/unit/test_config.py checks that the output loads back under ``strict`` and names every key
the loader reads, so this file cannot silently fall behind config/loader.py.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from homeserver.protocol.ids import parse_server_name

from .schema import DEFAULT_IP_RANGE_BLACKLIST


@dataclass
class GenerateOptions:
    server_name: str
    data_dir: str  # absolute; holds the signing key, database, media store, TLS files
    registration_shared_secret: str
    client_port: int = 8008
    federation_port: int = 8448
    bind_address: str = "127.0.0.1"
    # Synapse-style ``database`` section (see parse_database_url); None: sqlite in data_dir.
    database: dict[str, Any] | None = None
    self_signed_tls: bool = False
    public_baseurl: str | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def file_stem(server_name: str) -> str:
    """server_name made safe for file names ("example.org:8448" -> "example.org_8448")."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", server_name)


def signing_key_file(opts: GenerateOptions) -> str:
    return os.path.join(opts.data_dir, f"{file_stem(opts.server_name)}.signing.key")


def tls_certificate_file(opts: GenerateOptions) -> str:
    return os.path.join(opts.data_dir, f"{file_stem(opts.server_name)}.tls.crt")


def tls_private_key_file(opts: GenerateOptions) -> str:
    return os.path.join(opts.data_dir, f"{file_stem(opts.server_name)}.tls.key")


def parse_database_url(url: str, data_dir: str) -> dict[str, Any]:
    """A Synapse-style ``database`` section from a URL.

    * ``sqlite:///abs/path.db`` (absolute), ``sqlite:relative.db`` (relative to data_dir),
      ``sqlite:///:memory:``;
    * ``postgresql://user:password@host:port/dbname?sslmode=require`` (also ``postgres://``);
      query parameters become extra libpq keywords.

    Raises ValueError for other forms.
    """
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "sqlite3"):
        path = unquote(url.split(":", 1)[1])
        if path.startswith("//"):
            path = path[2:]
            if parts.netloc:
                raise ValueError("sqlite URL must be sqlite:///absolute/path or sqlite:relative/path")
        if path in ("/:memory:", ":memory:"):
            path = ":memory:"
        elif not path.startswith("/"):
            path = os.path.join(data_dir, path)
        else:
            path = "/" + path.lstrip("/")
        if not path or path.endswith("/"):
            raise ValueError("sqlite URL names no file")
        return {"name": "sqlite3", "args": {"database": path}}
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ValueError("postgresql URL must name a database: postgresql://user:pw@host:port/dbname")
        args: dict[str, Any] = {}
        if parts.username:
            args["user"] = unquote(parts.username)
        if parts.password:
            args["password"] = unquote(parts.password)
        args["database"] = dbname
        if parts.hostname:
            args["host"] = parts.hostname
        if parts.port:
            args["port"] = parts.port
        for k, v in parse_qsl(parts.query):
            args[k] = v
        args["cp_min"] = 5
        args["cp_max"] = 10
        return {"name": "psycopg2", "args": args}
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r} (use sqlite: or postgresql:)")


def _y(value: Any) -> str:
    """A YAML flow value (JSON is valid YAML for these scalars, lists and mappings)."""
    return json.dumps(value, ensure_ascii=False)


def _is_loopback_host(server_name: str) -> bool:
    host, _ = parse_server_name(server_name)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_public_baseurl(opts: GenerateOptions) -> str:
    """``http://<host>:<client_port>/`` for a loopback server name (local testing), otherwise
    ``https://<server_name>/`` (a reverse proxy in front of the client listener, Synapse's default)."""
    if _is_loopback_host(opts.server_name):
        host, _ = parse_server_name(opts.server_name)
        return f"http://{host}:{opts.client_port}/"
    return f"https://{opts.server_name}/"


def _listeners_yaml(opts: GenerateOptions) -> str:
    bind = _y([opts.bind_address])
    if opts.self_signed_tls:
        plain_names, tls_block = ["client", "media"], f"""
  # Federation over TLS with the self-signed certificate below. Other servers reach it through
  # SRV/.well-known delegation or server_name's host on port {opts.federation_port}; servers that verify
  # certificates (the default everywhere) will refuse a self-signed one, so this is for testing.
  - port: {opts.federation_port}
    bind_addresses: {bind}
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [federation, keys]
        compress: false
"""
    else:
        plain_names, tls_block = ["client", "federation", "keys", "media"], ""
    return f"""listeners:
  # Plain HTTP on loopback, meant to sit behind a reverse proxy that terminates TLS
  # (Synapse's recommended layout). x_forwarded: trust the proxy's X-Forwarded-For/-Proto.
  - port: {opts.client_port}
    bind_addresses: {bind}
    type: http
    tls: false
    x_forwarded: true
    resources:
      - names: {_y(plain_names)}
        compress: false
{tls_block}"""


def _database_yaml(opts: GenerateOptions) -> str:
    db = opts.database or {"name": "sqlite3", "args": {"database": os.path.join(opts.data_dir, "homeserver.db")}}
    lines = ["database:", f"  name: {_y(db['name'])}", "  args:"]
    lines += [f"    {k}: {_y(v)}" for k, v in db["args"].items()]
    return "\n".join(lines)


def generate_config_text(opts: GenerateOptions) -> str:
    """The complete commented homeserver.yaml for ``opts``."""
    parse_server_name(opts.server_name)  # ValueError early for a bad name
    public_baseurl = opts.public_baseurl or default_public_baseurl(opts)
    if opts.self_signed_tls:
        tls_cert, tls_key = tls_certificate_file(opts), tls_private_key_file(opts)
    else:
        tls_cert = tls_key = None
    blacklist = "\n".join(f"  - {_y(net)}" for net in DEFAULT_IP_RANGE_BLACKLIST)
    stamp = opts.generated_at.strftime("%Y-%m-%d %H:%M UTC")

    return f"""\
# uzel homeserver configuration, written by `uzel generate-config` on {stamp}.
#
# Key names and meanings follow Synapse's homeserver.yaml wherever Synapse has the concept, so
# most of a Synapse config carries over. Relative paths are resolved against the directory holding
# this file. A key set to null, or removed, takes its default. Unknown keys are reported at start-up
# (`uzel run --strict` refuses them). Sizes take K/M/G suffixes (1024-based); durations take
# ms/s/m/h/d/w/y suffixes (a bare number is milliseconds).

## Server ##

# The domain in every user ID and room alias here (@alice:<server_name>). It cannot change once
# users and rooms exist. May carry a port (example.org:8448).
server_name: {_y(opts.server_name)}

# The URL clients reach the client API at; published in /.well-known/matrix/client.
# Default (null): from the first listener serving "client": https://<host>[:port]/ if it has tls,
# https://<server_name>/ if it has x_forwarded (behind a proxy), else http://<host>[:port]/.
public_baseurl: {_y(public_baseurl)}

# Answer GET /.well-known/matrix/server with <server_name host>:<port of the first federation
# listener>, so other servers find this one without DNS SRV records. Default false.
serve_server_wellknown: false

# Extra keys merged into the /.well-known/matrix/client response, e.g.
#   extra_well_known_client_content: {{"org.example.support": "https://example.org/help"}}
# Default {{}}.
extra_well_known_client_content: {{}}

# uzel keys (Synapse has none): publish GET /.well-known/matrix/support (MSC1929), how to reach the
# server's administrators. support_contacts: entries of role (m.role.admin, m.role.security or a
# namespaced role) with matrix_id and/or email_address; support_page: an http(s) URL. While both
# are unset the endpoint answers 404. Example:
#   support_contacts:
#     - {{role: m.role.admin, matrix_id: "@admin:example.org", email_address: admin@example.org}}
#     - {{role: m.role.security, email_address: security@example.org}}
#   support_page: https://example.org/matrix-help
# Default [] and null.
support_contacts: []
support_page: null

## Listeners ##

# Each listener: port; bind_addresses (default ["::", "0.0.0.0"] when omitted); type (uzel serves
# only "http"; Synapse's metrics/manhole/replication listeners are skipped with a warning); tls
# (default false); x_forwarded (default false); resources: a list of {{names: [...]}} where names
# are among client (/_matrix/client, /_synapse/admin, /.well-known/matrix/client), federation
# (/_matrix/federation), keys (/_matrix/key), media (/_matrix/media), openid (only the OpenID
# userinfo endpoint of the federation API) and health (/health). A TLS listener may carry its own
# tls_certificate_path / tls_private_key_path; otherwise the top-level ones below apply.
# If "listeners" is removed: one plain listener on 127.0.0.1:8008 serving client, federation,
# keys and media.
{_listeners_yaml(opts)}
# PEM certificate (full chain) and private key for listeners with tls: true. Default null.
tls_certificate_path: {_y(tls_cert)}
tls_private_key_path: {_y(tls_key)}

## Database ##

# name: sqlite3 (args.database: file path, or ":memory:") or psycopg2 (PostgreSQL). For
# PostgreSQL, args are libpq connection keywords: user, password, database, host, port, and any
# other (sslmode, ...); or a single `dsn` string instead of them. cp_min/cp_max: connection pool
# size (default 5/10; sqlite always uses one connection). Example:
#   database:
#     name: psycopg2
#     args: {{user: uzel, password: secret, database: uzel, host: localhost, port: 5432, cp_min: 5, cp_max: 10}}
# Default: sqlite3 at homeserver.db next to this file.
{_database_yaml(opts)}

## Signing keys ##

# This server's ed25519 signing key: lines of "ed25519 <version> <unpadded base64 seed>".
# Default: <server_name>.signing.key next to this file.
signing_key_path: {_y(signing_key_file(opts))}

# Retired keys still published so other servers can verify old events. Example:
#   old_signing_keys:
#     "ed25519:a_OldKey": {{key: "<unpadded base64 verify key>", expired_ts: 1700000000000}}
# Default {{}}.
old_signing_keys: {{}}

# How long other servers may cache this server's keys (the valid_until_ts published with them).
# Default 1d.
key_refresh_interval: 1d

# Notary servers used to fetch other servers' keys when direct fetching fails. Synapse defaults to
# matrix.org; uzel defaults to none (every key is fetched from its own server). Example:
#   trusted_key_servers:
#     - server_name: matrix.org
#       verify_keys: {{"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"}}
#       accept_keys_insecurely: false
trusted_key_servers: []

## Registration ##

# Let anyone create an account through /register. Default false. Refused at start-up unless
# registration_requires_token or enable_registration_without_verification is also true.
enable_registration: false

# Allow open registration with no verification step (uzel has no email/captcha verification).
# Default false.
enable_registration_without_verification: false

# Require a registration token (created through the admin API) to register. Default false.
registration_requires_token: false

# Secret for /_synapse/admin/v1/register, used by `uzel register-user`. Keep it private.
# Default null (endpoint disabled). Alternatively name a file holding it (not both):
#   registration_shared_secret_path: /etc/uzel/registration_secret
registration_shared_secret: {_y(opts.registration_shared_secret)}

# Allow guest accounts (kind=guest). Default false.
allow_guest_access: false

## Passwords and access tokens ##

# bcrypt cost factor for password hashes: each step doubles the work of hashing (and of guessing).
# 4-31. Changing it affects only passwords set afterwards. Default 12.
bcrypt_rounds: 12

# Lifetime of access tokens issued together with a refresh token (clients that send
# "refresh_token": true at login or registration); the client then refreshes them. Access tokens
# without a refresh token do not expire. Default 5m.
refreshable_access_token_lifetime: 5m

# Let signed-in users create single-use login tokens (POST /_matrix/client/v1/login/get_token) to
# sign in another device with m.login.token (Synapse's section). enabled: default false (the
# endpoint answers 404 M_UNRECOGNIZED); require_ui_auth: ask for the account password on every
# request, default true; token_timeout: how long a token stays usable, default 5m.
login_via_existing_session: {{enabled: false, require_ui_auth: true, token_timeout: 5m}}

## Rooms ##

# Room version for new rooms when the client does not ask for one. Default "12".
default_room_version: "12"

# Let unauthenticated clients read the public room directory. Default false.
allow_public_rooms_without_auth: false

# Let other servers read this server's public room directory. Default false.
allow_public_rooms_over_federation: false

# Require an access token for profile lookups. Default false.
require_auth_for_profile_requests: false

# Presence (online/offline status). Default enabled.
presence:
  enabled: true

## VoIP ##

# TURN server URIs handed to clients by /voip/turnServer, e.g.
# ["turn:turn.example.org:3478?transport=udp"]. Empty: no TURN. Default [].
turn_uris: []

# The TURN server's shared secret (coturn: use-auth-secret, static-auth-secret): clients get
# time-limited credentials. Default null.
turn_shared_secret: null

# Static TURN credentials, used only without turn_shared_secret. Default null.
turn_username: null
turn_password: null

# How long TURN credentials stay valid. Default 1h.
turn_user_lifetime: 1h

# Give TURN credentials to guest users too. Default true.
turn_allow_guests: true

## Media and request limits ##

# Serve and store media (the media resource, /_matrix/client/v1/media). Default true.
enable_media_repo: true

# Where uploaded and cached remote media are stored. Default: media_store next to this file.
media_store_path: {_y(os.path.join(opts.data_dir, "media_store"))}

# Largest media upload accepted. Default 50M.
max_upload_size: 50M

# uzel: largest request body accepted anywhere except media uploads (JSON bodies, federation
# transactions). Synapse uses 200K on listeners without media; uzel default 1M.
max_request_body_size: 1M

# Require authentication for media downloads (MSC3916, /_matrix/client/v1/media); when false the
# legacy unauthenticated /_matrix/media/v3 download endpoints are also served. Default true.
enable_authenticated_media: true

# Images with more pixels than this (width x height, times the frames of an animation) are not
# decoded, so they get no thumbnails (413 M_TOO_LARGE). Guards against decompression bombs.
# Default 32M (33554432 pixels).
max_image_pixels: 32M

# Media ids a user may hold from POST /_matrix/media/v1/create without having uploaded to them
# yet; more are refused with 429 M_LIMIT_EXCEEDED. Default 5.
max_pending_media_uploads: 5

# How long an id from POST /_matrix/media/v1/create waits for its upload before it is forgotten.
# Default 24h.
unused_expiration_time: 24h

# Per-user upload quotas: a user may upload at most max_size within any time_period; beyond it
# uploads are refused with 403 M_FORBIDDEN until older uploads leave the window. Every entry
# applies. Example:
#   media_upload_limits:
#     - time_period: 1h
#       max_size: 100M
#     - time_period: 1w
#       max_size: 500M
# Default [] (only max_upload_size applies).
media_upload_limits: []

# When a thumbnail is asked for at a size none of the pre-generated ones (32x32 crop, 96x96 crop,
# 320x240, 640x480, 800x600 scale) serves, render one at that size (true), or answer with the
# nearest pre-generated one (false, Synapse's default). Default true.
dynamic_thumbnails: true

# Generate URL previews (GET /_matrix/client/v1/media/preview_url). Default false. Turning it
# on REQUIRES url_preview_ip_range_blacklist: the address ranges previews must never fetch from
# (so a user cannot make the server reach internal services); the ip_range_blacklist defaults
# above are a good start. 0.0.0.0 and :: are always refused. Example:
#   url_preview_enabled: true
#   url_preview_ip_range_blacklist: ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12",
#     "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "::1/128", "fe80::/10", "fc00::/7"]
url_preview_enabled: false

# Exceptions to url_preview_ip_range_blacklist. Default [].
# url_preview_ip_range_whitelist: []

# URLs never previewed: each entry maps URL parts (scheme, netloc, hostname, port, path, query,
# fragment, username, password) to a glob, or to a regex if it starts with ^; a URL matching all
# parts of one entry is refused. Example:
#   url_preview_url_blacklist:
#     - netloc: "*.internal.example"
#     - scheme: http
# Default [].
# url_preview_url_blacklist: []

# Largest page or image fetched for a preview. Default 10M.
max_spider_size: 10M

# Delete media not accessed for this long (checked hourly). Local media used as a profile
# picture is kept. Default: keep forever (both null).
#   media_retention:
#     local_media_lifetime: 90d
#     remote_media_lifetime: 14d
# media_retention: null

## Rate limiting ##

# uzel: master switch. false turns every rc_* limit below off (tests, benchmarks). Default true.
enable_ratelimiting: true

# Each limit is a token bucket: per_second actions sustained, bursts of up to burst_count.
# Defaults are Synapse's.
rc_message: {{per_second: 0.2, burst_count: 10}}
rc_registration: {{per_second: 0.17, burst_count: 3}}
rc_registration_token_validity: {{per_second: 0.1, burst_count: 5}}
rc_login:
  address: {{per_second: 0.003, burst_count: 5}}  # login attempts per client IP
  account: {{per_second: 0.003, burst_count: 5}}  # login attempts per account
  failed_attempts: {{per_second: 0.17, burst_count: 3}}  # failed logins per account
rc_joins:
  local: {{per_second: 0.1, burst_count: 10}}  # joins to rooms this server is already in
  remote: {{per_second: 0.01, burst_count: 10}}  # joins over federation
rc_joins_per_room: {{per_second: 1, burst_count: 10}}  # local joins into one room
rc_invites:
  per_room: {{per_second: 0.3, burst_count: 10}}
  per_user: {{per_second: 0.003, burst_count: 5}}  # invites received by one user
  per_issuer: {{per_second: 0.3, burst_count: 10}}  # invites sent by one user
# Limit for redactions by server admins; null: the same as rc_message. Default null.
rc_admin_redaction: null
rc_3pid_validation: {{per_second: 0.003, burst_count: 5}}
rc_media_create: {{per_second: 10, burst_count: 200}}
rc_key_requests: {{per_second: 20, burst_count: 100}}  # end-to-end key queries sent to other servers
# Inbound federation requests per origin server: within window_size ms, requests beyond
# sleep_limit are delayed sleep_delay ms each, beyond reject_limit refused; at most `concurrent`
# processed at once.
rc_federation:
  window_size: 1000
  sleep_limit: 10
  sleep_delay: 500
  reject_limit: 50
  concurrent: 3

## Federation and outbound connections ##

# Verify other servers' TLS certificates. Default true; turn off only for test networks of
# self-signed servers.
federation_verify_certificates: true

# Federate only with these server names; null: with everyone. Default null.
federation_domain_whitelist: null

# Addresses uzel never connects to for federation, remote media or URL previews, unless listed
# in ip_range_whitelist. Default: loopback, private, link-local, CGNAT, multicast, documentation
# and reserved ranges, IPv4 and IPv6 (below). 0.0.0.0 and :: are always refused.
# Local test federations between servers on 127.0.0.1 need ip_range_whitelist: ["127.0.0.1/32"].
ip_range_blacklist:
{blacklist}

# Exceptions to ip_range_blacklist. Default [].
ip_range_whitelist: []

# uzel-only TEST switch: server names ("host:port") contacted over plain HTTP at that address,
# without .well-known, SRV or TLS, for test federations on loopback. Never use in production.
# Default [].
federation_client_plain_http_destinations: []

## Application services ##

# Registration files of application services (bridges, bots). Default [].
app_service_config_files: []

## Logging ##

# DEBUG, INFO, WARNING, ERROR or CRITICAL. Default INFO.
log_level: INFO

# text or json (one JSON object per line). Default text.
log_format: text

# Log file; null: standard error. Default null.
log_file: null
"""
