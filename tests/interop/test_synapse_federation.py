"""uzel federating with a real Synapse (installed from PyPI into its own venv on first use, see
bench/servers.py ``ensure_synapse_venv``): both on loopback, each with a self-signed TLS federation
listener, certificate checks off (``federation_verify_certificates: false``), loopback allowed
(uzel: ``ip_range_whitelist``; Synapse: an empty ``ip_range_blacklist``), no key servers. Server names are ``127.0.0.1:<federation port>``.

Proves, in both directions: joining a room of the other server (by ID and by alias), messages,
state changes converging, invites (accepted and rejected), leaving, profile lookups, typing and
receipts. This test always runs (CI included); installing Synapse takes a few minutes once."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from urllib.parse import quote

import pytest
import requests
import yaml

from homeserver.cli import write_self_signed_certificate
from tests.integration.harness import api, free_port, register_user, stop_server, write_config
from tests.integration.test_federation_rooms import Node, start

WAIT_S = 60.0


def q(s: str) -> str:
    return quote(s, safe="")


class Synapse:
    def __init__(self, venv: str, workdir: str):
        self.python = os.path.join(venv, "bin", "python")
        self.workdir = workdir
        self.client_port, self.fed_port = free_port(), free_port()
        self.name = f"127.0.0.1:{self.fed_port}"
        self.base_url = f"http://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen | None = None

    def log(self) -> str:
        try:
            with open(os.path.join(self.workdir, "synapse.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self) -> None:
        from bench.servers import SYNAPSE_RATELIMITS
        cert, key = os.path.join(self.workdir, "tls.crt"), os.path.join(self.workdir, "tls.key")
        write_self_signed_certificate(self.name, cert, key)
        log_config = os.path.join(self.workdir, "log.yaml")
        with open(log_config, "w") as f:
            yaml.safe_dump({"version": 1, "formatters": {"p": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                            "handlers": {"f": {"class": "logging.FileHandler", "formatter": "p",
                                               "filename": os.path.join(self.workdir, "synapse.log")}},
                            "root": {"level": "INFO", "handlers": ["f"]}, "disable_existing_loggers": False}, f)
        config = {
            "server_name": self.name,
            "pid_file": os.path.join(self.workdir, "homeserver.pid"),
            "public_baseurl": self.base_url + "/",
            "listeners": [
                {"port": self.client_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                 "resources": [{"names": ["client"], "compress": False}]},
                {"port": self.fed_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
                 "resources": [{"names": ["federation"], "compress": False}]},
            ],
            "tls_certificate_path": cert,
            "tls_private_key_path": key,
            "database": {"name": "sqlite3", "args": {"database": os.path.join(self.workdir, "homeserver.db")}},
            "log_config": log_config,
            "media_store_path": os.path.join(self.workdir, "media"),
            "signing_key_path": os.path.join(self.workdir, "signing.key"),
            "registration_shared_secret": secrets.token_hex(16),
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_verify_certificates": False,
            # Synapse refuses server names that are IP literals in its deny list whatever the allow
            # list says, so the deny list is emptied (0.0.0.0 and :: stay blocked).
            "ip_range_blacklist": [],
            "ip_range_whitelist": ["127.0.0.0/8"],
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "allow_public_rooms_over_federation": True,
            "presence": {"enabled": True},
            "enable_metrics": False,
            "url_preview_enabled": False,
            "bcrypt_rounds": 4,
            **SYNAPSE_RATELIMITS,
        }
        path = os.path.join(self.workdir, "homeserver.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        subprocess.run([self.python, "-m", "synapse.app.homeserver", "-c", path, "--generate-keys"],
                       cwd=self.workdir, check=True, capture_output=True, timeout=300, env=env)
        self.config_path = path
        self.launch()

    def launch(self) -> None:
        """Run the prepared Synapse (again, after a stop) and wait until it answers."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        out = open(os.path.join(self.workdir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([self.python, "-m", "synapse.app.homeserver", "-c", self.config_path],
                                     cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                with open(os.path.join(self.workdir, "stdout.log"), errors="replace") as f:
                    raise RuntimeError("Synapse exited during start-up:\n" + f.read()[-4000:] + self.log()[-4000:])
            try:
                if requests.get(self.base_url + "/_matrix/client/versions", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Synapse did not start:\n" + self.log()[-4000:])
            time.sleep(0.3)


@pytest.fixture(scope="module")
def servers():
    from bench.servers import ensure_synapse_venv
    venv = ensure_synapse_venv()
    tmp = tempfile.mkdtemp(prefix="uzel-synapse-fed-")
    synapse = Synapse(venv, os.path.join(tmp, "synapse"))
    os.makedirs(synapse.workdir)
    uzel_dir = os.path.join(tmp, "uzel")
    os.makedirs(uzel_dir)
    client_port, fed_port = free_port(), free_port()
    uzel_name = f"127.0.0.1:{fed_port}"
    cert, key = os.path.join(uzel_dir, "tls.crt"), os.path.join(uzel_dir, "tls.key")
    write_self_signed_certificate(uzel_name, cert, key)
    path, _ = write_config(uzel_dir, client_port, "sqlite", {
        "listeners": [
            {"port": client_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
             "resources": [{"names": ["client", "media"]}]},
            {"port": fed_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
             "tls_certificate_path": cert, "tls_private_key_path": key,
             "resources": [{"names": ["federation", "keys"]}]},
        ],
        "federation_verify_certificates": False,
        "ip_range_whitelist": ["127.0.0.0/8"],
        "allow_public_rooms_over_federation": True,
    }, server_name=uzel_name)
    uzel = Node(uzel_name, f"http://127.0.0.1:{client_port}", uzel_dir, path)
    try:
        synapse.start()
        start(uzel)
        yield uzel, synapse
    finally:
        if uzel.proc is not None:
            stop_server(uzel.proc)
        if synapse.proc is not None:
            stop_server(synapse.proc)
        if os.environ.get("UZEL_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def users(servers):
    uzel, synapse = servers
    return {"ursula": register_user(uzel.base_url, "ursula"), "sam": register_user(synapse.base_url, "sam"),
            "uma": register_user(uzel.base_url, "uma"), "sid": register_user(synapse.base_url, "sid")}


def wait_for(what, fn, servers, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    uzel, synapse = servers
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n--- uzel\n{uzel.log()[-5000:]}\n"
                         f"--- synapse\n{synapse.log()[-5000:]}")


def send(server, token, room_id, body) -> str:
    status, resp = api(server.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/"
                       f"t{time.monotonic_ns()}", token, {"msgtype": "m.text", "body": body})
    assert status == 200, resp
    return resp["event_id"]


def has_event(server, token, room_id, event_id) -> bool:
    return api(server.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}", token)[0] == 200


def joined_members(server, token, room_id) -> set:
    status, resp = api(server.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members", token)
    return set(resp.get("joined", {})) if status == 200 else set()


def state_ids(server, token, room_id) -> dict:
    status, resp = api(server.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state", token)
    assert status == 200, resp
    return {(e["type"], e["state_key"]): e["event_id"] for e in resp}


def membership(server, token, room_id, user_id):
    status, resp = api(server.base_url, "GET",
                       f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}", token)
    return resp.get("membership") if status == 200 else None


def join(server, token, room, via=None):
    params = {"server_name": via} if via else None
    return api(server.base_url, "POST", f"/_matrix/client/v3/join/{q(room)}", token, {}, params=params, timeout=90)


@pytest.mark.parametrize("room_version", ["10", "11", "12"])
def test_synapse_user_joins_a_uzel_room_and_messages_flow_both_ways(servers, users, room_version):
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    status, resp = api(uzel.base_url, "POST", "/_matrix/client/v3/createRoom", ursula[1],
                       {"preset": "public_chat", "room_version": room_version, "name": f"uzel v{room_version}"})
    assert status == 200, resp
    room_id = resp["room_id"]
    status, resp = join(synapse, sam[1], room_id, uzel.name)
    assert status == 200, (resp, uzel.log()[-4000:], synapse.log()[-6000:])
    wait_for("uzel sees Sam joined", lambda: sam[0] in joined_members(uzel, ursula[1], room_id), servers)
    from_uzel = send(uzel, ursula[1], room_id, "hello Synapse")
    wait_for("Synapse receives uzel's message", lambda: has_event(synapse, sam[1], room_id, from_uzel), servers)
    from_synapse = send(synapse, sam[1], room_id, "hello uzel")
    wait_for("uzel receives Synapse's message", lambda: has_event(uzel, ursula[1], room_id, from_synapse), servers)
    status, resp = api(uzel.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.topic/",
                       ursula[1], {"topic": "converged"})
    assert status == 200
    wait_for("identical state on both sides",
             lambda: state_ids(uzel, ursula[1], room_id) == state_ids(synapse, sam[1], room_id), servers)
    status, resp = api(synapse.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", sam[1], {})
    assert status == 200, resp
    wait_for("uzel sees Sam leave", lambda: sam[0] not in joined_members(uzel, ursula[1], room_id), servers)


@pytest.mark.parametrize("room_version", ["10", "12"])
def test_uzel_user_joins_a_synapse_room_by_alias_and_messages_flow_both_ways(servers, users, room_version):
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    alias_name = f"syn{room_version}"
    status, resp = api(synapse.base_url, "POST", "/_matrix/client/v3/createRoom", sam[1],
                       {"preset": "public_chat", "room_version": room_version, "room_alias_name": alias_name})
    assert status == 200, resp
    room_id = resp["room_id"]
    status, resp = join(uzel, ursula[1], f"#{alias_name}:{synapse.name}")
    assert status == 200 and resp["room_id"] == room_id, (resp, uzel.log()[-6000:])
    wait_for("Synapse sees Ursula joined", lambda: ursula[0] in joined_members(synapse, sam[1], room_id), servers)
    from_synapse = send(synapse, sam[1], room_id, "welcome")
    wait_for("uzel receives Synapse's message", lambda: has_event(uzel, ursula[1], room_id, from_synapse), servers)
    from_uzel = send(uzel, ursula[1], room_id, "thanks")
    wait_for("Synapse receives uzel's message", lambda: has_event(synapse, sam[1], room_id, from_uzel), servers)
    status, _ = api(synapse.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.name/",
                    sam[1], {"name": "renamed on Synapse"})
    assert status == 200
    wait_for("identical state on both sides",
             lambda: state_ids(uzel, ursula[1], room_id) == state_ids(synapse, sam[1], room_id), servers)


def test_invites_both_ways(servers, users):
    uzel, synapse = servers
    uma, sid = users["uma"], users["sid"]
    # uzel invites a Synapse user, who accepts.
    _, resp = api(uzel.base_url, "POST", "/_matrix/client/v3/createRoom", uma[1], {"preset": "private_chat"})
    room_u = resp["room_id"]
    status, resp = api(uzel.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_u)}/invite", uma[1],
                       {"user_id": sid[0]})
    assert status == 200, (resp, uzel.log()[-4000:])

    def sid_invited():
        _, body = api(synapse.base_url, "GET", "/_matrix/client/v3/sync", sid[1], params={"timeout": "0"})
        return room_u in body.get("rooms", {}).get("invite", {})
    wait_for("Synapse shows the invite", sid_invited, servers)
    status, resp = join(synapse, sid[1], room_u)
    assert status == 200, (resp, synapse.log()[-4000:])
    wait_for("uzel sees Sid joined", lambda: sid[0] in joined_members(uzel, uma[1], room_u), servers)

    # Synapse invites a uzel user, who accepts; and another one who rejects.
    _, resp = api(synapse.base_url, "POST", "/_matrix/client/v3/createRoom", sid[1], {"preset": "private_chat"})
    room_s = resp["room_id"]
    for target in (uma[0], users["ursula"][0]):
        status, resp = api(synapse.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_s)}/invite", sid[1],
                           {"user_id": target})
        assert status == 200, (resp, synapse.log()[-4000:], uzel.log()[-3000:])
    status, resp = join(uzel, uma[1], room_s)
    assert status == 200, (resp, uzel.log()[-4000:])
    wait_for("Synapse sees Uma joined", lambda: uma[0] in joined_members(synapse, sid[1], room_s), servers)
    status, resp = api(uzel.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_s)}/leave", users["ursula"][1], {})
    assert status == 200, (resp, uzel.log()[-4000:])
    wait_for("Synapse sees the rejection",
             lambda: membership(synapse, sid[1], room_s, users["ursula"][0]) == "leave", servers)


