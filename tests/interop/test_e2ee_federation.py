"""End-to-end encryption across federation with real crypto clients: matrix-nio (vodozemac) on
two homeservers that federate on loopback.

alice (on uzel A) creates an encrypted room and invites bob (on uzel B; or one of them on a real
Synapse, with the fixture of test_synapse_federation.py); bob joins over federation. Each client
finds the other's devices through a remote ``/user/keys/query``, claims a one-time key through a remote ``/user/keys/claim``, and ships the
Megolm room key in an ``m.direct_to_device`` EDU; each decrypts what the other sent. Then bob
logs in a second device: its key upload becomes an ``m.device_list_update`` EDU, alice's /sync
lists bob in ``device_lists.changed``, her key query finds the new device, and the new device
decrypts her next message; when bob logs it out, alice's client learns that the same way
(server-server-api.md "Device Management", "End-to-End Encryption",
"Send-to-device messaging"; end_to_end_encryption.md "Tracking the device list for a user").

Every wait is bounded (WAIT_S); both servers' timelines hold only m.room.encrypted messages."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from urllib.parse import quote

import pytest

from tests.integration.harness import api, free_port, register_user, stop_server, write_config
from tests.integration.test_federation_rooms import Node, start
from tests.interop.test_synapse_federation import servers  # noqa: F401  (the uzel + Synapse fixture)

nio = pytest.importorskip("nio")
pytest.importorskip("vodozemac")

PW = "correct horse battery staple"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
WAIT_S = 30.0
SYNC_MS = 1000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def nodes(request):
    """Two uzels (same database engine) federating over plain HTTP on loopback."""
    pa, pb = free_port(), free_port()
    out: list[Node] = []
    try:
        for port, peer in ((pa, pb), (pb, pa)):
            data_dir = tempfile.mkdtemp(prefix="uzel-e2ee-fed-")
            path, _ = write_config(data_dir, port, request.param, {
                "ip_range_whitelist": ["127.0.0.0/8"],
                "federation_client_plain_http_destinations": [f"127.0.0.1:{peer}"],
            }, server_name=f"127.0.0.1:{port}")
            node = Node(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", data_dir, path)
            out.append(node)
            start(node)
        yield out
    finally:
        for node in out:
            if node.proc is not None:
                stop_server(node.proc)
            if os.environ.get("UZEL_KEEP_TEST_DIRS") != "1":
                shutil.rmtree(node.data_dir, ignore_errors=True)


# --- nio helpers ---------------------------------------------------------------------------------

def _config():
    return nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True, request_timeout=WAIT_S,
                                 max_timeouts=2)


async def _registered_client(base_url: str, name: str, store_dir: str) -> "nio.AsyncClient":
    user_id, token, device_id = register_user(base_url, name, PW)
    os.makedirs(store_dir)
    client = nio.AsyncClient(base_url, user_id, device_id=device_id, store_path=store_dir, config=_config())
    client.restore_login(user_id, device_id, token)
    return client


async def _logged_in_client(base_url: str, user_id: str, store_dir: str) -> "nio.AsyncClient":
    """A new device of an existing user (password login)."""
    os.makedirs(store_dir)
    client = nio.AsyncClient(base_url, user_id, store_path=store_dir, config=_config())
    resp = await client.login(PW, device_name="second device")
    assert isinstance(resp, nio.LoginResponse), resp
    return client


async def _sync(client, timeout_ms: int = 0):
    """One /sync, then what a client does after it: upload keys it lacks on the server, query
    the devices of users whose lists changed (nio's sync_forever does the same)."""
    resp = await client.sync(timeout=timeout_ms, full_state=client.next_batch is None)
    assert isinstance(resp, nio.SyncResponse), resp
    if client.should_upload_keys:
        assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
    if client.should_query_keys:
        queried = await client.keys_query()
        assert isinstance(queried, nio.KeysQueryResponse), queried
        assert not queried.failures, queried.failures
    return resp


async def _sync_until(client, what: str, predicate, timeout: float = WAIT_S):
    """Sync until ``predicate(sync response)`` is true; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await _sync(client, SYNC_MS)
        if predicate(resp):
            return resp
    pytest.fail(f"{client.user_id}/{client.device_id}: timed out waiting for {what}")


async def _receive_text(client, room_id: str, body: str, timeout: float = WAIT_S):
    """Sync until a decrypted m.text ``body`` arrives. The room key travels in a to-device EDU
    that may reach the server after the event: undecryptable events are retried after each
    sync, as real clients do when keys arrive late."""
    deadline = time.monotonic() + timeout
    pending: list = []
    while time.monotonic() < deadline:
        resp = await _sync(client, SYNC_MS)
        room = resp.rooms.join.get(room_id)
        events = list(room.timeline.events) if room else []
        retried = []
        for event in pending:
            try:
                retried.append(client.decrypt_event(event))
            except nio.EncryptionError:
                retried.append(event)
        pending = []
        for event in retried + events:
            if isinstance(event, nio.RoomMessageText) and event.body == body:
                assert event.decrypted, "the message arrived unencrypted"
                return event
            if isinstance(event, nio.MegolmEvent):
                pending.append(event)
    pytest.fail(f"{client.user_id}/{client.device_id} never decrypted {body!r} "
                f"(undecryptable: {[e.event_id for e in pending]})")


async def _send_encrypted(client, room_id: str, body: str) -> None:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                  ignore_unverified_devices=True)
    assert isinstance(resp, nio.RoomSendResponse), resp


def _assert_only_ciphertext(client, room_id: str) -> None:
    """The room's timeline on the client's server, read raw: every message is m.room.encrypted."""
    status, resp = api(client.homeserver, "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages",
                       client.access_token, params={"dir": "b", "limit": "100"})
    assert status == 200, resp
    messages = [e for e in resp["chunk"] if "state_key" not in e]
    assert len(messages) >= 3 and {e["type"] for e in messages} == {"m.room.encrypted"}, messages


def _joined(client, room_id: str, user_id: str):
    def check(_resp) -> bool:
        room = client.rooms.get(room_id)
        return room is not None and user_id in room.users and room.users[user_id].invited is False
    return check


async def _exchange_across_servers(alice_url: str, bob_url: str, tmp: str, tag: str) -> None:
    alice = await _registered_client(alice_url, f"alice{tag}", os.path.join(tmp, "alice"))
    bob = await _registered_client(bob_url, f"bob{tag}", os.path.join(tmp, "bob"))
    bob2 = None
    try:
        for c in (alice, bob):
            await _sync(c)
        created = await alice.room_create(invite=[bob.user_id], initial_state=[ENCRYPTION], name="secret room")
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id

        await _sync_until(bob, "the invite over federation", lambda r: room_id in r.rooms.invite)
        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        await _sync_until(bob, "the joined room", lambda r: room_id in bob.rooms and bob.rooms[room_id].encrypted)
        await _sync_until(alice, "bob's join", _joined(alice, room_id, bob.user_id))

        # alice → bob: remote /user/keys/query and /user/keys/claim from A, the room key in an
        # m.direct_to_device EDU to B.
        await _send_encrypted(alice, room_id, "hello bob, across servers")
        got = await _receive_text(bob, room_id, "hello bob, across servers")
        assert got.sender == alice.user_id

        # bob → alice: the same from B to A.
        await _send_encrypted(bob, room_id, "hello alice, also across")
        got = await _receive_text(alice, room_id, "hello alice, also across")
        assert got.sender == bob.user_id

        # bob's second device: its keys reach A as an m.device_list_update; alice's /sync lists
        # bob as changed and her query (to B) returns the new device.
        bob2 = await _logged_in_client(bob_url, bob.user_id, os.path.join(tmp, "bob2"))
        assert bob2.device_id != bob.device_id
        await _sync_until(bob2, "the room on the new device", lambda r: room_id in bob2.rooms)
        await _sync_until(alice, "bob in device_lists.changed", lambda r: bob.user_id in r.device_list.changed)
        # _sync queried bob's keys after that sync (to B, over federation).
        assert bob2.device_id in {d.id for d in alice.device_store.active_user_devices(bob.user_id)}

        # Share the current Megolm session with the device it lacks (what Element does), then send.
        shared = await alice.share_group_session(room_id, ignore_unverified_devices=True)
        assert isinstance(shared, nio.ShareGroupSessionResponse), shared
        await _send_encrypted(alice, room_id, "hello both of bob's devices")
        for device in (bob2, bob):
            got = await _receive_text(device, room_id, "hello both of bob's devices")
            assert got.sender == alice.user_id

        # bob logs the second device out: its deletion reaches A the same way, and alice's
        # client drops the device.
        assert isinstance(await bob2.logout(), nio.LogoutResponse)
        await _sync_until(alice, "bob's device list change after the logout",
                          lambda r: bob2.device_id not in {d.id for d in alice.device_store.active_user_devices(
                              bob.user_id)})
        assert bob.device_id in {d.id for d in alice.device_store.active_user_devices(bob.user_id)}
        for c in (alice, bob):
            _assert_only_ciphertext(c, room_id)
    finally:
        for c in (alice, bob, bob2):
            if c is not None:
                await c.close()


def test_nio_clients_on_two_uzels_exchange_encrypted_messages_and_a_new_device_gets_the_keys(nodes):
    a, b = nodes
    tmp = tempfile.mkdtemp(prefix="uzel-e2ee-nio-")
    try:
        asyncio.run(asyncio.wait_for(_exchange_across_servers(a.base_url, b.base_url, tmp, "u"), 4 * WAIT_S))
    except BaseException as e:
        logs = "\n".join(f"--- {n.name}\n{n.log()[-4000:]}" for n in nodes)
        raise AssertionError(f"{e!r}\n{logs}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("alice_on", ["uzel", "synapse"])
def test_nio_clients_on_uzel_and_synapse_exchange_encrypted_messages_and_a_new_device_gets_the_keys(
        servers, alice_on):  # noqa: F811
    uzel, synapse = servers
    alice_server, bob_server = (uzel, synapse) if alice_on == "uzel" else (synapse, uzel)
    tmp = tempfile.mkdtemp(prefix="uzel-e2ee-syn-")
    try:
        asyncio.run(asyncio.wait_for(
            _exchange_across_servers(alice_server.base_url, bob_server.base_url, tmp, alice_on[0]), 4 * WAIT_S))
    except BaseException as e:
        raise AssertionError(f"{e!r}\n--- uzel\n{uzel.log()[-5000:]}\n--- synapse\n{synapse.log()[-5000:]}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
