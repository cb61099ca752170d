"""Loading homeserver.yaml: defaults, Synapse compatibility, validation errors, the sample config."""
from __future__ import annotations

import dataclasses
import ipaddress
import textwrap
from datetime import datetime, timezone

import pytest
import yaml

from config.loader import (
    SYNAPSE_KEYS_WITHOUT_EFFECT,
    known_top_level_keys,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from config.sample_config import GenerateOptions, generate_config_text, parse_database_url
from config.schema import (
    Config,
    ConfigError,
    DatabaseConfig,
    MediaUploadLimit,
    RatelimitingConfig,
    RatelimitSettings,
)


def parse(data: dict, tmp_path, **kw) -> Config:
    return parse_config({"server_name": "example.org", **data}, config_dir=str(tmp_path), **kw)


def write(tmp_path, text: str):
    path = tmp_path / "homeserver.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- defaults -----------------------------------------------------------------------------

def test_minimal_config_takes_documented_defaults(tmp_path):
    c = parse({}, tmp_path)
    assert c.server_name == "example.org"
    assert c.enable_registration is False
    assert c.allow_guest_access is False
    assert c.default_room_version == "12"
    assert c.max_upload_size == 50 * 1024 * 1024
    assert c.max_request_body_size == 1024 * 1024
    assert c.federation_verify_certificates is True
    assert c.federation_domain_whitelist is None
    assert c.trusted_key_servers == ()
    assert c.url_preview_enabled is False
    assert c.enable_authenticated_media is True
    assert c.serve_server_wellknown is False
    assert c.key_refresh_interval_ms == 86_400_000
    assert c.ratelimiting == RatelimitingConfig()
    assert c.ratelimiting.enabled is True
    assert c.log_level == "INFO" and c.log_format == "text" and c.log_file is None
    assert c.warnings == ()


def test_accounts_and_media_keys_take_synapse_defaults(tmp_path):
    c = parse({}, tmp_path)
    assert c.bcrypt_rounds == 12
    assert c.refreshable_access_token_lifetime_ms == 5 * 60_000
    assert c.max_image_pixels == 32 * 1024 * 1024
    assert c.max_pending_media_uploads == 5
    assert c.unused_expiration_time == 86_400_000
    assert c.media_upload_limits == ()
    assert c.dynamic_thumbnails is True  # uzel's default; Synapse's is false


def test_accounts_and_media_keys_parse_synapse_forms(tmp_path):
    c = parse({"bcrypt_rounds": 4, "refreshable_access_token_lifetime": "10m", "max_image_pixels": "8M",
               "max_pending_media_uploads": 2, "unused_expiration_time": "1h", "dynamic_thumbnails": False,
               "media_upload_limits": [{"time_period": "1h", "max_size": "100M"},
                                       {"time_period": "1w", "max_size": 524288000}]}, tmp_path, strict=True)
    assert c.bcrypt_rounds == 4
    assert c.refreshable_access_token_lifetime_ms == 600_000
    assert c.max_image_pixels == 8 * 1024 * 1024
    assert c.max_pending_media_uploads == 2
    assert c.unused_expiration_time == 3_600_000
    assert c.dynamic_thumbnails is False
    assert c.media_upload_limits == (MediaUploadLimit(3_600_000, 100 * 1024 * 1024),
                                     MediaUploadLimit(7 * 86_400_000, 500 * 1024 * 1024))
    assert c.warnings == ()


@pytest.mark.parametrize("rounds", [4, 31])
def test_bcrypt_rounds_accepts_the_bcrypt_range_bounds(tmp_path, rounds):
    assert parse({"bcrypt_rounds": rounds}, tmp_path).bcrypt_rounds == rounds


def test_unknown_key_inside_a_media_upload_limit_is_reported_with_its_path(tmp_path):
    data = {"media_upload_limits": [{"time_period": "1h", "max_size": "1M", "max_files": 3}]}
    assert "media_upload_limits[0].max_files: unknown key, ignored" in parse(data, tmp_path).warnings
    with pytest.raises(ConfigError, match=r"media_upload_limits\[0\]\.max_files"):
        parse(data, tmp_path, strict=True)


def test_max_image_pixels_is_read_not_ignored(tmp_path):
    assert "max_image_pixels" not in SYNAPSE_KEYS_WITHOUT_EFFECT
    assert "dynamic_thumbnails" not in SYNAPSE_KEYS_WITHOUT_EFFECT
    c = parse({"max_image_pixels": 1000}, tmp_path, strict=True)
    assert c.max_image_pixels == 1000 and c.warnings == ()


def test_minimal_config_puts_files_next_to_the_config(tmp_path):
    c = parse({}, tmp_path)
    assert c.signing_key_path == str(tmp_path / "example.org.signing.key")
    assert c.media_store_path == str(tmp_path / "media_store")
    assert c.database == DatabaseConfig(engine="sqlite", path=str(tmp_path / "homeserver.db"), pool_min=1, pool_max=1)


def test_absent_listeners_mean_one_loopback_listener_on_8008(tmp_path):
    (listener,) = parse({}, tmp_path).listeners
    assert listener.port == 8008
    assert listener.bind_addresses == ("127.0.0.1",)
    assert listener.resources == {"client", "federation", "keys", "media"}
    assert listener.tls is False


def test_listener_without_bind_addresses_uses_synapse_default(tmp_path):
    c = parse({"listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}]}, tmp_path)
    assert c.listeners[0].bind_addresses == ("::", "0.0.0.0")


def test_default_blacklist_covers_private_and_loopback_v4_and_v6(tmp_path):
    c = parse({}, tmp_path)
    for blocked in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "172.20.0.1", "169.254.1.1", "0.0.0.0",
                    "::1", "fe80::1", "fd00::1", "::", "::ffff:127.0.0.1", "224.0.0.1"):
        assert not c.ip_allowed(blocked), blocked
    for allowed in ("1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"):
        assert c.ip_allowed(allowed), allowed


def test_whitelist_overrides_blacklist(tmp_path):
    c = parse({"ip_range_whitelist": ["127.0.0.1/32"]}, tmp_path)
    assert c.ip_allowed("127.0.0.1")
    assert not c.ip_allowed("127.0.0.2")


def test_empty_blacklist_still_refuses_unspecified_addresses(tmp_path):
    c = parse({"ip_range_blacklist": []}, tmp_path)
    assert c.ip_allowed("10.0.0.1")
    assert not c.ip_allowed("0.0.0.0")
    assert not c.ip_allowed("::")


# --- public_baseurl -----------------------------------------------------------------------

def _one_listener(**kw):
    return {"listeners": [{"port": kw.pop("port", 8008), "resources": [{"names": ["client"]}], **kw}]}


@pytest.mark.parametrize("data, expected", [
    ({"public_baseurl": "https://matrix.example.org"}, "https://matrix.example.org/"),
    (_one_listener(), "http://example.org:8008/"),
    (_one_listener(port=80), "http://example.org/"),
    (_one_listener(x_forwarded=True), "https://example.org/"),
    ({**_one_listener(port=443, tls=True), "tls_certificate_path": "c", "tls_private_key_path": "k"},
     "https://example.org/"),
    ({**_one_listener(port=8443, tls=True), "tls_certificate_path": "c", "tls_private_key_path": "k"},
     "https://example.org:8443/"),
    ({"listeners": [{"port": 8448, "resources": [{"names": ["federation"]}]}]}, "https://example.org/"),
])
def test_public_baseurl_explicit_or_derived_from_client_listener(tmp_path, data, expected):
    assert parse(data, tmp_path).public_baseurl == expected


def test_public_baseurl_derivation_drops_server_name_port(tmp_path):
    c = parse_config({"server_name": "localhost:8480", **_one_listener(port=8008)}, config_dir=str(tmp_path))
    assert c.public_baseurl == "http://localhost:8008/"


# --- a Synapse homeserver.yaml --------------------------------------------------------------

SYNAPSE_YAML = """\
server_name: "matrix.example.com"
pid_file: /data/homeserver.pid
report_stats: false
macaroon_secret_key: "abc"
form_secret: "def"
log_config: "/data/matrix.example.com.log.config"
public_baseurl: https://matrix.example.com/
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    bind_addresses: ['::1', '127.0.0.1']
    resources:
      - names: [client, federation]
        compress: false
  - port: 9000
    type: metrics
    bind_addresses: ['127.0.0.1']
database:
  name: psycopg2
  txn_limit: 10000
  args:
    user: synapse_user
    password: "p@ss word"
    database: synapse
    host: localhost
    port: 5432
    cp_min: 5
    cp_max: 10
    sslmode: require
media_store_path: /data/media_store
signing_key_path: "/data/matrix.example.com.signing.key"
registration_shared_secret: "s3cret"
trusted_key_servers:
  - server_name: "matrix.org"
suppress_key_server_warning: true
max_upload_size: 100M
rc_message:
  per_second: 0.5
  burst_count: 20
rc_login:
  address:
    per_second: 1
    burst_count: 3
rc_joins:
  remote:
    per_second: 0.03
    burst_count: 12
old_signing_keys:
  "ed25519:id": { key: "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw", expired_ts: 123456789123 }
key_refresh_interval: 2d
federation_domain_whitelist: [matrix.org, example.com]
"""


def test_synapse_homeserver_yaml_loads_with_its_meanings(tmp_path):
    c = load_config(write(tmp_path, SYNAPSE_YAML))
    assert c.server_name == "matrix.example.com"
    (listener,) = c.listeners  # the metrics listener is skipped
    assert listener.bind_addresses == ("::1", "127.0.0.1")
    assert listener.resources == {"client", "federation"}
    assert listener.x_forwarded is True
    assert c.database.engine == "postgres"
    assert c.database.dsn == ("user=synapse_user password='p@ss word' dbname=synapse host=localhost "
                              "port=5432 sslmode=require")
    assert (c.database.pool_min, c.database.pool_max) == (5, 10)
    assert c.media_store_path == "/data/media_store"
    assert c.registration_shared_secret == "s3cret"
    assert c.trusted_key_servers[0].server_name == "matrix.org"
    assert c.max_upload_size == 100 * 1024 * 1024
    assert c.ratelimiting.rc_message == RatelimitSettings(0.5, 20)
    assert c.ratelimiting.rc_login.address == RatelimitSettings(1, 3)
    assert c.ratelimiting.rc_login.account == RatelimitingConfig().rc_login.account
    assert c.ratelimiting.rc_joins.remote == RatelimitSettings(0.03, 12)
    assert c.old_signing_keys["ed25519:id"].expired_ts == 123456789123
    assert c.key_refresh_interval_ms == 2 * 86_400_000
    assert c.federation_domain_whitelist == {"matrix.org", "example.com"}


def test_synapse_keys_without_effect_warn_but_pass_strict(tmp_path):
    c = load_config(write(tmp_path, SYNAPSE_YAML), strict=True)
    text = "\n".join(c.warnings)
    for key in ("pid_file", "report_stats", "macaroon_secret_key", "log_config", "suppress_key_server_warning"):
        assert f"{key}: Synapse option has no effect" in text
    assert "listeners[1].type" in text and "metrics" in text


def test_postgres_dsn_string_is_passed_through(tmp_path):
    c = parse({"database": {"name": "psycopg2", "args": {"dsn": "postgresql://u@h/db", "cp_max": 3, "cp_min": 1}}},
              tmp_path)
    assert c.database == DatabaseConfig(engine="postgres", dsn="postgresql://u@h/db", pool_min=1, pool_max=3)


def test_sqlite_memory_database_is_kept_as_is(tmp_path):
    c = parse({"database": {"name": "sqlite3", "args": {"database": ":memory:"}}}, tmp_path)
    assert c.database.path == ":memory:"


def test_tls_paths_resolve_relative_to_config_dir_and_listener_overrides(tmp_path):
    c = parse({"tls_certificate_path": "top.crt", "tls_private_key_path": "top.key",
               "listeners": [
                   {"port": 8448, "tls": True, "resources": [{"names": ["federation"]}]},
                   {"port": 8449, "tls": True, "tls_certificate_path": "/own.crt",
                    "resources": [{"names": ["federation"]}]},
               ]}, tmp_path)
    assert c.listeners[0].tls_certificate_path == str(tmp_path / "top.crt")
    assert c.listeners[0].tls_private_key_path == str(tmp_path / "top.key")
    assert c.listeners[1].tls_certificate_path == "/own.crt"


def test_registration_shared_secret_read_from_path(tmp_path):
    (tmp_path / "secret").write_text("from-file\n")
    c = parse({"registration_shared_secret_path": "secret"}, tmp_path)
    assert c.registration_shared_secret == "from-file"


def test_enable_ratelimiting_false_disables_all(tmp_path):
    assert parse({"enable_ratelimiting": False}, tmp_path).ratelimiting.enabled is False


def test_open_registration_with_token_or_explicit_opt_in_loads(tmp_path):
    assert parse({"enable_registration": True, "registration_requires_token": True}, tmp_path).enable_registration
    assert parse({"enable_registration": True, "enable_registration_without_verification": True},
                 tmp_path).enable_registration


# --- validation errors name their key -------------------------------------------------------

LISTENER = {"port": 8008, "resources": [{"names": ["client"]}]}


@pytest.mark.parametrize("data, path", [
    ({"server_name": None}, "server_name"),
    ({"server_name": "bad name!"}, "server_name"),
    ({"listeners": [{**LISTENER, "port": 70000}]}, "listeners[0].port"),
    ({"listeners": [{**LISTENER, "port": "8008"}]}, "listeners[0].port"),
    ({"listeners": [{"resources": [{"names": ["client"]}]}]}, "listeners[0].port"),
    ({"listeners": [LISTENER, {**LISTENER, "port": True}]}, "listeners[1].port"),
    ({"listeners": [{**LISTENER, "tls": "yes"}]}, "listeners[0].tls"),
    ({"listeners": [{**LISTENER, "tls": True}]}, "listeners[0].tls"),
    ({"listeners": [{**LISTENER, "type": "websocket"}]}, "listeners[0].type"),
    ({"listeners": [{**LISTENER, "bind_addresses": ["localhost"]}]}, "listeners[0].bind_addresses[0]"),
    ({"listeners": [{"port": 1, "resources": [{"names": ["client", "bogus"]}]}]},
     "listeners[0].resources[0].names[1]"),
    ({"listeners": [{"port": 1}]}, "listeners[0].resources"),
    ({"listeners": [LISTENER, {**LISTENER, "bind_addresses": ["::", "0.0.0.0"]}]}, "listeners[1].port"),
    ({"listeners": []}, "listeners"),
    ({"public_baseurl": "ftp://x/"}, "public_baseurl"),
    ({"database": {"name": "mysql"}}, "database.name"),
    ({"database": {"name": "psycopg2", "args": {"cp_min": 0}}}, "database.args.cp_min"),
    ({"database": {"name": "psycopg2", "args": {"cp_min": 5, "cp_max": 2}}}, "database.args.cp_max"),
    ({"database": {"name": "psycopg2", "args": {"dsn": "x", "host": "h"}}}, "database.args.host"),
    ({"database": "sqlite"}, "database"),
    ({"max_upload_size": "lots"}, "max_upload_size"),
    ({"max_request_body_size": -1}, "max_request_body_size"),
    ({"key_refresh_interval": "1 fortnight"}, "key_refresh_interval"),
    ({"default_room_version": "13"}, "default_room_version"),
    ({"enable_registration": True}, "enable_registration"),
    ({"enable_registration": "false"}, "enable_registration"),
    ({"rc_message": {"per_second": -1}}, "rc_message.per_second"),
    ({"rc_login": {"failed_attempts": {"burst_count": 1.5}}}, "rc_login.failed_attempts.burst_count"),
    ({"rc_joins": {"local": 5}}, "rc_joins.local"),
    ({"rc_federation": {"concurrent": "3"}}, "rc_federation.concurrent"),
    ({"ip_range_blacklist": ["10.0.0.0/8", "not-an-ip"]}, "ip_range_blacklist[1]"),
    ({"ip_range_whitelist": "127.0.0.1"}, "ip_range_whitelist"),
    ({"federation_domain_whitelist": [1]}, "federation_domain_whitelist"),
    ({"trusted_key_servers": [{"server_name": "a b"}]}, "trusted_key_servers[0].server_name"),
    ({"old_signing_keys": {"ed25519:x": {"key": "short", "expired_ts": 1}}}, "old_signing_keys.ed25519:x.key"),
    ({"old_signing_keys": {"rsa:x": {"key": "x", "expired_ts": 1}}}, "old_signing_keys.rsa:x"),
    ({"log_level": "LOUD"}, "log_level"),
    ({"log_format": "xml"}, "log_format"),
    ({"extra_well_known_client_content": ["x"]}, "extra_well_known_client_content"),
    ({"registration_shared_secret": "a", "registration_shared_secret_path": "b"},
     "registration_shared_secret_path"),
    ({"registration_shared_secret_path": "missing"}, "registration_shared_secret_path"),
    ({"presence": {"enabled": 1}}, "presence.enabled"),
    ({"bcrypt_rounds": 3}, "bcrypt_rounds"),
    ({"bcrypt_rounds": 32}, "bcrypt_rounds"),
    ({"bcrypt_rounds": "12"}, "bcrypt_rounds"),
    ({"bcrypt_rounds": 12.5}, "bcrypt_rounds"),
    ({"refreshable_access_token_lifetime": "soon"}, "refreshable_access_token_lifetime"),
    ({"refreshable_access_token_lifetime": 0}, "refreshable_access_token_lifetime"),
    ({"max_image_pixels": "many"}, "max_image_pixels"),
    ({"max_image_pixels": 0}, "max_image_pixels"),
    ({"max_pending_media_uploads": 0}, "max_pending_media_uploads"),
    ({"max_pending_media_uploads": "5"}, "max_pending_media_uploads"),
    ({"unused_expiration_time": "1 day"}, "unused_expiration_time"),
    ({"unused_expiration_time": "0s"}, "unused_expiration_time"),
    ({"dynamic_thumbnails": "yes"}, "dynamic_thumbnails"),
    ({"media_upload_limits": {"time_period": "1h", "max_size": "1M"}}, "media_upload_limits"),
    ({"media_upload_limits": ["1h"]}, "media_upload_limits[0]"),
    ({"media_upload_limits": [{"max_size": "1M"}]}, "media_upload_limits[0].time_period"),
    ({"media_upload_limits": [{"time_period": "1h"}]}, "media_upload_limits[0].max_size"),
    ({"media_upload_limits": [{"time_period": "1h", "max_size": "1M"}, {"time_period": "1x", "max_size": "1M"}]},
     "media_upload_limits[1].time_period"),
    ({"media_upload_limits": [{"time_period": "1h", "max_size": "big"}]}, "media_upload_limits[0].max_size"),
    ({"media_upload_limits": [{"time_period": "1h", "max_size": 0}]}, "media_upload_limits[0].max_size"),
])
def test_bad_value_raises_config_error_naming_its_key(tmp_path, data, path):
    with pytest.raises(ConfigError) as e:
        parse(data, tmp_path)
    assert e.value.path == path
    assert str(e.value).startswith(f"{path}: ")


def test_port_error_message_states_the_range(tmp_path):
    with pytest.raises(ConfigError, match=r"^listeners\[0\]\.port: must be an integer 1-65535"):
        parse({"listeners": [{**LISTENER, "port": 0}]}, tmp_path)


def test_unreadable_or_non_mapping_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "server_name: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


# --- unknown keys ---------------------------------------------------------------------------

def test_unknown_keys_warn_with_their_paths(tmp_path, caplog):
    c = parse({"enable_registraton": True,
               "listeners": [{**LISTENER, "tls_cert": "x"}],
               "rc_login": {"adress": {"per_second": 1}}}, tmp_path)
    assert "enable_registraton: unknown key, ignored" in c.warnings
    assert "listeners[0].tls_cert: unknown key, ignored" in c.warnings
    assert "rc_login.adress: unknown key, ignored" in c.warnings
    assert "enable_registraton" in caplog.text


def test_unknown_keys_fail_in_strict_mode(tmp_path):
    with pytest.raises(ConfigError) as e:
        parse({"enable_registraton": True, "database": {"name": "sqlite3", "argz": {}}}, tmp_path, strict=True)
    assert set(e.value.path.split(", ")) == {"enable_registraton", "database.argz"}


# --- sizes and durations --------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0, 0), (1234, 1234), ("1234", 1234), ("10K", 10240), ("50M", 52_428_800), ("1G", 1 << 30),
    ("2T", 2 << 40), ("512k", 524288), ("1.5M", 1_572_864), ("100MB", 100 << 20),
])
def test_sizes_parse_1024_based(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "M", "10X", "-5", -5, True, 1.5, None, "10 M B"])
def test_malformed_sizes_are_rejected(value):
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize("value, expected", [
    (500, 500), ("250ms", 250), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000),
    ("1w", 604_800_000), ("1y", 31_536_000_000), ("1500", 1500),
])
def test_durations_parse_to_milliseconds(value, expected):
    assert parse_duration(value) == expected