def test_profiles_typing_and_receipts(servers, users):
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    api(synapse.base_url, "PUT", f"/_matrix/client/v3/profile/{q(sam[0])}/displayname", sam[1], {"displayname": "Sam S."})
    api(uzel.base_url, "PUT", f"/_matrix/client/v3/profile/{q(ursula[0])}/displayname", ursula[1],
        {"displayname": "Ursula U."})
    status, resp = api(uzel.base_url, "GET", f"/_matrix/client/v3/profile/{q(sam[0])}", ursula[1])
    assert status == 200 and resp.get("displayname") == "Sam S.", resp
    status, resp = api(synapse.base_url, "GET", f"/_matrix/client/v3/profile/{q(ursula[0])}", sam[1])
    assert status == 200 and resp.get("displayname") == "Ursula U.", resp

    _, resp = api(uzel.base_url, "POST", "/_matrix/client/v3/createRoom", ursula[1], {"preset": "public_chat"})
    room_id = resp["room_id"]
    assert join(synapse, sam[1], room_id, uzel.name)[0] == 200
    api(synapse.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(sam[0])}", sam[1],
        {"typing": True, "timeout": 30000})

    def ursula_sees_typing():
        _, body = api(uzel.base_url, "GET", "/_matrix/client/v3/sync", ursula[1], params={"timeout": "0"})
        events = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("ephemeral", {}).get("events", [])
        return any(e["type"] == "m.typing" and sam[0] in e["content"].get("user_ids", []) for e in events)
    wait_for("uzel shows Sam typing", ursula_sees_typing, servers)

    event_id = send(uzel, ursula[1], room_id, "please read")
    wait_for("Synapse has the message", lambda: has_event(synapse, sam[1], room_id, event_id), servers)
    api(synapse.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", sam[1], {})

    def ursula_sees_receipt():
        _, body = api(uzel.base_url, "GET", "/_matrix/client/v3/sync", ursula[1], params={"timeout": "0"})
        events = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("ephemeral", {}).get("events", [])
        return any(e["type"] == "m.receipt" and sam[0] in e["content"].get(event_id, {}).get("m.read", {})
                   for e in events)
    wait_for("uzel shows Sam's receipt", ursula_sees_receipt, servers)


def test_media_both_ways(servers, users):
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    for owner, owner_token, reader, reader_token, data in (
            (uzel, ursula[1], synapse, sam[1], b"from uzel"), (synapse, sam[1], uzel, ursula[1], b"from synapse")):
        status, resp = api(owner.base_url, "POST", "/_matrix/media/v3/upload", owner_token, data=data,
                           headers={"Content-Type": "text/plain"})
        assert status == 200, resp
        server_name, media_id = resp["content_uri"][len("mxc://"):].split("/")
        got = requests.get(f"{reader.base_url}/_matrix/client/v1/media/download/{q(server_name)}/{media_id}",
                           headers={"Authorization": f"Bearer {reader_token}"}, timeout=60)
        assert got.status_code == 200 and got.content == data, (got.status_code, got.text[:500])


def test_images_and_thumbnails_both_ways(servers, users):
    """An image uploaded on either server is downloaded and thumbnailed by the other's users
    (thumbnails decoded with Pillow: format and size)."""
    import io

    from PIL import Image
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (30, 160, 90)).save(buf, "PNG")
    data = buf.getvalue()
    for owner, owner_token, reader, reader_token in ((uzel, ursula[1], synapse, sam[1]),
                                                     (synapse, sam[1], uzel, ursula[1])):
        status, resp = api(owner.base_url, "POST", "/_matrix/media/v3/upload", owner_token, data=data,
                           headers={"Content-Type": "image/png"}, params={"filename": "field.png"})
        assert status == 200, resp
        server_name, media_id = resp["content_uri"][len("mxc://"):].split("/")
        base = f"{reader.base_url}/_matrix/client/v1/media"
        auth = {"Authorization": f"Bearer {reader_token}"}
        got = requests.get(f"{base}/download/{q(server_name)}/{media_id}", headers=auth, timeout=60)
        assert got.status_code == 200 and got.content == data, (got.status_code, got.text[:500])
        assert "field.png" in got.headers.get("Content-Disposition", "")
        thumb = requests.get(f"{base}/thumbnail/{q(server_name)}/{media_id}", headers=auth, timeout=60,
                             params={"width": 32, "height": 32, "method": "crop"})
        assert thumb.status_code == 200, thumb.text[:500]
        im = Image.open(io.BytesIO(thumb.content))
        assert im.size == (32, 32) and im.format in ("PNG", "JPEG")


