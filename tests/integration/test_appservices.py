"""The application service API against a real uzel (both engines), with a small recording
application service in the test process: registration, identity assertion, exclusive
namespaces, transactions (order, retries, restarts), ephemeral data, queries, ping, third-party
look-ups, network directories, the admin view, and malformed registrations."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
import yaml

from tests.integration.harness import (REPO_ROOT, SERVER_NAME, api, db_execute, free_port, register_user,
                                       start_server, stop_server)

V3 = "/_matrix/client/v3"
AS_TOKEN = "as-token-irc"
HS_TOKEN = "hs-token-irc"
_n = itertools.count()


def q(s: str) -> str:
    return quote(s, safe="")


def ok(result):
    status, body = result
    assert status == 200, body
    return body


def err(result) -> tuple[int, str | None]:
    status, body = result
    return status, (body or {}).get("errcode")


# =============================================================================================
# A recording application service
# =============================================================================================

class FakeAppService:
    """Answers the HS→AS API on a loopback port and records what arrives. ``hs_url`` lets the
    alias query create the room through the homeserver, as a bridge would."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.txns: list[tuple[str, dict, str | None]] = []  # (txnId, body, Authorization)
        self.attempts: list[tuple[str, dict]] = []  # every PUT, failed ones included
        self.queries: list[str] = []
        self.pings: list[dict] = []
        self.hs_url: str | None = None
        self.fail_status: int | None = None  # answer transactions with this status
        self.lock = threading.Lock()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeAppService":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authed(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
                    self._reply(403, {"errcode": "M_FORBIDDEN"})
                    return False
                return True

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                path = urlsplit(self.path).path
                if not path.startswith("/_matrix/app/v1/transactions/"):
                    return self._reply(404, {"errcode": "M_UNRECOGNIZED"})
                if not self._authed():
                    return
                with fake.lock:
                    fake.attempts.append((path.rsplit("/", 1)[1], body))
                if fake.fail_status is not None:
                    return self._reply(fake.fail_status, {"errcode": "M_UNKNOWN"})
                with fake.lock:
                    fake.txns.append((path.rsplit("/", 1)[1], body, self.headers.get("Authorization")))
                self._reply(200, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if urlsplit(self.path).path == "/_matrix/app/v1/ping" and self._authed():
                    fake.pings.append(body)
                    self._reply(200, {})
                elif urlsplit(self.path).path != "/_matrix/app/v1/ping":
                    self._reply(404, {"errcode": "M_UNRECOGNIZED"})

            def do_GET(self):
                parts = urlsplit(self.path)
                path = parts.path
                if not self._authed():
                    return
                fake.queries.append(unquote(path))
                if path.startswith("/_matrix/app/v1/rooms/"):
                    alias = unquote(path.rsplit("/", 1)[1])
                    if alias.startswith("#_irc_make_") and fake.hs_url:
                        fake.create_room_for(alias)
                        return self._reply(200, {})
                    return self._reply(404, {})
                if path.startswith("/_matrix/app/v1/users/"):
                    user_id = unquote(path.rsplit("/", 1)[1])
                    if user_id.startswith("@_irc_make_") and fake.hs_url:
                        api(fake.hs_url, "POST", f"{V3}/register", AS_TOKEN,
                            {"type": "m.login.application_service", "username": user_id[1:].split(":")[0],
                             "inhibit_login": True})
                        return self._reply(200, {})
                    return self._reply(404, {})
                if path == "/_matrix/app/v1/thirdparty/protocol/irc":
                    return self._reply(200, {
                        "user_fields": ["network", "nickname"], "location_fields": ["network", "channel"],
                        "icon": "mxc://example.org/irc", "field_types": {}, "instances": [
                            {"network_id": "libera", "desc": "Libera", "fields": {"network": "libera"}}]})
                if path == "/_matrix/app/v1/thirdparty/location/irc":
                    return self._reply(200, [{"alias": "#_irc_libera_x:test.local", "protocol": "irc",
                                              "fields": dict(item.split("=") for item in parts.query.split("&"))}])
                if path == "/_matrix/app/v1/thirdparty/user":
                    return self._reply(200, [{"userid": "@_irc_bob:test.local", "protocol": "irc",
                                              "fields": {"nickname": "bob"}}])
                self._reply(404, {"errcode": "M_UNRECOGNIZED"})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def create_room_for(self, alias: str) -> None:
        localpart = alias[1:].split(":")[0]
        status, body = api(self.hs_url, "POST", f"{V3}/createRoom", AS_TOKEN,
                           {"room_alias_name": localpart, "preset": "public_chat", "name": f"Room {localpart}"})
        assert status == 200, body

    # --- what arrived --------------------------------------------------------------------------
    def events(self) -> list[dict]:
        with self.lock:
            return [e for _, body, _ in self.txns for e in body.get("events", [])]

    def ephemeral(self) -> list[dict]:
        with self.lock:
            return [e for _, body, _ in self.txns for e in body.get("ephemeral", [])]

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "events"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {json.dumps(self.txns)[:3000]}")

    def wait_event(self, event_id: str, timeout: float = 20.0) -> dict:
        return self.wait_for(lambda: next((e for e in self.events() if e["event_id"] == event_id), None),
                             timeout, event_id)


def registration(fake: FakeAppService, **extra) -> dict:
    data = {
        "id": "irc", "url": fake.url, "as_token": AS_TOKEN, "hs_token": HS_TOKEN,
        "sender_localpart": "_irc_bot", "rate_limited": False, "receive_ephemeral": True,
        "protocols": ["irc"],
        "namespaces": {"users": [{"exclusive": True, "regex": f"@_irc_.*:{SERVER_NAME}"}],
                       "aliases": [{"exclusive": True, "regex": f"#_irc_.*:{SERVER_NAME}"}],
                       "rooms": []},
    }
    data.update(extra)
    return data


def other_registration() -> dict:
    return {"id": "silent", "url": None, "as_token": "as-token-silent", "hs_token": "hs-token-silent",
            "sender_localpart": "_silent_bot",
            "namespaces": {"users": [{"exclusive": True, "regex": f"@silent_.*:{SERVER_NAME}"}]}}


class Env:
    def __init__(self, server, proc, fake, data_dir):
        self.server, self.proc, self.fake, self.data_dir = server, proc, fake, data_dir

    @property
    def base(self) -> str:
        return self.server.base_url

    def restart(self, *, kill: bool = False) -> None:
        """Stop uzel (SIGKILL with ``kill``) and start it again on the same config and database."""
        if kill:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        else:
            stop_server(self.proc)
        log = open(self.server.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config",
                                      self.server.config_path], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.server.log()[-3000:]
            try:
                if requests.get(self.base + "/_matrix/client/versions", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("uzel did not come back")


def make_env(engine: str, **reg_extra) -> Env:
    data_dir = tempfile.mkdtemp(prefix="uzel-as-")
    fake = FakeAppService().start()
    paths = []
    for i, data in enumerate([registration(fake, **reg_extra), other_registration()]):
        path = os.path.join(data_dir, f"as{i}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
        paths.append(path)
    server, proc = start_server(data_dir, engine, {"app_service_config_files": paths})
    fake.hs_url = server.base_url
    return Env(server, proc, fake, data_dir)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request):
    e = make_env(request.param)
    try:
        yield e
    finally:
        stop_server(e.proc)
        e.fake.stop()
        shutil.rmtree(e.data_dir, ignore_errors=True)


def ghost(env, name: str | None = None) -> str:
    name = name or f"_irc_ghost{next(_n)}"
    body = ok(api(env.base, "POST", f"{V3}/register", AS_TOKEN,
                  {"type": "m.login.application_service", "username": name, "inhibit_login": True}))
    assert "access_token" not in body
    return body["user_id"]


def as_user(user_id: str) -> dict:
    return {"user_id": user_id}


def human(env, name="alice"):
    user_id, token, _ = register_user(env.base, f"{name}{next(_n)}")
    return user_id, token


def room_with_ghost(env):
    """A room made by a human with a ghost joined; returns (room_id, human token, ghost id)."""
    _, token = human(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", token, {"preset": "public_chat"}))["room_id"]
    g = ghost(env)
    ok(api(env.base, "POST", f"{V3}/join/{q(room_id)}", AS_TOKEN, {}, params=as_user(g)))
    return room_id, token, g


def send(env, token, room_id, body, params=None) -> str:
    return ok(api(env.base, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/t{next(_n)}", token,
                  {"msgtype": "m.text", "body": body}, params=params))["event_id"]


# =============================================================================================
# Identity assertion and registration
# =============================================================================================

def test_as_token_acts_as_sender_and_asserted_users(env):
    assert ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN))["user_id"] == f"@_irc_bot:{SERVER_NAME}"
    g = ghost(env)
    who = ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(g)))
    assert who["user_id"] == g and "device_id" not in who