# --- the generated sample config --------------------------------------------------------------

def _opts(tmp_path, **kw) -> GenerateOptions:
    return GenerateOptions(server_name=kw.pop("server_name", "example.org"), data_dir=str(tmp_path / "data"),
                           registration_shared_secret="shh", generated_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
                           **kw)


@pytest.mark.parametrize("kw", [
    {},
    {"self_signed_tls": True, "federation_port": 8449},
    {"database": parse_database_url("postgresql://uzel:pw@db:5433/uzel?sslmode=disable", "/d")},
    {"server_name": "localhost:8480", "client_port": 18008},
])
def test_generated_config_loads_back_strictly_without_warnings(tmp_path, kw):
    text = generate_config_text(_opts(tmp_path, **kw))
    c = load_config(write(tmp_path, text), strict=True)
    assert c.warnings == ()
    assert c.registration_shared_secret == "shh"
    assert c.signing_key_path == str(tmp_path / "data" / f"{c.server_name.replace(':', '_')}.signing.key")


def test_generated_default_is_one_loopback_http_listener_serving_all_but_tls(tmp_path):
    c = load_config(write(tmp_path, generate_config_text(_opts(tmp_path))))
    (listener,) = c.listeners
    assert (listener.port, listener.bind_addresses, listener.tls) == (8008, ("127.0.0.1",), False)
    assert listener.resources == {"client", "federation", "keys", "media"}
    assert c.public_baseurl == "https://example.org/"
    assert c.database.path == str(tmp_path / "data" / "homeserver.db")


