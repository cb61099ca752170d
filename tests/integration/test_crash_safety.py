"""An acknowledged write survives a crash: each write gets its 2xx, the server is killed with
SIGKILL at once (no shutdown code runs), started again on the same database, and the data is
there. Transaction IDs stay idempotent across the restart (client-server-api "Transaction
identifiers": the same txnId from the same device returns the same event_id). Both engines.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid

import pytest
import requests
from signedjson.key import generate_signing_key
from unpaddedbase64 import encode_base64

from homeserver.protocol.signing import sign_json, verify_key_base64
from tests.integration.harness import (ENGINES, api, kill_and_restart, register_user, start_server,
                                       stop_server)

V3 = "/_matrix/client/v3"


class CrashableServer:
    """A running uzel that a test can crash and restart on the same database."""

    def __init__(self, engine: str):
        self.data_dir = tempfile.mkdtemp(prefix="uzel-crash-")
        self.server, self.proc = start_server(self.data_dir, engine, {"federation_domain_whitelist": ["test.local"]})
        self.base = self.server.base_url

    def crash_and_restart(self) -> None:
        old_pid = self.proc.pid
        self.proc = kill_and_restart(self.server, self.proc)
        assert self.proc.pid != old_pid

    def close(self) -> None:
        stop_server(self.proc)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module", params=list(ENGINES))
def uzel(request):
    srv = CrashableServer(request.param)
    yield srv
    srv.close()


def _user(uzel, device_id: str | None = None) -> tuple[str, str, str]:
    return register_user(uzel.base, "crash" + uuid.uuid4().hex[:10], device_id=device_id)


def _room(uzel, token: str) -> str:
    status, body = api(uzel.base, "POST", V3 + "/createRoom", token, json={"preset": "public_chat"})
    assert status == 200, body
    return body["room_id"]


def test_a_sent_message_survives_kill_9_and_its_txn_id_stays_idempotent(uzel):
    _, token, _ = _user(uzel)
    room = _room(uzel, token)
    path = f"{V3}/rooms/{room}/send/m.room.message/txn-crash-1"
    content = {"msgtype": "m.text", "body": "survive the crash"}
    status, sent = api(uzel.base, "PUT", path, token, json=content)
    assert status == 200, sent
    uzel.crash_and_restart()
    status, event = api(uzel.base, "GET", f"{V3}/rooms/{room}/event/{sent['event_id']}", token)
    assert status == 200, event
    assert event["content"] == content
    status, again = api(uzel.base, "PUT", path, token, json=content)
    assert (status, again) == (200, {"event_id": sent["event_id"]})
    status, msgs = api(uzel.base, "GET", f"{V3}/rooms/{room}/messages", token, params={"dir": "b", "limit": "5"})
    bodies = [e["content"].get("body") for e in msgs["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["survive the crash"]


def test_every_acknowledged_send_of_a_burst_survives_a_kill_9_mid_burst(uzel):
    """Sends run on two threads; the server is killed while they are in flight. Every send that
    got its 200 before the kill is there after the restart (unacknowledged ones may or may not be)."""
    _, token, _ = _user(uzel)
    room = _room(uzel, token)
    acked: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        session = requests.Session()
        for i in range(10_000):
            if stop.is_set():
                return
            txn = f"burst-{worker}-{i}"
            try:
                resp = session.put(f"{uzel.base}{V3}/rooms/{room}/send/m.room.message/{txn}",
                                   json={"msgtype": "m.text", "body": txn},
                                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
            except requests.RequestException:
                return
            if resp.status_code == 200:
                with lock:
                    acked[txn] = resp.json()["event_id"]

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    with lock:
        before_kill = dict(acked)  # everything acknowledged up to this instant
    uzel.crash_and_restart()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(before_kill) >= 10
    for txn, event_id in before_kill.items():
        status, event = api(uzel.base, "GET", f"{V3}/rooms/{room}/event/{event_id}", token)
        assert status == 200 and event["content"]["body"] == txn, (txn, status, event)


def test_a_state_change_survives_kill_9(uzel):
    _, token, _ = _user(uzel)
    room = _room(uzel, token)
    status, sent = api(uzel.base, "PUT", f"{V3}/rooms/{room}/state/m.room.topic/", token,
                       json={"topic": "crash-proof topic"})
    assert status == 200, sent
    uzel.crash_and_restart()
    status, topic = api(uzel.base, "GET", f"{V3}/rooms/{room}/state/m.room.topic/", token)
    assert (status, topic) == (200, {"topic": "crash-proof topic"})
    status, state = api(uzel.base, "GET", f"{V3}/rooms/{room}/state", token)
    assert sent["event_id"] in {e["event_id"] for e in state}


def test_account_data_survives_kill_9(uzel):
    user_id, token, _ = _user(uzel)
    room = _room(uzel, token)
    status, _ = api(uzel.base, "PUT", f"{V3}/user/{user_id}/account_data/org.example.crash", token,
                    json={"global": 1})
    assert status == 200
    status, _ = api(uzel.base, "PUT", f"{V3}/user/{user_id}/rooms/{room}/account_data/org.example.crash", token,
                    json={"room": 2})
    assert status == 200
    uzel.crash_and_restart()
    assert api(uzel.base, "GET", f"{V3}/user/{user_id}/account_data/org.example.crash", token) == (200, {"global": 1})
    assert api(uzel.base, "GET", f"{V3}/user/{user_id}/rooms/{room}/account_data/org.example.crash", token) \
        == (200, {"room": 2})


def test_a_to_device_message_survives_kill_9_and_its_txn_id_stays_idempotent(uzel):
    _, alice_token, _ = _user(uzel)
    bob_id, bob_token, bob_device = _user(uzel, device_id="BOBDEVICE")
    body = {"messages": {bob_id: {bob_device: {"secret": "crash"}}}}
    path = f"{V3}/sendToDevice/org.example.crash/txn-crash-2"
    status, resp = api(uzel.base, "PUT", path, alice_token, json=body)
    assert (status, resp) == (200, {})
    uzel.crash_and_restart()
    status, resp = api(uzel.base, "PUT", path, alice_token, json=body)  # retransmission: not delivered twice
    assert status == 200
    status, sync = api(uzel.base, "GET", f"{V3}/sync", bob_token, params={"timeout": "0"})
    assert status == 200, sync
    events = [e for e in sync.get("to_device", {}).get("events", []) if e["type"] == "org.example.crash"]
    assert [e["content"] for e in events] == [{"secret": "crash"}]


def test_uploaded_media_survives_kill_9(uzel):
    _, token, _ = _user(uzel)
    data = os.urandom(64 * 1024)
    status, up = api(uzel.base, "POST", "/_matrix/media/v3/upload", token, data=data,
                     headers={"Content-Type": "application/octet-stream"}, params={"filename": "crash.bin"})
    assert status == 200, up
    uzel.crash_and_restart()
    server_name, media_id = up["content_uri"][len("mxc://"):].split("/")
    resp = requests.get(f"{uzel.base}/_matrix/client/v1/media/download/{server_name}/{media_id}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert resp.status_code == 200
    assert resp.content == data


def test_uploaded_device_and_one_time_keys_survive_kill_9(uzel):
    user_id, token, device_id = _user(uzel)
    key = generate_signing_key(device_id)
    device_keys = sign_json({"user_id": user_id, "device_id": device_id,
                             "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                             "keys": {f"ed25519:{device_id}": verify_key_base64(key),
                                      f"curve25519:{device_id}": encode_base64(os.urandom(32))}}, user_id, key)
    otks = {f"signed_curve25519:CRASH{i}": sign_json({"key": encode_base64(os.urandom(32))}, user_id, key)
            for i in range(3)}
    status, resp = api(uzel.base, "POST", f"{V3}/keys/upload", token,
                       json={"device_keys": device_keys, "one_time_keys": otks})
    assert (status, resp) == (200, {"one_time_key_counts": {"signed_curve25519": 3}})
    uzel.crash_and_restart()
    status, query = api(uzel.base, "POST", f"{V3}/keys/query", token, json={"device_keys": {user_id: []}})
    assert status == 200, query
    stored = query["device_keys"][user_id][device_id]
    assert {k: v for k, v in stored.items() if k != "unsigned"} == device_keys
    assert api(uzel.base, "POST", f"{V3}/keys/upload", token, json={}) == \
        (200, {"one_time_key_counts": {"signed_curve25519": 3}})


def test_server_log_has_no_traceback_after_the_crashes(uzel):
    log = uzel.server.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 1000:log.index("Traceback") + 3000]
