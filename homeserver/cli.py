"""The ``uzel`` command: generate-config, run, register-user, --version.

Console script entry point: ``uzel = homeserver.cli:main``.
"""
from __future__ import annotations

import argparse
import datetime
import getpass
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any, Sequence

from config.loader import load_config
from config.sample_config import (
    GenerateOptions,
    generate_config_text,
    parse_database_url,
    signing_key_file,
    tls_certificate_file,
    tls_private_key_file,
)
from config.schema import Config, ConfigError

REGISTER_PATH = "/_synapse/admin/v1/register"


def version() -> str:
    try:
        from importlib.metadata import version as _v
        return _v("uzel")
    except Exception:
        return "0.0.0+dev"


# --- generate-config ----------------------------------------------------------------------

def _write_signing_key(path: str) -> None:
    try:
        from homeserver.protocol.signing import generate_signing_key, write_signing_key
    except ImportError:  # signing helpers not present: use signedjson directly
        import signedjson.key

        key = signedjson.key.generate_signing_key("a_" + secrets.token_hex(2))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            signedjson.key.write_signing_keys(f, [key])
        return
    write_signing_key(path, generate_signing_key())


def write_self_signed_certificate(server_name: str, cert_path: str, key_path: str, *, days: int = 3650) -> None:
    """A self-signed certificate for server_name's host (an ECDSA P-256 key), PEM files, key mode
    0600. Uses the ``cryptography`` package, or the ``openssl`` command when it is missing."""
    from homeserver.protocol.ids import parse_server_name

    host, _ = parse_server_name(server_name)
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        _openssl_self_signed(host, ip, cert_path, key_path, days)
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    san = x509.IPAddress(ip) if ip is not None else x509.DNSName(host)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def _openssl_self_signed(host: str, ip: Any, cert_path: str, key_path: str, days: int) -> None:
    san = f"IP:{host}" if ip is not None else f"DNS:{host}"
    old_umask = os.umask(0o077)
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key_path, "-out", cert_path, "-days", str(days),
             "-subj", f"/CN={host}", "-addext", f"subjectAltName={san}"],
            check=True, capture_output=True)
    finally:
        os.umask(old_umask)
    os.chmod(cert_path, 0o644)


def cmd_generate_config(args: argparse.Namespace) -> int:
    config_path = os.path.abspath(args.config_path)
    if os.path.exists(config_path) and not args.force:
        _err(f"{config_path} already exists; pass --force to overwrite it")
        return 1
    data_dir = os.path.abspath(args.data_dir or os.path.dirname(config_path))
    database = None
    if args.database_url:
        try:
            database = parse_database_url(args.database_url, data_dir)
        except ValueError as e:
            _err(f"--database-url: {e}")
            return 2
    opts = GenerateOptions(
        server_name=args.server_name,
        data_dir=data_dir,
        registration_shared_secret=secrets.token_urlsafe(32),
        client_port=args.client_port,
        federation_port=args.federation_port,
        bind_address=args.bind_address,
        database=database,
        self_signed_tls=args.self_signed_tls,
        public_baseurl=args.public_baseurl,
    )
    try:
        text = generate_config_text(opts)
    except ValueError as e:
        _err(f"--server-name: {e}")
        return 2
    os.makedirs(os.path.dirname(config_path), exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)

    key_path = signing_key_file(opts)
    if os.path.exists(key_path) and not args.force:
        print(f"keeping existing signing key {key_path}")
    else:
        _write_signing_key(key_path)
        print(f"wrote signing key {key_path}")
    if args.self_signed_tls:
        write_self_signed_certificate(args.server_name, tls_certificate_file(opts), tls_private_key_file(opts))
        print(f"wrote self-signed certificate {tls_certificate_file(opts)}")
    # The config holds the registration secret: not readable by others.
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote config {config_path}")
    return 0


# --- run ----------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config, strict=args.strict)
    if config is None:
        return 1
    if config.app_service_config_files:  # checked before anything starts, like the config itself
        from appservices.registration import load_registrations
        try:
            load_registrations(config.app_service_config_files, config.server_name)
        except ConfigError as e:
            _err(f"config error in {args.config}: {e}")
            return 1
    from homeserver import app  # lazily: importing Twisted is not needed for the other commands

    app.run(config)
    return 0


# --- register-user ------------------------------------------------------------------------

