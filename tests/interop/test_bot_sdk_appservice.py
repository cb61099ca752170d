"""matrix-bot-sdk (npm) drives uzel as an application service: tests/interop/js/bot-sdk/bridge.cjs
runs the SDK's Appservice on a loopback port and a human user beside it (alias query creating
the room, ghost registration and reply, user messages and ephemeral events through
transactions, ping, network directory, namespace refusal).

The packages install from tests/interop/js/bot-sdk/package-lock.json with ``npm ci`` when
node_modules is missing. The SDK's native E2EE binding is replaced by a stub package (its real
install downloads a library from outside the npm registry); the scenario uses no encryption.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
import yaml

from tests.integration.harness import SERVER_NAME, free_port, start_server, stop_server

BOT_SDK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js", "bot-sdk")
INSTALL_TIMEOUT_S = 400
RUN_TIMEOUT_S = 90


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None or shutil.which("npm") is None:
        _unavailable("node and npm are needed for the matrix-bot-sdk tests")
    if not os.path.isdir(os.path.join(BOT_SDK_DIR, "node_modules", "matrix-bot-sdk")):
        try:
            proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BOT_SDK_DIR, capture_output=True,
                                  text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _unavailable(f"npm ci took more than {INSTALL_TIMEOUT_S}s")
        if proc.returncode != 0:
            _unavailable(f"npm ci failed: {(proc.stderr or proc.stdout)[-2000:]}")
    return exe


def test_bot_sdk_bridge_scenario(node):
    data_dir = tempfile.mkdtemp(prefix="uzel-botsdk-")
    as_port = free_port()
    registration = {
        "id": "botsdk", "url": f"http://127.0.0.1:{as_port}", "as_token": "botsdk-as-token",
        "hs_token": "botsdk-hs-token", "sender_localpart": "_bs_bot", "rate_limited": False,
        "de.sorunome.msc2409.push_ephemeral": True,
        "namespaces": {"users": [{"exclusive": True, "regex": "@_bs_.*"}],
                       "aliases": [{"exclusive": True, "regex": "#_bs_.*"}], "rooms": []},
    }
    reg_path = os.path.join(data_dir, "botsdk.yaml")
    with open(reg_path, "w") as f:
        yaml.safe_dump(registration, f)
    server, proc = start_server(data_dir, "sqlite", {"app_service_config_files": [reg_path]})
    try:
        args = {"homeserverUrl": server.base_url, "serverName": SERVER_NAME, "port": as_port,
                "registration": registration, "timeoutMs": (RUN_TIMEOUT_S - 10) * 1000}
        run = subprocess.run([node, "bridge.cjs", json.dumps(args)], cwd=BOT_SDK_DIR, capture_output=True,
                             text=True, timeout=RUN_TIMEOUT_S)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no result (exit {run.returncode}):\n{run.stderr[-3000:]}"
        result = json.loads(lines[-1])
        assert result["ok"], (f"step {result['failed']!r} failed: {result['error']}\npassed: {result['passed']}\n"
                              f"{run.stderr[-3000:]}\n{server.log()[-3000:]}")
        assert "read receipt arrives as an ephemeral event" in result["passed"]
    finally:
        stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