def test_generated_self_signed_config_adds_a_tls_federation_listener(tmp_path):
    c = load_config(write(tmp_path, generate_config_text(_opts(tmp_path, self_signed_tls=True))))
    plain, tls = c.listeners
    assert plain.resources == {"client", "media"}
    assert (tls.port, tls.tls, tls.resources) == (8448, True, {"federation", "keys"})
    assert tls.tls_certificate_path == str(tmp_path / "data" / "example.org.tls.crt")


def test_generated_config_for_loopback_name_uses_plain_http_baseurl(tmp_path):
    text = generate_config_text(_opts(tmp_path, server_name="localhost:8480", client_port=18008))
    assert load_config(write(tmp_path, text)).public_baseurl == "http://localhost:18008/"


def test_generated_config_documents_every_key_the_loader_reads(tmp_path):
    text = generate_config_text(_opts(tmp_path))
    active = set(yaml.safe_load(text))
    known = known_top_level_keys()
    assert active <= known
    for key in known:
        assert f"{key}:" in text, f"sample config does not mention {key}"


def test_generated_config_values_equal_the_schema_defaults(tmp_path):
    """Apart from the values generate-config chooses (listeners, paths, secret, base URL), the
    sample states exactly the defaults the loader applies when a key is absent."""
    sample = load_config(write(tmp_path, generate_config_text(_opts(tmp_path))))
    minimal = parse({}, tmp_path)
    chosen = ("public_baseurl", "listeners", "database", "signing_key_path", "media_store_path",
              "registration_shared_secret", "config_path", "warnings")
    assert dataclasses.replace(sample, **{k: getattr(minimal, k) for k in chosen}) == minimal


