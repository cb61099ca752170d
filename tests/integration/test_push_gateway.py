"""Push gateway delivery and GET /notifications against a real uzel, with a push gateway on loopback.

The gateway is a small HTTP server in this process (:class:`Gateway`) that speaks the push
gateway side of push-gateway-api.md: it takes ``POST /_matrix/push/v1/notify``, records the
request and answers ``{"rejected": [...]}`` or an error status chosen by the test. Sygnal, the
reference gateway, is not used: it is not installable here (``pip install matrix-sygnal`` finds no
distribution in this environment's package indexes), and it could only answer for app IDs
backed by APNs/FCM/WebPush pushkins, which need those external services; every other app ID it
simply rejects.

Covered (client-server-api/modules/push.md, push_notifier.yaml, notifications.yaml): the notify
payload field by field, ``event_id_only``, highlight → prio high, counts-only badge updates after
a read receipt, retry with exponential backoff while the gateway fails, ``rejected`` pushkeys
removing the pusher, no loss and no duplicates across a restart, GET /notifications paging,
``only=highlight`` and ``read``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests

from tests.integration.harness import ENGINES, REPO_ROOT, START_TIMEOUT_S, api, register_user, start_server, \
    stop_server

C = "/_matrix/client/v3"
NOTIFY_PATH = "/_matrix/push/v1/notify"
# Push gateway URLs are subject to ip_range_blacklist, which covers loopback by default.
OVERRIDES = {"ip_range_whitelist": ["127.0.0.1/32"]}
_counter = [0]


# --- the gateway stand-in -----------------------------------------------------------------------

class Gateway:
    """Records every /notify request; ``fail_next`` answers that many requests with ``fail_status``;
    pushkeys in ``reject`` are returned as rejected."""

    def __init__(self):
        self.requests: list[tuple[float, str, dict]] = []
        self.reject: set[str] = set()
        self.fail_next = 0
        self.fail_status = 503
        self.down = False  # answer every request with fail_status
        self.lock = threading.RLock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with gateway.lock:
                    gateway.requests.append((time.monotonic(), self.path, body))
                    failing = gateway.down or gateway.fail_next > 0
                    if gateway.fail_next > 0:
                        gateway.fail_next -= 1
                    devices = (body or {}).get("notification", {}).get("devices") or []
                    rejected = [d.get("pushkey") for d in devices if d.get("pushkey") in gateway.reject]
                if failing:
                    status, answer = gateway.fail_status, {"error": "gateway trouble"}
                elif self.path != NOTIFY_PATH:
                    status, answer = 404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}
                else:
                    status, answer = 200, {"rejected": rejected}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{NOTIFY_PATH}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def for_pushkey(self, pushkey: str) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, b["notification"]) for t, _, b in self.requests
                    if b and any(d.get("pushkey") == pushkey for d in b["notification"].get("devices", []))]

    def events_for(self, pushkey: str) -> list[str]:
        return [n["event_id"] for _, n in self.for_pushkey(pushkey) if "event_id" in n]


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- server with restart --------------------------------------------------------------------------

class Running:
    def __init__(self, engine: str):
        self.data_dir = tempfile.mkdtemp(prefix="uzel-push-")
        self.server, self.proc = start_server(self.data_dir, engine, OVERRIDES)

    @property
    def base(self) -> str:
        return self.server.base_url

    def restart(self) -> None:
        """Stop uzel (SIGTERM) and start it again on the same config, database and port."""
        stop_server(self.proc)
        with open(self.server.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config",
                                          self.server.config_path], cwd=REPO_ROOT, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.server.log()[-4000:]
            try:
                if requests.get(self.base + "/_matrix/client/versions", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("uzel did not come back")

    def close(self) -> None:
        stop_server(self.proc)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module", params=list(ENGINES))
def hs(request):
    running = Running(request.param)
    yield running
    running.close()


@pytest.fixture(scope="module")
def gateway():
    g = Gateway()
    yield g
    g.close()


# --- client helpers -------------------------------------------------------------------------------

def q(s: str) -> str:
    return quote(s, safe="")


def call(hs, method, path, token, body=None, **params):
    return api(hs.base, method, C + path, token, body, params=params or None)


def user(hs, name: str, displayname: str | None = None):
    _counter[0] += 1
    uid, token, device = register_user(hs.base, f"{name}{_counter[0]}_{os.getpid()}")
    if displayname:
        status, body = call(hs, "PUT", f"/profile/{q(uid)}/displayname", token, {"displayname": displayname})
        assert status == 200, body
    return uid, token, device


def new_room(hs, owner, members=(), **body) -> str:
    status, resp = call(hs, "POST", "/createRoom", owner[1], {"preset": "public_chat", **body})
    assert status == 200, resp
    for m in members:
        status, resp2 = call(hs, "POST", f"/rooms/{q(resp['room_id'])}/join", m[1], {})
        assert status == 200, resp2
    return resp["room_id"]


def send(hs, who, room_id, body="hello", **content) -> str:
    _counter[0] += 1
    status, resp = call(hs, "PUT", f"/rooms/{q(room_id)}/send/m.room.message/t{_counter[0]}", who[1],
                        {"msgtype": "m.text", "body": body, **content})
    assert status == 200, resp
    return resp["event_id"]


def set_pusher(hs, who, gateway, pushkey: str, **data) -> dict:
    body = {"kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "Example",
            "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url, **data}}
    status, resp = call(hs, "POST", "/pushers/set", who[1], body)
    assert status == 200, resp
    return body


def pushkey() -> str:
    _counter[0] += 1
    return f"pk-{_counter[0]}-{time.monotonic_ns()}"


# --- payload --------------------------------------------------------------------------------------

def test_message_is_pushed_with_every_payload_field(hs, gateway):
    alice, bob, carol = user(hs, "alice", "Alice"), user(hs, "bob", "Bob"), user(hs, "carol")
    _counter[0] += 1
    alias_local = f"pushroom{_counter[0]}"
    room = new_room(hs, alice, [bob, carol], name="Push Room", room_alias_name=alias_local)
    key = pushkey()
    before = int(time.time())
    set_pusher(hs, bob, gateway, key, custom={"x": 1})
    event_id = send(hs, alice, room, "hello bob's phone")

    wait_until(lambda: gateway.events_for(key), what="the push")
    (t, n), = gateway.for_pushkey(key)
    assert n["event_id"] == event_id
    assert n["room_id"] == room
    assert n["type"] == "m.room.message"
    assert n["sender"] == alice[0]
    assert n["sender_display_name"] == "Alice"
    assert n["room_name"] == "Push Room"
    assert n["room_alias"] == f"#{alias_local}:{hs.server.server_name}"
    assert n["prio"] == "low"  # .m.rule.message in a 3-member room: notify, no sound
    assert n["content"] == {"msgtype": "m.text", "body": "hello bob's phone"}
    assert n["counts"] == {"unread": 1}
    assert "user_is_target" not in n
    (device,) = n["devices"]
    assert device["app_id"] == "org.example.app"
    assert device["pushkey"] == key
    assert before - 5 <= device["pushkey_ts"] <= time.time() + 5  # seconds, not milliseconds
    assert device["data"] == {"custom": {"x": 1}}  # data minus url
    assert device["tweaks"] == {}
    with gateway.lock:
        assert all(path == NOTIFY_PATH for _, path, _ in gateway.requests)


def test_own_messages_are_not_pushed(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    key = pushkey()
    set_pusher(hs, bob, gateway, key)
    send(hs, bob, room, "my own words")
    marker = send(hs, alice, room, "after")
    wait_until(lambda: gateway.events_for(key), what="the push")
    assert gateway.events_for(key) == [marker]


def test_mention_is_pushed_high_priority_with_highlight_tweak(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    key = pushkey()
    set_pusher(hs, bob, gateway, key)
    event_id = send(hs, alice, room, "ping", **{"m.mentions": {"user_ids": [bob[0]]}})
    wait_until(lambda: gateway.events_for(key), what="the push")
    (_, n), = gateway.for_pushkey(key)
    assert n["event_id"] == event_id
    assert n["prio"] == "high"
    assert n["devices"][0]["tweaks"] == {"highlight": True, "sound": "default"}


def test_event_id_only_format_sends_ids_counts_and_devices(hs, gateway):
    alice, bob, carol = user(hs, "alice", "Alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol], name="Secret")
    key = pushkey()
    set_pusher(hs, bob, gateway, key, format="event_id_only")
    event_id = send(hs, alice, room, "not for the push provider")
    wait_until(lambda: gateway.events_for(key), what="the push")
    (_, n), = gateway.for_pushkey(key)
    assert n["event_id"] == event_id and n["room_id"] == room
    assert n["counts"] == {"unread": 1}
    assert n["devices"][0]["data"] == {"format": "event_id_only"}
    for field in ("content", "sender", "sender_display_name", "room_name", "type"):
        assert field not in n


def test_invite_is_pushed_with_user_is_target(hs, gateway):
    alice, dave = user(hs, "alice"), user(hs, "dave")
    room = new_room(hs, alice)
    key = pushkey()
    set_pusher(hs, dave, gateway, key)
    status, resp = call(hs, "POST", f"/rooms/{q(room)}/invite", alice[1], {"user_id": dave[0]})
    assert status == 200, resp
    wait_until(lambda: gateway.for_pushkey(key), what="the invite push")
    (_, n), = gateway.for_pushkey(key)
    assert n["type"] == "m.room.member" and n["content"]["membership"] == "invite"
    assert n["user_is_target"] is True


def test_read_receipt_sends_counts_only_badge_update(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    key = pushkey()
    set_pusher(hs, bob, gateway, key)
    send(hs, alice, room, "one")
    last = send(hs, alice, room, "two")
    wait_until(lambda: len(gateway.events_for(key)) == 2, what="two pushes")
    # counts are the unread total when the push is sent: the first push may already see both.
    first, second = [n["counts"] for _, n in gateway.for_pushkey(key)]
    assert first in ({"unread": 1}, {"unread": 2}) and second == {"unread": 2}
    status, resp = call(hs, "POST", f"/rooms/{q(room)}/receipt/m.read/{q(last)}", bob[1], {})
    assert status == 200, resp
    wait_until(lambda: len(gateway.for_pushkey(key)) == 3, what="the badge update")
    _, badge = gateway.for_pushkey(key)[2]
    assert badge["counts"] == {"unread": 0}
    assert "event_id" not in badge and "room_id" not in badge
    assert badge["devices"][0]["pushkey"] == key


# --- failures -------------------------------------------------------------------------------------

def test_failing_gateway_is_retried_with_exponential_backoff(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    key = pushkey()
    set_pusher(hs, bob, gateway, key)
    with gateway.lock:
        gateway.fail_next = 2
    event_id = send(hs, alice, room, "eventually")
    wait_until(lambda: len(gateway.for_pushkey(key)) >= 3, timeout=20, what="two retries")
    time.sleep(0.3)
    attempts = gateway.for_pushkey(key)
    assert [n["event_id"] for _, n in attempts] == [event_id] * 3
    gaps = [attempts[i + 1][0] - attempts[i][0] for i in range(2)]
    assert 0.9 <= gaps[0] < 2.5, gaps  # 1 s, then 2 s (upper bounds leave room for a busy machine)
    assert 1.9 <= gaps[1] < 5.0 and gaps[1] > 1.4 * gaps[0], gaps


def test_rejected_pushkey_removes_the_pusher(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    key = pushkey()
    set_pusher(hs, bob, gateway, key)
    with gateway.lock:
        gateway.reject.add(key)
    send(hs, alice, room, "to an expired token")

    def gone():
        status, body = call(hs, "GET", "/pushers", bob[1])
        return status == 200 and not [p for p in body["pushers"] if p["pushkey"] == key]
    wait_until(gone, what="the pusher to be removed")
    assert len(gateway.for_pushkey(key)) == 1
    send(hs, alice, room, "nobody hears this")
    time.sleep(1.0)
    assert len(gateway.for_pushkey(key)) == 1


def test_restart_delivers_pending_pushes_once_each(hs, gateway):
    """The gateway fails while two messages wait; uzel restarts; once the gateway is back both
    arrive exactly once, in order, and the one delivered before the failure is not repeated."""
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    key = pushkey()
    set_pusher(hs, bob, gateway, key)
    first = send(hs, alice, room, "before")
    wait_until(lambda: gateway.events_for(key) == [first], what="the first push")
    with gateway.lock:
        gateway.down = True
    second = send(hs, alice, room, "while down 1")
    third = send(hs, alice, room, "while down 2")
    wait_until(lambda: len(gateway.for_pushkey(key)) >= 2, what="a failed attempt")
    hs.restart()
    with gateway.lock:
        gateway.down = False
        failed = len(gateway.for_pushkey(key)) - 1
    wait_until(lambda: gateway.events_for(key)[1 + failed:] == [second, third], timeout=20,
               what="the pending pushes after the restart")
    time.sleep(1.0)
    delivered = gateway.events_for(key)[1 + failed:]
    assert delivered == [second, third]
    assert set(gateway.events_for(key)[1:1 + failed]) == {second}  # only the failed attempts


# --- GET /notifications ---------------------------------------------------------------------------

def test_notifications_pages_newest_first_and_filters_highlights(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    sent = [send(hs, alice, room, f"m{i}") for i in range(3)]
    mention = send(hs, alice, room, "hey", **{"m.mentions": {"user_ids": [bob[0]]}})
    sent.append(mention)

    status, page1 = call(hs, "GET", "/notifications", bob[1], limit="2")
    assert status == 200, page1
    assert [n["event"]["event_id"] for n in page1["notifications"]] == [sent[3], sent[2]]
    first = page1["notifications"][0]
    assert first["room_id"] == room and first["read"] is False
    assert isinstance(first["ts"], int) and abs(first["ts"] / 1000 - time.time()) < 60
    assert {"set_tweak": "highlight"} in first["actions"] and "notify" in first["actions"]
    assert first["event"]["content"]["body"] == "hey" and first["event"]["sender"] == alice[0]
    status, page2 = call(hs, "GET", "/notifications", bob[1], limit="2", **{"from": page1["next_token"]})
    assert status == 200, page2
    assert [n["event"]["event_id"] for n in page2["notifications"]] == [sent[1], sent[0]]
    status, page3 = call(hs, "GET", "/notifications", bob[1], limit="2", **{"from": page2["next_token"]})
    assert status == 200 and page3["notifications"] == [] and "next_token" not in page3

    status, hl = call(hs, "GET", "/notifications", bob[1], only="highlight")
    assert status == 200 and [n["event"]["event_id"] for n in hl["notifications"]] == [mention]


def test_notifications_show_read_after_a_receipt(hs, gateway):
    alice, bob, carol = user(hs, "alice"), user(hs, "bob"), user(hs, "carol")
    room = new_room(hs, alice, [bob, carol])
    older = send(hs, alice, room, "older")
    status, resp = call(hs, "POST", f"/rooms/{q(room)}/receipt/m.read/{q(older)}", bob[1], {})
    assert status == 200, resp
    newer = send(hs, alice, room, "newer")
    status, body = call(hs, "GET", "/notifications", bob[1])
    assert status == 200
    assert [(n["event"]["event_id"], n["read"]) for n in body["notifications"]] == [(newer, False), (older, True)]


def test_notifications_bad_parameters_are_400(hs):
    bob = user(hs, "bob")
    for params in ({"from": "nope"}, {"limit": "many"}, {"limit": "-1"}):
        status, body = call(hs, "GET", "/notifications", bob[1], **params)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", (params, body)
    status, body = call(hs, "GET", "/notifications", None)
    assert status == 401


def test_pusher_urls_must_be_http_with_the_notify_path(hs, gateway):
    bob = user(hs, "bob")
    base = {"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D",
            "lang": "en"}
    for data in ({"url": "ftp://127.0.0.1/_matrix/push/v1/notify"}, {"url": "http://127.0.0.1/push"},
                 {"url": "not a url"}):
        status, body = call(hs, "POST", "/pushers/set", bob[1], {**base, "data": data})
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", (data, body)
    status, body = call(hs, "POST", "/pushers/set", bob[1], {**base, "data": {}})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
