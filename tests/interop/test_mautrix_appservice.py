"""mautrix-python's appservice framework (PyPI ``mautrix``) drives uzel as a bridge would: its
AppService class listens on a loopback port, registers ghosts, answers alias queries by creating
rooms, receives user messages and ephemeral events through transactions and replies as ghosts.

The bridge runs on its own asyncio loop in a thread; the test's "human" talks to uzel over HTTP.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import threading
import time
from urllib.parse import quote

import pytest
import yaml

pytest.importorskip("mautrix")
pytestmark = pytest.mark.filterwarnings("ignore:loop argument is deprecated:DeprecationWarning")

from mautrix.appservice import AppService  # noqa: E402
from mautrix.appservice.state_store import ASStateStore  # noqa: E402
from mautrix.client.state_store.memory import MemoryStateStore  # noqa: E402
from mautrix.types import EventType, RoomAlias, RoomCreatePreset  # noqa: E402

from tests.integration.harness import (SERVER_NAME, api, free_port, register_user, start_server,  # noqa: E402
                                       stop_server)

V3 = "/_matrix/client/v3"
AS_TOKEN = "mautrix-as-token"
HS_TOKEN = "mautrix-hs-token"
_n = itertools.count()


class MemASStateStore(MemoryStateStore, ASStateStore):
    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


def q(s: str) -> str:
    return quote(s, safe="")


def ok(result):
    status, body = result
    assert status == 200, body
    return body


class Bridge:
    """A mautrix AppService on a background event loop, recording what uzel pushes."""

    def __init__(self, hs_url: str, port: int):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = port
        self.events: list = []
        self.ephemeral: list = []
        self.created_rooms: dict[str, str] = {}
        self.appservice = self.call(self._make(hs_url))

    async def _make(self, hs_url: str) -> AppService:
        appservice = AppService(server=hs_url, domain=SERVER_NAME, as_token=AS_TOKEN, hs_token=HS_TOKEN,
                                bot_localpart="_mx_bot", id="mautrix", state_store=MemASStateStore(),
                                ephemeral_events=True, query_alias=self._query_alias)

        @appservice.matrix_event_handler
        async def on_event(event):
            if event.type in (EventType.TYPING, EventType.RECEIPT, EventType.PRESENCE):
                self.ephemeral.append(event)
            else:
                self.events.append(event)

        await appservice.start(host="127.0.0.1", port=self.port)
        return appservice

    async def _query_alias(self, alias: RoomAlias):
        """The alias query: create the room it names (as the bridge bot), then say so (200)."""
        localpart = alias[1:].split(":")[0]
        room_id = await self.appservice.intent.create_room(alias_localpart=localpart, name=f"Bridged {localpart}",
                                                           preset=RoomCreatePreset.PUBLIC)
        self.created_rooms[alias] = room_id
        return {"room_id": room_id}  # mautrix answers 404 for a falsy result, so say something

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "an event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"bridge never saw {what}; events: {self.events!r} ephemeral: {self.ephemeral!r}")

    def stop(self) -> None:
        try:
            self.call(self.appservice.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def setup():
    data_dir = tempfile.mkdtemp(prefix="uzel-mautrix-")
    as_port = free_port()
    reg = {"id": "mautrix", "url": f"http://127.0.0.1:{as_port}", "as_token": AS_TOKEN, "hs_token": HS_TOKEN,
           "sender_localpart": "_mx_bot", "rate_limited": False, "receive_ephemeral": True,
           "de.sorunome.msc2409.push_ephemeral": True,
           "namespaces": {"users": [{"exclusive": True, "regex": f"@_mx_.*:{SERVER_NAME}"}],
                          "aliases": [{"exclusive": True, "regex": f"#_mx_.*:{SERVER_NAME}"}]}}
    reg_path = os.path.join(data_dir, "mautrix.yaml")
    with open(reg_path, "w") as f:
        yaml.safe_dump(reg, f)
    server, proc = start_server(data_dir, "sqlite", {"app_service_config_files": [reg_path]})
    bridge = Bridge(server.base_url, as_port)
    try:
        yield server, bridge
    finally:
        bridge.stop()
        stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_bridge_pings_the_homeserver(setup):
    _, bridge = setup
    assert bridge.call(bridge.appservice.ping_self("hello")) >= 0


def test_bridge_scenario(setup):
    server, bridge = setup
    base = server.base_url
    alice, token, _ = register_user(base, f"alice{next(_n)}")

    # A user joins a room alias in the bridge's namespace: uzel asks mautrix, which creates it.
    alias = f"#_mx_chan{next(_n)}:{SERVER_NAME}"
    room_id = ok(api(base, "POST", f"{V3}/join/{q(alias)}", token, {}))["room_id"]
    assert bridge.created_rooms[alias] == room_id

    # A ghost is registered by the framework and joins.
    ghost_id = f"@_mx_ghost{next(_n)}:{SERVER_NAME}"
    ghost = bridge.appservice.intent.user(ghost_id)
    bridge.call(ghost.ensure_registered())
    bridge.call(ghost.set_displayname("Ghost of IRC"))
    bridge.call(ghost.ensure_joined(room_id))
    assert ok(api(base, "GET", f"{V3}/profile/{q(ghost_id)}", token))["displayname"] == "Ghost of IRC"

    # The user's message reaches the bridge through a transaction ...
    sent = ok(api(base, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/m{next(_n)}", token,
                  {"msgtype": "m.text", "body": "hello bridge"}))["event_id"]
    message = bridge.wait_for(lambda: next((e for e in bridge.events if e.event_id == sent), None), what=sent)
    assert message.sender == alice and message.content.body == "hello bridge" and message.room_id == room_id

    # ... and the ghost answers, with the remote network's timestamp.
    reply_id = bridge.call(ghost.send_text(room_id, "echo: hello bridge", timestamp=1_600_000_000_000))
    reply = ok(api(base, "GET", f"{V3}/rooms/{q(room_id)}/event/{q(reply_id)}", token))
    assert (reply["sender"], reply["content"]["body"], reply["origin_server_ts"]) == \
        (ghost_id, "echo: hello bridge", 1_600_000_000_000)
    timeline = ok(api(base, "GET", f"{V3}/rooms/{q(room_id)}/messages", token, params={"dir": "b", "limit": "5"}))
    assert reply_id in [e["event_id"] for e in timeline["chunk"]]

    # Ephemeral events: typing and a read receipt of the user.
    ok(api(base, "PUT", f"{V3}/rooms/{q(room_id)}/typing/{q(alice)}", token, {"typing": True, "timeout": 10000}))
    typing = bridge.wait_for(lambda: [e for e in bridge.ephemeral if e.type == EventType.TYPING
                                      and alice in e.content.user_ids], what="m.typing")
    assert typing[0].room_id == room_id
    ok(api(base, "POST", f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(reply_id)}", token, {}))
    bridge.wait_for(lambda: [e for e in bridge.ephemeral if e.type == EventType.RECEIPT
                             and reply_id in e.content], what="m.receipt")


def test_ghosts_outside_the_namespace_are_refused(setup):
    server, bridge = setup
    from mautrix.errors import MatrixRequestError
    outsider = bridge.appservice.intent.user(f"@not_a_ghost{next(_n)}:{SERVER_NAME}")
    with pytest.raises(MatrixRequestError) as e:
        bridge.call(outsider.ensure_registered())
    assert e.value.errcode == "M_EXCLUSIVE"