def registration_mac(shared_secret: str, nonce: str, username: str, password: str, admin: bool,
                     user_type: str | None = None) -> str:
    """The ``mac`` for ``POST /_synapse/admin/v1/register``: hex HMAC-SHA1 keyed by the shared
    secret over ``nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type]``
    (Synapse's shared-secret registration admin API)."""
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type is not None:
        parts.append(user_type)
    mac.update(b"\x00".join(p.encode("utf-8") for p in parts))
    return mac.hexdigest()


class RegistrationError(Exception):
    def __init__(self, message: str, errcode: str | None = None):
        super().__init__(f"{errcode}: {message}" if errcode else message)
        self.errcode = errcode


def register_user(base_url: str, shared_secret: str, username: str, password: str, admin: bool,
                  *, ssl_context: ssl.SSLContext | None = None, timeout: float = 30) -> dict:
    """Create a user through the shared-secret endpoint; returns the server's JSON response
    (user_id, access_token, device_id, home_server). Raises RegistrationError."""
    url = base_url.rstrip("/") + REGISTER_PATH
    nonce = _request_json(urllib.request.Request(url), ssl_context, timeout).get("nonce")
    if not isinstance(nonce, str):
        raise RegistrationError(f"GET {url} returned no nonce")
    body = {
        "nonce": nonce,
        "username": username,
        "password": password,
        "admin": admin,
        "mac": registration_mac(shared_secret, nonce, username, password, admin),
    }
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    return _request_json(request, ssl_context, timeout)