def test_delivery_after_the_other_side_was_down(servers, users):
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    _, resp = api(uzel.base_url, "POST", "/_matrix/client/v3/createRoom", ursula[1], {"preset": "public_chat"})
    room_id = resp["room_id"]
    assert join(synapse, sam[1], room_id, uzel.name)[0] == 200
    wait_for("uzel sees Sam joined", lambda: sam[0] in joined_members(uzel, ursula[1], room_id), servers)

    # Synapse is down while uzel sends: uzel's queue retries until it is back.
    stop_server(synapse.proc)
    sent = [send(uzel, ursula[1], room_id, f"while Synapse is down {i}") for i in range(3)]
    synapse.launch()
    for event_id in sent:
        wait_for("Synapse catches up", lambda: has_event(synapse, sam[1], room_id, event_id), servers, timeout=90)

    # uzel is down while Synapse sends: when uzel is back and talks to Synapse, Synapse sends the
    # newest event and uzel pulls the gap with get_missing_events.
    stop_server(uzel.proc)
    sent = [send(synapse, sam[1], room_id, f"while uzel is down {i}") for i in range(3)]
    time.sleep(1)
    start(uzel)
    send(uzel, ursula[1], room_id, "uzel is back")
    for event_id in sent:
        wait_for("uzel catches up", lambda: has_event(uzel, ursula[1], room_id, event_id), servers, timeout=90)


