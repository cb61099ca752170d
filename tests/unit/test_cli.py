"""The uzel command line: generate-config, run, register-user, --version."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import ssl
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

import homeserver
from config.loader import load_config
from homeserver import cli
from homeserver.protocol.signing import read_signing_keys


# --- the shared-secret MAC ------------------------------------------------------------------

def test_registration_mac_matches_hand_computed_vector():
    # printf 'abcdef0123\0alice\0correct horse\0notadmin' | openssl dgst -sha1 -hmac 's3cret'
    assert cli.registration_mac("s3cret", "abcdef0123", "alice", "correct horse", False) == \
        "e096e057a2c224c0682bb420b3b80b5865a6f5f2"
    # ... '\0admin'
    assert cli.registration_mac("s3cret", "abcdef0123", "alice", "correct horse", True) == \
        "64fc56ffac3de171dce798db06f5abf7501b0ecb"


def test_registration_mac_appends_user_type_when_given():
    plain = cli.registration_mac("k", "n", "u", "p", False)
    assert cli.registration_mac("k", "n", "u", "p", False, user_type="bot") != plain
    expected = hmac.new(b"k", b"n\x00u\x00p\x00notadmin\x00bot", hashlib.sha1).hexdigest()
    assert cli.registration_mac("k", "n", "u", "p", False, user_type="bot") == expected


# --- a fake /_synapse/admin/v1/register -------------------------------------------------------

class FakeRegisterServer:
    """Implements the shared-secret registration endpoint well enough to check the client."""

    def __init__(self, secret: str, server_name: str = "example.org"):
        fake = self
        self.secret, self.server_name, self.requests = secret, server_name, []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append(("GET", self.path, None))
                self._reply(200, {"nonce": "thenonce"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("POST", self.path, body))
                msg = b"\x00".join([body["nonce"].encode(), body["username"].encode(), body["password"].encode(),
                                    b"admin" if body["admin"] else b"notadmin"])
                want = hmac.new(fake.secret.encode(), msg, hashlib.sha1).hexdigest()
                if body["mac"] != want:
                    self._reply(403, {"errcode": "M_FORBIDDEN", "error": "HMAC incorrect"})
                    return
                self._reply(200, {"user_id": f"@{body['username']}:{fake.server_name}", "access_token": "t",
                                  "home_server": fake.server_name, "device_id": "D"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_register_user_with_url_and_secret_prints_the_user_id(capsys):
    with FakeRegisterServer("shh") as server:
        rc = cli.main(["register-user", "--url", server.url, "--shared-secret", "shh",
                       "-u", "alice", "-p", "pw", "--admin"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == "@alice:example.org"
    (get, post) = server.requests
    assert get[:2] == ("GET", "/_synapse/admin/v1/register")
    assert post[1] == "/_synapse/admin/v1/register"
    assert post[2]["nonce"] == "thenonce" and post[2]["admin"] is True and post[2]["username"] == "alice"


def test_register_user_reports_server_errcode_and_exits_nonzero(capsys):
    with FakeRegisterServer("right") as server:
        rc = cli.main(["register-user", "--url", server.url, "--shared-secret", "wrong", "-u", "bob", "-p", "pw"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "M_FORBIDDEN" in err and "HMAC incorrect" in err


def test_register_user_unreachable_server_exits_nonzero(capsys):
    with FakeRegisterServer("x") as server:
        url = server.url
    rc = cli.main(["register-user", "--url", url, "--shared-secret", "x", "-u", "bob", "-p", "pw"])
    assert rc == 1
    assert "cannot reach" in capsys.readouterr().err


def test_register_user_with_config_uses_client_listener_and_secret(tmp_path, capsys):
    with FakeRegisterServer("placeholder") as server:
        config_path = tmp_path / "homeserver.yaml"
        assert cli.main(["generate-config", "--server-name", "example.org", "--config-path", str(config_path),
                         "--client-port", str(server.port)]) == 0
        server.secret = load_config(config_path).registration_shared_secret
        capsys.readouterr()
        rc = cli.main(["register-user", "--config", str(config_path), "-u", "carol", "-p", "pw"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == "@carol:example.org"
    assert server.requests[1][2]["admin"] is False


def test_register_user_needs_config_or_url_and_secret(capsys):
    assert cli.main(["register-user", "--url", "http://x", "-u", "a", "-p", "b"]) == 2


def test_client_url_from_config_maps_wildcard_binds_to_loopback(tmp_path):
    from config.loader import parse_config
    c = parse_config({"server_name": "example.org", "listeners": [
        {"port": 8448, "bind_addresses": ["0.0.0.0"], "resources": [{"names": ["federation"]}]},
        {"port": 8008, "bind_addresses": ["::"], "resources": [{"names": ["client"]}]}]},
        config_dir=str(tmp_path))
    assert cli.client_url_from_config(c) == ("http://[::1]:8008", None)


# --- generate-config --------------------------------------------------------------------------

def test_generate_config_writes_loadable_config_and_signing_key(tmp_path, capsys):
    config_path = tmp_path / "conf" / "homeserver.yaml"
    data_dir = tmp_path / "data"
    rc = cli.main(["generate-config", "--server-name", "example.org", "--config-path", str(config_path),
                   "--data-dir", str(data_dir)])
    assert rc == 0
    c = load_config(config_path, strict=True)
    assert c.server_name == "example.org"
    assert c.signing_key_path == str(data_dir / "example.org.signing.key")
    key_text = (data_dir / "example.org.signing.key").read_text()
    assert re.fullmatch(r"ed25519 a_[A-Za-z0-9_]{4} [A-Za-z0-9+/]{43}\n", key_text)
    assert len(read_signing_keys(c.signing_key_path)) == 1
    assert (config_path.stat().st_mode & 0o077) == 0  # holds the registration secret
    assert len(c.registration_shared_secret) >= 32


def test_generate_config_refuses_to_overwrite_without_force(tmp_path, capsys):
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text("precious: true\n")
    assert cli.main(["generate-config", "--server-name", "a.org", "--config-path", str(config_path)]) == 1
    assert config_path.read_text() == "precious: true\n"
    assert "--force" in capsys.readouterr().err
    assert cli.main(["generate-config", "--server-name", "a.org", "--config-path", str(config_path), "--force"]) == 0
    assert load_config(config_path).server_name == "a.org"


def test_generate_config_keeps_an_existing_signing_key(tmp_path):
    key_path = tmp_path / "a.org.signing.key"
    key_path.write_text("ed25519 a_keep AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    assert cli.main(["generate-config", "--server-name", "a.org", "--config-path", str(tmp_path / "c.yaml")]) == 0
    assert key_path.read_text().startswith("ed25519 a_keep ")


def test_generate_config_with_postgres_url_writes_synapse_database_args(tmp_path):
    config_path = tmp_path / "homeserver.yaml"
    assert cli.main(["generate-config", "--server-name", "a.org", "--config-path", str(config_path),
                     "--database-url", "postgresql://uzel:pw@db:5432/uzel"]) == 0
    raw = yaml.safe_load(config_path.read_text())
    assert raw["database"]["name"] == "psycopg2"
    assert raw["database"]["args"]["user"] == "uzel"
    assert load_config(config_path).database.dsn == "user=uzel password=pw dbname=uzel host=db port=5432"


def test_generate_config_rejects_bad_database_url_and_server_name(tmp_path):
    path = str(tmp_path / "c.yaml")
    assert cli.main(["generate-config", "--server-name", "a.org", "--config-path", path,
                     "--database-url", "mysql://x/y"]) == 2
    assert cli.main(["generate-config", "--server-name", "not valid", "--config-path", path]) == 2


def test_generate_config_self_signed_tls_writes_matching_cert_and_key(tmp_path):
    config_path = tmp_path / "homeserver.yaml"
    assert cli.main(["generate-config", "--server-name", "example.org", "--config-path", str(config_path),
                     "--self-signed-tls", "--federation-port", "8449"]) == 0
    c = load_config(config_path, strict=True)
    tls = [lst for lst in c.listeners if lst.tls]
    assert len(tls) == 1 and tls[0].port == 8449
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls[0].tls_certificate_path, tls[0].tls_private_key_path)  # raises if they differ


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_fallback_writes_matching_cert_and_key(tmp_path):
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    cli._openssl_self_signed("127.0.0.1", object(), cert, key, 30)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0


# --- run and --version ------------------------------------------------------------------------

@pytest.fixture
def fake_app(monkeypatch):
    calls = []
    module = types.ModuleType("homeserver.app")
    module.run = calls.append
    monkeypatch.setitem(sys.modules, "homeserver.app", module)
    monkeypatch.setattr(homeserver, "app", module, raising=False)
    return calls


def test_run_loads_config_and_hands_it_to_app_run(tmp_path, fake_app):
    config_path = tmp_path / "homeserver.yaml"
    cli.main(["generate-config", "--server-name", "example.org", "--config-path", str(config_path)])
    assert cli.main(["run", "--config", str(config_path)]) == 0
    (config,) = fake_app
    assert config.server_name == "example.org"


def test_run_with_invalid_config_exits_nonzero_naming_the_key(tmp_path, fake_app, capsys):
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text("server_name: example.org\nlisteners: [{port: 0, resources: [{names: [client]}]}]\n")
    assert cli.main(["run", "--config", str(config_path)]) == 1
    assert "listeners[0].port" in capsys.readouterr().err
    assert fake_app == []


def test_run_strict_refuses_unknown_keys_but_default_mode_warns(tmp_path, fake_app, capsys):
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text("server_name: example.org\nenable_registraton: true\n")
    assert cli.main(["run", "--config", str(config_path), "--strict"]) == 1
    assert fake_app == []
    assert cli.main(["run", "--config", str(config_path)]) == 0
    assert "enable_registraton: unknown key" in capsys.readouterr().err


def test_version_flag_prints_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("uzel ")


# --- register-user --database ---------------------------------------------------------------------

def _config_with_sqlite(tmp_path, *extra: str) -> str:
    config_path = tmp_path / "homeserver.yaml"
    assert cli.main(["generate-config", "--server-name", "example.org", "--config-path", str(config_path)]) == 0
    with open(config_path, "a") as f:
        f.write("\nbcrypt_rounds: 4\n" + "".join(f"{line}\n" for line in extra))
    return str(config_path)


def _user_row(config_path: str, user_id: str):
    import sqlite3
    db = sqlite3.connect(load_config(config_path).database.path)
    try:
        return db.execute("SELECT password_hash, is_admin FROM users WHERE user_id = ?", (user_id,)).fetchone()
    finally:
        db.close()


def test_register_user_database_creates_the_user_without_a_server(tmp_path, capsys):
    import bcrypt
    config_path = _config_with_sqlite(tmp_path)
    capsys.readouterr()
    assert cli.main(["register-user", "--config", config_path, "--database", "-u", "Alice", "-p", "pw",
                     "--admin"]) == 0
    assert capsys.readouterr().out.strip() == "@alice:example.org"
    password_hash, is_admin = _user_row(config_path, "@alice:example.org")
    assert bcrypt.checkpw(b"pw", password_hash.encode()) and not bcrypt.checkpw(b"wrong", password_hash.encode())
    assert password_hash.startswith("$2b$04$")  # the configured bcrypt_rounds
    assert bool(is_admin) is True


def test_register_user_database_makes_normal_users_by_default(tmp_path):
    config_path = _config_with_sqlite(tmp_path)
    assert cli.main(["register-user", "-c", config_path, "--database", "-u", "bob", "-p", "pw"]) == 0
    assert bool(_user_row(config_path, "@bob:example.org")[1]) is False


def test_register_user_database_refuses_a_taken_name_with_a_clear_message(tmp_path, capsys):
    config_path = _config_with_sqlite(tmp_path)
    assert cli.main(["register-user", "-c", config_path, "--database", "-u", "carol", "-p", "one"]) == 0
    first_hash = _user_row(config_path, "@carol:example.org")[0]
    capsys.readouterr()
    assert cli.main(["register-user", "-c", config_path, "--database", "-u", "carol", "-p", "two"]) == 1
    assert "@carol:example.org is already taken" in capsys.readouterr().err
    assert _user_row(config_path, "@carol:example.org")[0] == first_hash  # untouched


def test_register_user_database_refuses_an_invalid_name(tmp_path, capsys):
    config_path = _config_with_sqlite(tmp_path)
    capsys.readouterr()
    assert cli.main(["register-user", "-c", config_path, "--database", "-u", "bad name", "-p", "pw"]) == 1
    assert "registration failed" in capsys.readouterr().err


def test_register_user_database_needs_a_config(capsys):
    assert cli.main(["register-user", "--database", "-u", "a", "-p", "b"]) == 2
    assert "--database needs --config" in capsys.readouterr().err


def test_register_user_database_reports_an_unusable_database(tmp_path, capsys):
    config_path = _config_with_sqlite(tmp_path)
    (tmp_path / "a_directory.db").mkdir()  # sqlite cannot open a directory as its file
    text = open(config_path).read().replace(str(tmp_path / "homeserver.db"), str(tmp_path / "a_directory.db"))
    open(config_path, "w").write(text)
    capsys.readouterr()
    assert cli.main(["register-user", "-c", config_path, "--database", "-u", "dave", "-p", "pw"]) == 1
    assert "database error" in capsys.readouterr().err