def test_user_id_outside_namespace_or_unregistered_is_refused(env):
    alice, _ = human(env)
    status, body = api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(alice))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN") and "namespace" in body["error"]
    status, body = api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN,
                       params=as_user(f"@_irc_nobody:{SERVER_NAME}"))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN") and "not registered" in body["error"]
    assert err(api(env.base, "GET", f"{V3}/account/whoami", "wrong-token")) == (401, "M_UNKNOWN_TOKEN")


def test_device_id_masquerading_needs_a_known_device(env):
    g = ghost(env)
    assert err(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN,
                   params={"user_id": g, "device_id": "NOPE"})) == (400, "M_UNKNOWN_DEVICE")
    # MSC4190: the service creates the device itself, then acts with it.
    status, _ = api(env.base, "PUT", f"{V3}/devices/BRIDGEDEV", AS_TOKEN, {"display_name": "bridge"},
                    params=as_user(g))
    assert status == 201
    who = ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params={"user_id": g, "device_id": "BRIDGEDEV"}))
    assert who["device_id"] == "BRIDGEDEV"
    ok(api(env.base, "DELETE", f"{V3}/devices/BRIDGEDEV", AS_TOKEN, {}, params=as_user(g)))


def test_appservice_registration_rules(env):
    reg = {"type": "m.login.application_service", "inhibit_login": True}
    assert err(api(env.base, "POST", f"{V3}/register", AS_TOKEN, dict(reg, username="outsider"))) == \
        (400, "M_EXCLUSIVE")
    assert err(api(env.base, "POST", f"{V3}/register", AS_TOKEN, dict(reg, username="silent_x"))) == \
        (400, "M_EXCLUSIVE")
    g = ghost(env)
    assert err(api(env.base, "POST", f"{V3}/register", AS_TOKEN, dict(reg, username=g[1:].split(":")[0]))) == \
        (400, "M_USER_IN_USE")
    assert err(api(env.base, "POST", f"{V3}/register", None, dict(reg, username="_irc_x"))) == \
        (401, "M_MISSING_TOKEN")
    assert err(api(env.base, "POST", f"{V3}/register", "bad", dict(reg, username="_irc_x"))) == \
        (401, "M_UNKNOWN_TOKEN")
    # Without inhibit_login the ghost is logged in.
    body = ok(api(env.base, "POST", f"{V3}/register", AS_TOKEN,
                  {"type": "m.login.application_service", "username": f"_irc_login{next(_n)}"}))
    assert ok(api(env.base, "GET", f"{V3}/account/whoami", body["access_token"]))["user_id"] == body["user_id"]