def fresh_sync(server, token) -> dict:
    """An initial /sync that Synapse answers afresh: it keeps the answer of an identical /sync for
    two minutes (``caches.sync_response_cache_duration``), so each call carries its own filter."""
    import json
    flt = {"account_data": {"not_types": [f"t{time.monotonic_ns()}"]}}
    status, body = api(server.base_url, "GET", "/_matrix/client/v3/sync", token,
                       params={"timeout": "0", "filter": json.dumps(flt)})
    assert status == 200, body
    return body


def _paginate_to_start(server, token, room_id, limit=7) -> list[dict]:
    """Every event /messages returns paging backwards from the end, oldest first."""
    events: list[dict] = []
    params = {"dir": "b", "limit": str(limit)}
    for _ in range(100):
        status, resp = api(server.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages", token,
                           params=params, timeout=90)
        assert status == 200, resp
        events.extend(resp["chunk"])
        if "end" not in resp or not resp["chunk"] and resp.get("end") == params.get("from"):
            return list(reversed(events))
        params["from"] = resp["end"]
    raise AssertionError("pagination did not end")


def test_late_joiners_page_back_through_backfill_both_ways(servers, users):
    """A room with 30 messages on one server, joined late from the other: paging /messages back
    to the start shows all 30 in order (uzel backfilling from Synapse, Synapse from uzel)."""
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    for owner, owner_token, joiner, joiner_token in ((synapse, sam[1], uzel, ursula[1]),
                                                     (uzel, ursula[1], synapse, sam[1])):
        status, resp = api(owner.base_url, "POST", "/_matrix/client/v3/createRoom", owner_token,
                           {"preset": "public_chat", "name": "history"})
        assert status == 200, resp
        room_id = resp["room_id"]
        sent = [send(owner, owner_token, room_id, f"old {i}") for i in range(30)]
        status, resp = join(joiner, joiner_token, room_id, owner.name)
        assert status == 200, (resp, uzel.log()[-4000:])
        events = _paginate_to_start(joiner, joiner_token, room_id)
        bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
        assert [e["event_id"] for e in events if e["type"] == "m.room.message"] == sent, \
            (bodies, uzel.log()[-5000:], synapse.log()[-5000:])
        assert events[0]["type"] == "m.room.create"