def test_synapse_keys_without_effect_are_not_loader_keys():
    assert not (SYNAPSE_KEYS_WITHOUT_EFFECT & known_top_level_keys())


# --- database URLs ------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("sqlite:///var/lib/uzel/hs.db", {"name": "sqlite3", "args": {"database": "/var/lib/uzel/hs.db"}}),
    ("sqlite:////var/lib/uzel/hs.db", {"name": "sqlite3", "args": {"database": "/var/lib/uzel/hs.db"}}),
    ("sqlite:hs.db", {"name": "sqlite3", "args": {"database": "/data/hs.db"}}),
    ("sqlite:///:memory:", {"name": "sqlite3", "args": {"database": ":memory:"}}),
    ("postgresql://alice:p%40ss@db.local:5433/uzel",
     {"name": "psycopg2", "args": {"user": "alice", "password": "p@ss", "database": "uzel", "host": "db.local",
                                   "port": 5433, "cp_min": 5, "cp_max": 10}}),
    ("postgres:///uzel?host=/run/postgresql",
     {"name": "psycopg2", "args": {"database": "uzel", "host": "/run/postgresql", "cp_min": 5, "cp_max": 10}}),
])
def test_database_url_becomes_synapse_database_section(url, expected):
    assert parse_database_url(url, "/data") == expected


@pytest.mark.parametrize("url", ["mysql://x/y", "postgresql://host/", "sqlite:///"])
def test_bad_database_urls_are_rejected(url):
    with pytest.raises(ValueError):
        parse_database_url(url, "/data")


def test_postgres_database_section_becomes_libpq_dsn(tmp_path):
    section = parse_database_url("postgresql://alice:p%40ss@db.local:5433/uzel", "/data")
    c = parse({"database": section}, tmp_path)
    assert c.database.dsn == "user=alice password=p@ss dbname=uzel host=db.local port=5433"


def test_ip_networks_are_parsed_objects(tmp_path):
    c = parse({"ip_range_blacklist": ["10.0.0.0/8"], "ip_range_whitelist": ["10.1.0.0/16"]}, tmp_path)
    assert ipaddress.ip_network("10.0.0.0/8") in c.ip_range_blacklist
    assert c.ip_range_whitelist == (ipaddress.ip_network("10.1.0.0/16"),)