def test_exclusive_namespaces_refuse_humans(env):
    body = {"username": "silent_sneaky", "password": "pw pw pw", "auth": {"type": "m.login.dummy"}}
    assert err(api(env.base, "POST", f"{V3}/register", json=body)) == (400, "M_EXCLUSIVE")
    assert err(api(env.base, "GET", f"{V3}/register/available", params={"username": "silent_sneaky"})) == \
        (400, "M_EXCLUSIVE")
    _, token = human(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", token, {}))["room_id"]
    assert err(api(env.base, "PUT", f"{V3}/directory/room/{q('#_irc_mine:' + SERVER_NAME)}", token,
                   {"room_id": room_id})) == (400, "M_EXCLUSIVE")
    # The service itself may create it without being in the room, but not outside its namespace.
    ok(api(env.base, "PUT", f"{V3}/directory/room/{q(f'#_irc_own{next(_n)}:' + SERVER_NAME)}", AS_TOKEN,
           {"room_id": room_id}))
    assert err(api(env.base, "PUT", f"{V3}/directory/room/{q(f'#plain{next(_n)}:' + SERVER_NAME)}", AS_TOKEN,
                   {"room_id": room_id})) == (400, "M_EXCLUSIVE")


def test_appservice_login(env):
    flows = ok(api(env.base, "GET", f"{V3}/login"))["flows"]
    assert {"type": "m.login.application_service"} in flows
    g = ghost(env)
    body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": g}}
    logged = ok(api(env.base, "POST", f"{V3}/login", AS_TOKEN, body))
    assert logged["user_id"] == g and logged["access_token"]
    alice, _ = human(env)
    assert err(api(env.base, "POST", f"{V3}/login", AS_TOKEN,
                   dict(body, identifier={"type": "m.id.user", "user": alice}))) == (403, "M_EXCLUSIVE")
    assert err(api(env.base, "POST", f"{V3}/login", None, body)) == (401, "M_MISSING_TOKEN")


def test_timestamp_massaging_on_send_and_state(env):
    g = ghost(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", AS_TOKEN, {}, params=as_user(g)))["room_id"]
    event_id = send(env, AS_TOKEN, room_id, "old news", params={"user_id": g, "ts": "1234567890"})
    event = ok(api(env.base, "GET", f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}", AS_TOKEN, params=as_user(g)))
    assert event["origin_server_ts"] == 1234567890
    state = ok(api(env.base, "PUT", f"{V3}/rooms/{q(room_id)}/state/m.room.topic/", AS_TOKEN, {"topic": "t"},
                   params={"user_id": g, "ts": "1000"}))
    event = ok(api(env.base, "GET", f"{V3}/rooms/{q(room_id)}/event/{q(state['event_id'])}", AS_TOKEN,
                   params=as_user(g)))
    assert event["origin_server_ts"] == 1000
    assert err(api(env.base, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/x{next(_n)}", AS_TOKEN,
                   {"body": "x"}, params={"user_id": g, "ts": "soon"})) == (400, "M_INVALID_PARAM")


# =============================================================================================
# Transactions
# =============================================================================================

def test_events_of_interest_arrive_in_order_with_the_hs_token(env):
    room_id, token, g = room_with_ghost(env)
    ids = [send(env, token, room_id, f"hello {i}") for i in range(5)]
    env.fake.wait_event(ids[-1])
    arrived = [e["event_id"] for e in env.fake.events() if e["event_id"] in ids]
    assert arrived == ids
    first = env.fake.wait_event(ids[0])
    assert first["room_id"] == room_id and first["content"]["body"] == "hello 0" and "sender" in first
    assert all(auth == f"Bearer {HS_TOKEN}" for _, _, auth in env.fake.txns)
    txn_ids = [int(t) for t, _, _ in env.fake.txns]
    assert txn_ids == sorted(set(txn_ids))


def test_uninteresting_rooms_are_not_sent(env):
    _, token = human(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", token, {}))["room_id"]
    private = send(env, token, room_id, "nobody bridged here")
    room2, token2, _ = room_with_ghost(env)
    marker = send(env, token2, room2, "marker")
    env.fake.wait_event(marker)
    assert private not in {e["event_id"] for e in env.fake.events()}


def test_invite_of_a_ghost_is_sent(env):
    _, token = human(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", token, {}))["room_id"]
    g = ghost(env)
    ok(api(env.base, "POST", f"{V3}/rooms/{q(room_id)}/invite", token, {"user_id": g}))
    env.fake.wait_for(lambda: [e for e in env.fake.events() if e["type"] == "m.room.member"
                               and e.get("state_key") == g and e["content"]["membership"] == "invite"])


def test_aliased_room_is_of_interest(env):
    _, token = human(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", token, {}))["room_id"]
    ok(api(env.base, "PUT", f"{V3}/directory/room/{q(f'#_irc_chan{next(_n)}:' + SERVER_NAME)}", AS_TOKEN,
           {"room_id": room_id}))
    env.fake.wait_event(send(env, token, room_id, "seen through the alias"))


def test_typing_and_receipts_arrive_as_ephemeral(env):
    room_id, token, g = room_with_ghost(env)
    event_id = send(env, token, room_id, "read me")
    alice = ok(api(env.base, "GET", f"{V3}/account/whoami", token))["user_id"]
    ok(api(env.base, "PUT", f"{V3}/rooms/{q(room_id)}/typing/{q(alice)}", token, {"typing": True, "timeout": 5000}))
    ok(api(env.base, "POST", f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", token, {}))
    typing = env.fake.wait_for(lambda: [e for e in env.fake.ephemeral() if e["type"] == "m.typing"
                                        and e["room_id"] == room_id and alice in e["content"]["user_ids"]])
    assert typing
    receipts = env.fake.wait_for(lambda: [e for e in env.fake.ephemeral() if e["type"] == "m.receipt"
                                          and e["room_id"] == room_id])
    assert alice in receipts[0]["content"][event_id]["m.read"]
    assert all("de.sorunome.msc2409.ephemeral" in body for _, body, _ in env.fake.txns if "ephemeral" in body)


def test_presence_of_users_sharing_a_room_arrives_as_ephemeral(env):
    room_id, token, g = room_with_ghost(env)
    alice = ok(api(env.base, "GET", f"{V3}/account/whoami", token))["user_id"]
    ok(api(env.base, "PUT", f"{V3}/presence/{q(alice)}/status", token, {"presence": "online", "status_msg": "bridging"}))
    presence = env.fake.wait_for(lambda: [e for e in env.fake.ephemeral() if e["type"] == "m.presence"
                                          and e["sender"] == alice])
    assert presence[-1]["content"]["status_msg"] == "bridging"


def test_to_device_for_ghosts_is_pushed(env):
    g = ghost(env)
    assert api(env.base, "PUT", f"{V3}/devices/TDDEV", AS_TOKEN, {}, params=as_user(g))[0] == 201
    _, token = human(env)
    ok(api(env.base, "PUT", f"{V3}/sendToDevice/m.test/td{next(_n)}", token,
           {"messages": {g: {"TDDEV": {"hello": "ghost"}}}}))

    def found():
        with env.fake.lock:
            return [m for _, body, _ in env.fake.txns for m in body.get("de.sorunome.msc2409.to_device", [])
                    if m["to_user_id"] == g]
    msgs = env.fake.wait_for(found)
    assert msgs[0]["to_device_id"] == "TDDEV" and msgs[0]["content"] == {"hello": "ghost"}


# =============================================================================================
# Queries, ping, third-party networks, directories, admin view
# =============================================================================================

def test_alias_query_lets_the_service_create_the_room(env):
    alias = f"#_irc_make_{next(_n)}:{SERVER_NAME}"
    resolved = ok(api(env.base, "GET", f"{V3}/directory/room/{q(alias)}"))
    assert resolved["room_id"].startswith("!")
    assert f"/_matrix/app/v1/rooms/{alias}" in env.fake.queries
    _, token = human(env)
    ok(api(env.base, "POST", f"{V3}/join/{q(alias)}", token, {}))
    assert err(api(env.base, "GET", f"{V3}/directory/room/{q(f'#_irc_unknown{next(_n)}:' + SERVER_NAME)}")) == \
        (404, "M_NOT_FOUND")


def test_user_query_for_unknown_ghost(env):
    user_id = f"@_irc_make_{next(_n)}:{SERVER_NAME}"
    _, token = human(env)
    profile = ok(api(env.base, "GET", f"{V3}/profile/{q(user_id)}", token))
    assert profile["displayname"]
    assert f"/_matrix/app/v1/users/{user_id}" in env.fake.queries


def test_ping(env):
    body = ok(api(env.base, "POST", "/_matrix/client/v1/appservice/irc/ping", AS_TOKEN, {"transaction_id": "meow"}))
    assert isinstance(body["duration_ms"], int) and {"transaction_id": "meow"} in env.fake.pings
    assert err(api(env.base, "POST", "/_matrix/client/v1/appservice/silent/ping", AS_TOKEN, {})) == \
        (403, "M_FORBIDDEN")
    assert err(api(env.base, "POST", "/_matrix/client/v1/appservice/silent/ping", "as-token-silent", {})) == \
        (400, "M_URL_NOT_SET")


def test_thirdparty_lookups_are_proxied(env):
    _, token = human(env)
    protocols = ok(api(env.base, "GET", f"{V3}/thirdparty/protocols", token))
    assert protocols["irc"]["instances"][0]["instance_id"] == "irc|libera"
    assert ok(api(env.base, "GET", f"{V3}/thirdparty/protocol/irc", token))["icon"] == "mxc://example.org/irc"
    assert err(api(env.base, "GET", f"{V3}/thirdparty/protocol/xmpp", token)) == (404, "M_NOT_FOUND")
    locations = ok(api(env.base, "GET", f"{V3}/thirdparty/location/irc", token,
                       params={"network": "libera", "channel": "matrix"}))
    assert locations[0]["fields"] == {"network": "libera", "channel": "matrix"}
    users = ok(api(env.base, "GET", f"{V3}/thirdparty/user", token, params={"userid": "@_irc_bob:test.local"}))
    assert users[0]["fields"]["nickname"] == "bob"


def test_network_directory_publishing(env):
    _, token = human(env)
    room_id = ok(api(env.base, "POST", f"{V3}/createRoom", token, {"preset": "public_chat"}))["room_id"]
    path = f"{V3}/directory/list/appservice/libera/{q(room_id)}"
    assert err(api(env.base, "PUT", path, token, {"visibility": "public"})) == (403, "M_FORBIDDEN")
    assert err(api(env.base, "PUT", path, AS_TOKEN, {"visibility": "loud"})) == (400, "M_INVALID_PARAM")
    ok(api(env.base, "PUT", path, AS_TOKEN, {"visibility": "public"}))
    listed = ok(api(env.base, "POST", f"{V3}/publicRooms", token, {"third_party_instance_id": "irc|libera"}))
    assert room_id in [r["room_id"] for r in listed["chunk"]]
    ok(api(env.base, "PUT", path, AS_TOKEN, {"visibility": "private"}))
    listed = ok(api(env.base, "POST", f"{V3}/publicRooms", token, {"third_party_instance_id": "irc|libera"}))
    assert room_id not in [r["room_id"] for r in listed["chunk"]]


def test_admin_view_lists_backlogs(env):
    admin, token = human(env, "admin")
    assert err(api(env.base, "GET", "/_uzel/admin/v1/appservices", token)) == (403, "M_FORBIDDEN")
    db_execute(env.server, "UPDATE users SET is_admin = ? WHERE user_id = ?", (True, admin))
    status = ok(api(env.base, "GET", "/_uzel/admin/v1/appservices", token))["appservices"]
    irc = next(s for s in status if s["id"] == "irc")
    assert {"pending_transactions", "last_txn_id", "last_acked_txn_id", "state"} <= set(irc)
    assert any(s["id"] == "silent" for s in status)


def test_rate_limits_are_lifted_unless_rate_limited():
    data_dir = tempfile.mkdtemp(prefix="uzel-as-rl-")
    fake = FakeAppService().start()
    try:
        path = os.path.join(data_dir, "as.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(registration(fake), f)  # rate_limited: false
        server, proc = start_server(data_dir, "sqlite", {
            "app_service_config_files": [path], "enable_ratelimiting": True,
            "rc_message": {"per_second": 0.01, "burst_count": 2},
            "rc_registration": {"per_second": 100, "burst_count": 100}})
        e = Env(server, proc, fake, data_dir)
        try:
            g = ghost(e)
            room_id = ok(api(e.base, "POST", f"{V3}/createRoom", AS_TOKEN, {"preset": "public_chat"},
                             params=as_user(g)))["room_id"]
            for i in range(5):
                send(e, AS_TOKEN, room_id, f"ghost {i}", params=as_user(g))
            _, token = human(e)
            ok(api(e.base, "POST", f"{V3}/join/{q(room_id)}", token, {}))
            statuses = [api(e.base, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/h{i}", token,
                            {"msgtype": "m.text", "body": "human"})[0] for i in range(4)]
            assert 429 in statuses
        finally:
            stop_server(e.proc)
    finally:
        fake.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# =============================================================================================
# Delivery across outages and restarts (its own server per engine)
# =============================================================================================

@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_delivery_survives_appservice_outage_and_uzel_kill(engine):
    e = make_env(engine)
    try:
        room_id, token, g = room_with_ghost(e)
        before = send(e, token, room_id, "before")
        e.fake.wait_event(before)
        port = e.fake.port
        e.fake.stop()  # the service goes away: connection refused
        sent = [send(e, token, room_id, f"while down {i}") for i in range(4)]
        time.sleep(1.5)  # at least one failed attempt
        e.restart(kill=True)  # uzel dies with the transactions in its outbox
        sent += [send(e, token, room_id, f"after restart {i}") for i in range(3)]
        seen_txns = {t for t, _, _ in e.fake.txns}
        e.fake = FakeAppService(port).start()
        e.fake.hs_url = e.base
        ok(api(e.base, "POST", "/_matrix/client/v1/appservice/irc/ping", AS_TOKEN, {}))  # "I'm back"
        e.fake.wait_event(sent[-1], timeout=30)
        got = [ev["event_id"] for ev in e.fake.events() if ev["event_id"] in sent]
        assert got == sent  # all of them, once each, in order
        new_txns = [int(t) for t, _, _ in e.fake.txns]
        assert new_txns == sorted(new_txns) and not seen_txns & {str(t) for t in new_txns}
        ok(api(e.base, "POST", "/_matrix/client/v1/appservice/irc/ping", AS_TOKEN, {}))
    finally:
        stop_server(e.proc)
        e.fake.stop()
        shutil.rmtree(e.data_dir, ignore_errors=True)


def test_failed_transaction_is_retried_with_the_same_id_and_body():
    e = make_env("sqlite")
    try:
        room_id, token, _ = room_with_ghost(e)
        e.fake.wait_for(lambda: e.fake.txns)
        e.fake.fail_status = 500
        event_id = send(e, token, room_id, "retry me")
        e.fake.wait_for(lambda: len([a for a in e.fake.attempts if event_id in json.dumps(a[1])]) >= 2,
                        what="two failed attempts")
        e.fake.fail_status = None
        e.fake.wait_event(event_id, timeout=30)
        tries = [(t, body) for t, body in e.fake.attempts if event_id in json.dumps(body)]
        assert len({t for t, _ in tries}) == 1  # one txnId ...
        assert all(body == tries[0][1] for _, body in tries)  # ... and one body, however often sent
        assert [ev["event_id"] for ev in e.fake.events()].count(event_id) == 1
    finally:
        stop_server(e.proc)
        e.fake.stop()
        shutil.rmtree(e.data_dir, ignore_errors=True)


# =============================================================================================
# Malformed registrations stop start-up with a clear error
# =============================================================================================

@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.pop("hs_token"), "hs_token: required field is missing"),
    (lambda d: d["namespaces"]["users"].append({"regex": "@_x(", "exclusive": True}),
     "namespaces.users[1].regex: invalid regular expression"),
    (lambda d: d.update(url="not a url"), "url: 'not a url' is not an http(s) URL"),
])
def test_malformed_registration_stops_startup(mutate, expected):
    data_dir = tempfile.mkdtemp(prefix="uzel-as-bad-")
    try:
        data = registration(FakeAppService(1))
        mutate(data)
        path = os.path.join(data_dir, "bad.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
        with pytest.raises(RuntimeError) as exc:
            start_server(data_dir, "sqlite", {"app_service_config_files": [path]})
        assert "bad.yaml" in str(exc.value) and expected in str(exc.value)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_duplicate_as_tokens_stop_startup():
    data_dir = tempfile.mkdtemp(prefix="uzel-as-dup-")
    try:
        paths = []
        for i, data in enumerate([registration(FakeAppService(1)),
                                  dict(other_registration(), as_token=AS_TOKEN)]):
            paths.append(os.path.join(data_dir, f"r{i}.yaml"))
            with open(paths[-1], "w") as f:
                yaml.safe_dump(data, f)
        with pytest.raises(RuntimeError, match="r1.yaml: as_token: the same as_token is used by .*r0.yaml"):
            start_server(data_dir, "sqlite", {"app_service_config_files": paths})
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