def _request_json(request: urllib.request.Request, ssl_context, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ssl_context) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            err = json.loads(raw)
        except ValueError:
            err = {}
        if isinstance(err, dict) and "errcode" in err:
            raise RegistrationError(str(err.get("error", "")), str(err["errcode"])) from None
        raise RegistrationError(f"HTTP {e.code} from {request.full_url}: {raw[:200]!r}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise RegistrationError(f"cannot reach {request.full_url}: {reason}") from None
    try:
        result = json.loads(payload)
    except ValueError:
        raise RegistrationError(f"{request.full_url} did not return JSON") from None
    if not isinstance(result, dict):
        raise RegistrationError(f"{request.full_url} did not return a JSON object")
    return result


def client_url_from_config(config: Config) -> tuple[str, ssl.SSLContext | None]:
    """The local URL of the first client listener, and the TLS context to reach it.

    A wildcard bind address is reached through loopback. For a TLS listener the configured
    certificate itself is trusted and its host name not checked: the connection goes to
    this machine's own listener, whose certificate names server_name, not the loopback address.
    """
    listener = config.client_listener()
    if listener is None:
        raise ConfigError("listeners", "no listener serves the client resource; use --url")
    addr = listener.bind_addresses[0] if listener.bind_addresses else "127.0.0.1"
    if addr == "0.0.0.0":
        addr = "127.0.0.1"
    elif addr == "::":
        addr = "::1"
    host = f"[{addr}]" if ":" in addr else addr
    context = None
    if listener.tls:
        context = ssl.create_default_context(cafile=listener.tls_certificate_path)
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    scheme = "https" if listener.tls else "http"
    return f"{scheme}://{host}:{listener.port}", context


def register_user_in_database(config: Config, localpart: str, password: str, admin: bool) -> str:
    """Create a user straight in ``config.database`` (no running server): brings the schema up to
    date, then inserts the account with a bcrypt hash of ``config.bcrypt_rounds``. Returns the
    user ID; raises ValueError when the name is invalid or taken."""
    from homeserver.accounts.registration import create_user_sync
    from homeserver.storage.database import Database
    from homeserver.storage.engines import create_engine
    from homeserver.storage.migrations import prepare_database

    db_conf = config.database
    db = Database(create_engine(db_conf.engine, path=db_conf.path, dsn=db_conf.dsn), pool_size=1)
    prepare_database(db)
    return create_user_sync(db, config.server_name, localpart, password, admin, rounds=config.bcrypt_rounds)


def _read_password(args: argparse.Namespace) -> str | None:
    """--password, or prompted twice; None (after printing why) when unusable."""
    password = args.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            _err("passwords do not match")
            return None
    if not password:
        _err("empty password")
        return None
    return password


def _register_user_in_database(args: argparse.Namespace) -> int:
    if not args.config:
        _err("--database needs --config (the database and server_name come from it)")
        return 2
    if args.url or args.shared_secret:
        _err("--database writes to the database directly; --url and --shared-secret do not apply")
        return 2
    config = _load(args.config, strict=False)
    if config is None:
        return 1
    password = _read_password(args)
    if password is None:
        return 1
    try:
        user_id = register_user_in_database(config, args.user, password, args.admin)
    except ValueError as e:
        _err(f"registration failed: {e}")
        return 1
    except Exception as e:  # the database cannot be opened, or its schema is newer than this uzel
        _err(f"registration failed: database error: {e}")
        return 1
    print(user_id)
    return 0


def cmd_register_user(args: argparse.Namespace) -> int:
    if args.database:
        return _register_user_in_database(args)
    context = None
    if args.config:
        config = _load(args.config, strict=False)
        if config is None:
            return 1
        try:
            url, context = client_url_from_config(config)
        except ConfigError as e:
            _err(str(e))
            return 1
        url = args.url or url
        secret = args.shared_secret or config.registration_shared_secret
        if not secret:
            _err("registration_shared_secret is not set in the config; pass --shared-secret")
            return 1
    else:
        if not (args.url and args.shared_secret):
            _err("give --config, or both --url and --shared-secret")
            return 2
        url, secret = args.url, args.shared_secret
    password = _read_password(args)
    if password is None:
        return 1
    try:
        result = register_user(url, secret, args.user, password, args.admin, ssl_context=context)
    except RegistrationError as e:
        _err(f"registration failed: {e}")
        return 1
    print(result.get("user_id", "(server returned no user_id)"))
    return 0


# --- plumbing -----------------------------------------------------------------------------

def _err(message: str) -> None:
    print(f"uzel: {message}", file=sys.stderr)


def _load(path: str, *, strict: bool) -> Config | None:
    """Load a config, printing its warnings; None (after printing the error) when invalid."""
    try:
        config = load_config(path, strict=strict)
    except ConfigError as e:
        _err(f"config error in {path}: {e}")
        return None
    for warning in config.warnings:
        _err(f"config warning: {warning}")
    return config


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535: {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uzel", description="uzel, a Matrix homeserver")
    parser.add_argument("--version", action="version", version=f"uzel {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate-config", help="write a commented config, a signing key and (optionally) TLS files")
    gen.add_argument("--server-name", required=True, help="the domain of user IDs, e.g. example.org")
    gen.add_argument("--config-path", required=True, help="where to write homeserver.yaml")
    gen.add_argument("--data-dir", help="where keys, database and media go (default: the config's directory)")
    gen.add_argument("--client-port", type=_port, default=8008, help="plain HTTP listener port (default 8008)")
    gen.add_argument("--federation-port", type=_port, default=8448,
                     help="TLS federation listener port with --self-signed-tls (default 8448)")
    gen.add_argument("--bind-address", default="127.0.0.1", help="address the listeners bind (default 127.0.0.1)")
    gen.add_argument("--database-url", help="sqlite:///abs/path.db, sqlite:rel.db or postgresql://user:pw@host:port/db")
    gen.add_argument("--public-baseurl", help="client-facing URL (default https://<server-name>/, "
                                              "or http://localhost:<client-port>/ for a loopback name)")
    gen.add_argument("--self-signed-tls", action="store_true",
                     help="generate a self-signed certificate and a TLS listener for federation and keys")
    gen.add_argument("--force", action="store_true", help="overwrite an existing config (and signing key)")
    gen.set_defaults(func=cmd_generate_config)

    run = sub.add_parser("run", help="run the homeserver in the foreground")
    run.add_argument("--config", "-c", required=True, help="path to homeserver.yaml")
    run.add_argument("--strict", action="store_true", help="refuse unknown config keys instead of warning")
    run.set_defaults(func=cmd_run)

    reg = sub.add_parser("register-user", help="create a user through the shared-secret admin API, "
                                               "or directly in the database with --database")
    reg.add_argument("--config", "-c", help="read the URL and shared secret (or, with --database, "
                                            "the database) from this config")
    reg.add_argument("--database", action="store_true",
                     help="write the user straight into the configured database; no running server needed")
    reg.add_argument("--url", help="base URL of the client API, e.g. http://localhost:8008")
    reg.add_argument("--shared-secret", help="the server's registration_shared_secret")
    reg.add_argument("-u", "--user", required=True, help="localpart of the new user")
    reg.add_argument("-p", "--password", help="password (prompted for when omitted)")
    admin = reg.add_mutually_exclusive_group()
    admin.add_argument("--admin", "-a", dest="admin", action="store_true", help="make the user a server admin")
    admin.add_argument("--no-admin", dest="admin", action="store_false", help="a normal user (default)")
    reg.set_defaults(func=cmd_register_user, admin=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