def test_presence_both_ways(servers, users):
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    _, resp = api(uzel.base_url, "POST", "/_matrix/client/v3/createRoom", ursula[1], {"preset": "public_chat"})
    room_id = resp["room_id"]
    assert join(synapse, sam[1], room_id, uzel.name)[0] == 200
    wait_for("uzel sees Sam joined", lambda: sam[0] in joined_members(uzel, ursula[1], room_id), servers)

    def status_of(server, token, user_id):
        status, body = api(server.base_url, "GET", f"/_matrix/client/v3/presence/{q(user_id)}/status", token)
        return body if status == 200 else {}
    assert api(synapse.base_url, "PUT", f"/_matrix/client/v3/presence/{q(sam[0])}/status", sam[1],
               {"presence": "online", "status_msg": "on Synapse"})[0] == 200
    wait_for("uzel shows Sam's presence",
             lambda: status_of(uzel, ursula[1], sam[0]).get("status_msg") == "on Synapse", servers)

    def ursula_in_sam_sync():
        body = fresh_sync(synapse, sam[1])
        return any(e["sender"] == ursula[0] and e["content"].get("status_msg") == "on uzel"
                   for e in body.get("presence", {}).get("events", []))
    assert api(uzel.base_url, "PUT", f"/_matrix/client/v3/presence/{q(ursula[0])}/status", ursula[1],
               {"presence": "online", "status_msg": "on uzel"})[0] == 200
    wait_for("Synapse shows Ursula's presence in /sync", ursula_in_sam_sync, servers)


def _knock(server, token, room_id, via):
    return api(server.base_url, "POST", f"/_matrix/client/v3/knock/{q(room_id)}", token, {"reason": "let me in"},
               params={"server_name": via}, timeout=90)


def test_knocks_both_ways(servers, users):
    """A user of each server knocks on a knock room of the other; the room's user sees the knock
    and invites them; they join."""
    uzel, synapse = servers
    ursula, sam = users["ursula"], users["sam"]
    for owner, owner_user, knocker, knocker_user in ((uzel, ursula, synapse, sam), (synapse, sam, uzel, ursula)):
        status, resp = api(owner.base_url, "POST", "/_matrix/client/v3/createRoom", owner_user[1], {
            "preset": "private_chat", "room_version": "10",
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})
        assert status == 200, resp
        room_id = resp["room_id"]
        status, resp = _knock(knocker, knocker_user[1], room_id, owner.name)
        assert status == 200, (resp, uzel.log()[-4000:], synapse.log()[-4000:])
        wait_for("the room's server sees the knock",
                 lambda: membership(owner, owner_user[1], room_id, knocker_user[0]) == "knock", servers)
        status, resp = api(owner.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", owner_user[1],
                           {"user_id": knocker_user[0]})
        assert status == 200, resp

        def knocker_invited():
            return room_id in fresh_sync(knocker, knocker_user[1]).get("rooms", {}).get("invite", {})
        wait_for("the knocker is invited", knocker_invited, servers)
        status, resp = join(knocker, knocker_user[1], room_id, owner.name)
        assert status == 200, (resp, uzel.log()[-4000:], synapse.log()[-4000:])
        wait_for("the knocker joined", lambda: knocker_user[0] in joined_members(owner, owner_user[1], room_id), servers)


def test_restricted_joins_both_ways(servers, users):
    """A room restricted to members of a space: a user of the other server is refused until they
    join the space, then the room's server authorises the join (join_authorised_via_users_server)."""
    uzel, synapse = servers
    uma, sid = users["uma"], users["sid"]
    for owner, owner_user, joiner, joiner_user in ((uzel, uma, synapse, sid), (synapse, sid, uzel, uma)):
        status, resp = api(owner.base_url, "POST", "/_matrix/client/v3/createRoom", owner_user[1],
                           {"preset": "public_chat", "creation_content": {"type": "m.space"}})
        assert status == 200, resp
        space = resp["room_id"]
        status, resp = api(owner.base_url, "POST", "/_matrix/client/v3/createRoom", owner_user[1], {
            "preset": "private_chat", "room_version": "10", "initial_state": [
                {"type": "m.room.join_rules", "state_key": "",
                 "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}]})
        assert status == 200, resp
        restricted = resp["room_id"]
        status, resp = join(joiner, joiner_user[1], restricted, owner.name)
        assert status == 403, resp
        status, resp = join(joiner, joiner_user[1], space, owner.name)
        assert status == 200, resp
        wait_for("the space's server sees the join",
                 lambda: joiner_user[0] in joined_members(owner, owner_user[1], space), servers)
        status, resp = join(joiner, joiner_user[1], restricted, owner.name)
        assert status == 200, (resp, uzel.log()[-4000:], synapse.log()[-4000:])
        wait_for("the room's server sees the join",
                 lambda: joiner_user[0] in joined_members(owner, owner_user[1], restricted), servers)
        status, member = api(owner.base_url, "GET",
                             f"/_matrix/client/v3/rooms/{q(restricted)}/state/m.room.member/{q(joiner_user[0])}",
                             owner_user[1])
        assert status == 200 and member.get("join_authorised_via_users_server") == owner_user[0], member
