"""A hostile peer against a real uzel process: forged signatures, wrong content hashes, events
failing auth, oversized and malformed PDUs, unknown rooms, replayed transactions and requests
without or with bad X-Matrix authentication (server-server-api.md "Checks performed on receipt of
a PDU", "Transactions", "Request Authentication").

The peer ("evil", 127.0.0.1:PORT) is a few lines of Python in this process: an HTTP server that
publishes its signing key (and answers 404 to everything else), and signed requests sent with
``requests``. Its user joins a public room of uzel with make_join/send_join first."""
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

from homeserver.protocol import signing
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.harness import REPO_ROOT, api, free_port, register_user, stop_server, write_config
from tests.integration.test_federation_rooms import Node, start

from federation.request_auth import sign_request


def q(s: str) -> str:
    return quote(s, safe="")


class EvilServer:
    """Publishes a key; builds, signs and sends whatever the test wants."""

    def __init__(self):
        self.port = free_port()
        self.name = f"127.0.0.1:{self.port}"
        self.key = signing.generate_signing_key("evil")
        self.other_key = signing.generate_signing_key("evil")  # never published
        #: media_id -> bytes, served only by the deprecated /_matrix/media/v3/download (this peer
        #: predates the federation media endpoints); the paths asked are recorded.
        self.media: dict[str, bytes] = {}
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/_matrix/key/v2/server"):
                    doc = signing.sign_json({
                        "server_name": owner.name, "valid_until_ts": int(time.time() * 1000) + 3600_000,
                        "verify_keys": {signing.key_id(owner.key): {"key": signing.verify_key_base64(owner.key)}},
                        "old_verify_keys": {}}, owner.name, owner.key)
                    self._json(200, doc)
                elif self.path.startswith("/_matrix/federation/v1/media/"):
                    owner.paths.append(self.path)
                    self._json(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
                elif self.path.startswith(f"/_matrix/media/v3/download/{quote(owner.name, safe='')}/"):
                    owner.paths.append(self.path)
                    media_id = self.path.split("?")[0].rsplit("/", 1)[1]
                    if media_id not in owner.media:
                        return self._json(404, {"errcode": "M_NOT_FOUND", "error": "no such media"})
                    data = owner.media[media_id]
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Disposition", "inline; filename=old.txt")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(404, {"errcode": "M_NOT_FOUND", "error": "nothing here"})

            def do_POST(self):
                self._json(404, {"errcode": "M_NOT_FOUND", "error": "nothing here"})

            def _json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")  # HTTP/1.0: no reuse of the connection
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def request(self, node: Node, method: str, path: str, body=None, *, key=None, auth: bool = True,
                origin: str | None = None):
        headers = {}
        if auth:
            headers["Authorization"] = sign_request(method, path, origin or self.name, node.name,
                                                    key or self.key, body)
        resp = requests.request(method, node.base_url + path, headers=headers,
                                data=None if body is None else json.dumps(body), timeout=30)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    def sign_event(self, pdu: dict, rv, key=None) -> dict:
        return signing.sign_event(pdu, rv, self.name, key or self.key)


@pytest.fixture(scope="module")
def setup():
    evil = EvilServer()
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="uzel-hostile-")
    path, _ = write_config(data_dir, port, "sqlite", {
        "ip_range_whitelist": ["127.0.0.0/8"],
        "federation_client_plain_http_destinations": [evil.name],
    }, server_name=f"127.0.0.1:{port}")
    node = Node(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", data_dir, path)
    try:
        start(node)
        alice = register_user(node.base_url, "alice")
        status, resp = api(node.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1],
                           {"preset": "public_chat", "room_version": "10"})
        assert status == 200, resp
        room_id = resp["room_id"]
        rv = KNOWN_ROOM_VERSIONS["10"]
        mallory = f"@mallory:{evil.name}"
        status, resp = evil.request(node, "GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(mallory)}?ver=10")
        assert status == 200, resp
        join = evil.sign_event(dict(resp["event"], origin_server_ts=int(time.time() * 1000)), rv)
        from homeserver.protocol.events import Event
        join_id = Event(join, rv).event_id
        status, resp = evil.request(node, "PUT", f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(join_id)}", join)
        assert status == 200, (resp, node.log()[-3000:])
        state = {(e["type"], e["state_key"]): Event(e, rv).event_id for e in resp["state"]}
        state[("m.room.member", mallory)] = join_id
        ctx = Ctx(node, evil, alice, room_id, rv, mallory, state, join_id, join["depth"])
        yield ctx
    finally:
        if node.proc is not None:
            stop_server(node.proc)
        evil.httpd.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)


class Ctx:
    def __init__(self, node, evil, alice, room_id, rv, mallory, state, last_id, depth):
        self.node, self.evil, self.alice, self.room_id, self.rv = node, evil, alice, room_id, rv
        self.mallory, self.state, self.last_id, self.depth = mallory, state, last_id, depth
        self.txn = 0

    def event(self, etype: str, content: dict, *, state_key=None, sender=None, key=None, prev=None,
              tamper=None) -> dict:
        """A PDU by the evil server citing the latest event it sent."""
        self.depth += 1
        sender = sender or self.mallory
        pdu = {"room_id": self.room_id, "type": etype, "sender": sender, "content": content,
               "origin_server_ts": int(time.time() * 1000), "depth": self.depth,
               "prev_events": prev or [self.last_id],
               "auth_events": sorted(self.state[k] for k in (("m.room.create", ""), ("m.room.power_levels", ""),
                                                             ("m.room.member", sender)) if k in self.state)}
        if state_key is not None:
            pdu["state_key"] = state_key
        signed = self.evil.sign_event(pdu, self.rv, key)
        if tamper:
            tamper(signed)
        return signed

    def event_id(self, pdu: dict) -> str:
        from homeserver.protocol.events import Event
        return Event(pdu, self.rv).event_id

    def send(self, pdus, edus=(), txn_id=None, **kw):
        self.txn += 1
        txn_id = txn_id or f"t{self.txn}_{time.monotonic_ns()}"
        body = {"origin": self.evil.name, "origin_server_ts": int(time.time() * 1000), "pdus": list(pdus),
                "edus": list(edus)}
        return self.evil.request(self.node, "PUT", f"/_matrix/federation/v1/send/{txn_id}", body, **kw)

    def client_event(self, event_id: str):
        return api(self.node.base_url, "GET", f"/_matrix/client/v3/rooms/{q(self.room_id)}/event/{q(event_id)}",
                   self.alice[1])


def test_a_good_message_is_accepted(setup):
    pdu = setup.event("m.room.message", {"msgtype": "m.text", "body": "hi"})
    status, resp = setup.send([pdu])
    eid = setup.event_id(pdu)
    assert status == 200 and resp["pdus"] == {eid: {}}, resp
    setup.last_id = eid
    status, ev = setup.client_event(eid)
    assert status == 200 and ev["content"]["body"] == "hi"


def test_a_forged_signature_is_refused_and_not_stored(setup):
    pdu = setup.event("m.room.message", {"msgtype": "m.text", "body": "forged"}, key=setup.evil.other_key)
    status, resp = setup.send([pdu])
    eid = setup.event_id(pdu)
    assert status == 200 and "error" in resp["pdus"][eid], resp
    assert setup.client_event(eid)[0] == 404


def test_a_message_signed_by_another_server_than_its_senders_is_refused(setup):
    alice = setup.alice[0]
    pdu = setup.event("m.room.message", {"msgtype": "m.text", "body": "in alice's name"}, sender=alice)
    status, resp = setup.send([pdu])
    eid = setup.event_id(pdu)
    assert "error" in resp["pdus"][eid], resp
    assert setup.client_event(eid)[0] == 404


def test_a_wrong_content_hash_means_the_event_is_stored_redacted(setup):
    def tamper(pdu):
        pdu["content"] = {"msgtype": "m.text", "body": "changed after signing"}
    pdu = setup.event("m.room.message", {"msgtype": "m.text", "body": "original"}, tamper=tamper)
    status, resp = setup.send([pdu])
    eid = setup.event_id(pdu)
    assert status == 200 and resp["pdus"][eid] == {}, resp
    setup.last_id = eid
    status, ev = setup.client_event(eid)
    assert status == 200 and ev["content"] == {}, ev


def test_an_event_failing_auth_is_rejected_and_the_room_is_unchanged(setup):
    pdu = setup.event("m.room.power_levels", {"users": {setup.mallory: 100}}, state_key="")
    status, resp = setup.send([pdu])
    eid = setup.event_id(pdu)
    assert "error" in resp["pdus"][eid], resp
    status, pl = api(setup.node.base_url, "GET",
                     f"/_matrix/client/v3/rooms/{q(setup.room_id)}/state/m.room.power_levels/", setup.alice[1])
    assert setup.mallory not in pl.get("users", {})


def test_malformed_oversized_and_unknown_room_pdus_do_not_break_the_transaction(setup):
    good = setup.event("m.room.message", {"msgtype": "m.text", "body": "still fine"})
    big = setup.event("m.room.message", {"msgtype": "m.text", "body": "x" * 70_000})
    no_sender = setup.event("m.room.message", {"body": "?"}, tamper=lambda p: p.pop("sender"))
    other_room = dict(setup.event("m.room.message", {"body": "?"}), room_id="!nowhere:" + setup.evil.name)
    status, resp = setup.send([big, no_sender, other_room, "not an object", good])
    assert status == 200, resp
    assert resp["pdus"][setup.event_id(good)] == {}
    assert "error" in resp["pdus"][setup.event_id(big)]
    assert setup.event_id(other_room) not in resp["pdus"]
    setup.last_id = setup.event_id(good)


def test_unknown_prev_events_that_cannot_be_fetched_are_reported(setup):
    pdu = setup.event("m.room.message", {"body": "orphan"}, prev=["$" + "A" * 43])
    status, resp = setup.send([pdu])
    assert "error" in resp["pdus"][setup.event_id(pdu)], resp


def test_a_replayed_transaction_gets_the_first_answer_and_is_not_processed_again(setup):
    first = setup.event("m.room.message", {"body": "once"})
    status, resp1 = setup.send([first], txn_id="replay1")
    setup.last_id = setup.event_id(first)
    second = setup.event("m.room.message", {"body": "twice"})
    status, resp2 = setup.send([second], txn_id="replay1")
    assert status == 200 and resp2 == resp1
    assert setup.client_event(setup.event_id(second))[0] == 404
    setup.depth -= 1


def test_too_many_pdus_is_a_bad_request(setup):
    status, resp = setup.send([{}] * 51)
    assert status == 400, resp


def test_requests_without_or_with_bad_x_matrix_are_unauthorized(setup):
    status, resp = setup.send([], auth=False)
    assert status == 401 and resp["errcode"] == "M_UNAUTHORIZED"
    status, resp = setup.send([], key=setup.evil.other_key)
    assert status == 401 and resp["errcode"] == "M_UNAUTHORIZED"
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/state_ids/{q(setup.room_id)}"
                                      f"?event_id={q(setup.last_id)}", origin="127.0.0.1:1")
    assert status == 401


def test_reads_need_a_member_in_the_room(setup):
    status, resp = setup.evil.request(setup.node, "GET",
                                      f"/_matrix/federation/v1/state_ids/{q(setup.room_id)}?event_id={q(setup.last_id)}")
    assert status == 200 and setup.state[("m.room.create", "")] in resp["pdu_ids"] + resp["auth_chain_ids"]
    status, resp = api(setup.node.base_url, "POST", "/_matrix/client/v3/createRoom", setup.alice[1],
                       {"preset": "private_chat"})
    private = resp["room_id"]
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/state_ids/{q(private)}?event_id=$x")
    assert status == 403, resp
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/make_join/{q(private)}/"
                                      f"{q(setup.mallory)}?ver=12")
    assert status == 403, resp


def test_timestamp_to_event_over_federation(setup):
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/timestamp_to_event/"
                                      f"{q(setup.room_id)}?ts=0&dir=f")
    assert status == 200 and resp["event_id"] == setup.state[("m.room.create", "")], resp
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/timestamp_to_event/"
                                      f"{q(setup.room_id)}?ts=0&dir=sideways")
    assert status == 400, resp


def test_unknown_room_version_in_an_invite_is_refused(setup):
    pdu = setup.event("m.room.member", {"membership": "invite"}, state_key=setup.alice[0])
    eid = setup.event_id(pdu)
    status, resp = setup.evil.request(setup.node, "PUT", f"/_matrix/federation/v2/invite/{q(setup.room_id)}/{q(eid)}",
                                      {"room_version": "org.example.unknown", "event": pdu, "invite_room_state": []})
    assert status == 400 and resp["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION", resp


def test_a_server_denied_by_the_room_acl_is_refused_everywhere(setup):
    # Runs last: the room denies the peer from here on. Both servers are "127.0.0.1" to an ACL
    # (ports are ignored); the ACL only applies to requests of other servers.
    status, resp = api(setup.node.base_url, "PUT",
                       f"/_matrix/client/v3/rooms/{q(setup.room_id)}/state/m.room.server_acl/", setup.alice[1],
                       {"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": True})
    assert status == 200, resp
    pdu = setup.event("m.room.message", {"body": "am I still here?"})
    status, resp = setup.send([pdu], edus=[{"edu_type": "m.typing", "content": {
        "room_id": setup.room_id, "user_id": setup.mallory, "typing": True}}])
    assert status == 200 and "banned" in resp["pdus"][setup.event_id(pdu)]["error"], resp
    assert setup.client_event(setup.event_id(pdu))[0] == 404
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/state_ids/{q(setup.room_id)}"
                                      f"?event_id={q(setup.last_id)}")
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN", resp
    status, resp = setup.evil.request(setup.node, "GET", f"/_matrix/federation/v1/make_leave/{q(setup.room_id)}/"
                                      f"{q(setup.mallory)}")
    assert status == 403, resp


def test_exchange_third_party_invite_checks_the_partial_event_and_who_asks(setup):
    path = f"/_matrix/federation/v1/exchange_third_party_invite/{q(setup.room_id)}"
    good = {"type": "m.room.member", "room_id": setup.room_id, "sender": setup.alice[0],
            "state_key": f"@victim:{setup.evil.name}",
            "content": {"membership": "invite", "third_party_invite": {
                "display_name": "x", "signed": {"mxid": f"@victim:{setup.evil.name}", "token": "nope",
                                                "signatures": {"id.example": {"ed25519:0": "AAAA"}}}}}}
    for bad, code in ((dict(good, type="m.room.message"), "M_INVALID_PARAM"),
                      (dict(good, room_id="!other:" + setup.node.name), "M_INVALID_PARAM"),
                      ({k: v for k, v in good.items() if k != "content"}, "M_MISSING_PARAM"),
                      (dict(good, content={"membership": "invite"}), "M_MISSING_PARAM"),
                      (dict(good, state_key=setup.alice[0]), "M_INVALID_PARAM")):
        status, resp = setup.evil.request(setup.node, "PUT", path, bad)
        assert status == 400 and resp["errcode"] == code, (bad, resp)
    # an invite of another server's user, and a token without m.room.third_party_invite: 403
    other = dict(good, state_key=setup.alice[0],
                 content={"membership": "invite", "third_party_invite": {
                     "display_name": "x", "signed": dict(good["content"]["third_party_invite"]["signed"],
                                                         mxid=setup.alice[0])}})
    status, resp = setup.evil.request(setup.node, "PUT", path, other)
    assert status == 403, resp
    status, resp = setup.evil.request(setup.node, "PUT", path, good)
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN", resp


def test_invites_into_v12_rooms_need_a_well_formed_signed_invite_room_state(setup):
    """invites-v2.yaml (v1.16): the invite_room_state of a v12 room must hold the room's
    m.room.create as a signed PDU; otherwise 400 M_MISSING_PARAM / M_INVALID_PARAM."""
    from homeserver.protocol.events import Event
    rv = KNOWN_ROOM_VERSIONS["12"]
    evil, alice = setup.evil, setup.alice
    now = int(time.time() * 1000)
    create = evil.sign_event({"type": "m.room.create", "state_key": "", "sender": setup.mallory,
                              "content": {"room_version": "12"}, "origin_server_ts": now, "depth": 1,
                              "prev_events": [], "auth_events": []}, rv)
    create_id = Event(create, rv).event_id
    room_id = "!" + create_id[1:]
    invite = evil.sign_event({"type": "m.room.member", "state_key": alice[0], "sender": setup.mallory,
                              "room_id": room_id, "content": {"membership": "invite"}, "origin_server_ts": now,
                              "depth": 2, "prev_events": [create_id], "auth_events": []}, rv)
    invite_id = Event(invite, rv).event_id
    path = f"/_matrix/federation/v2/invite/{q(room_id)}/{q(invite_id)}"
    body = {"room_version": "12", "event": invite}
    stripped = {"type": "m.room.create", "state_key": "", "sender": setup.mallory, "content": {"room_version": "12"}}
    forged = evil.sign_event(dict(create, signatures={}), rv, key=evil.other_key)
    other_room = evil.sign_event(dict(create, content={"room_version": "12", "x": 1}, signatures={}), rv)
    for state, code in ((None, "M_MISSING_PARAM"), ([], "M_INVALID_PARAM"), ([stripped], "M_INVALID_PARAM"),
                        ([forged], "M_INVALID_PARAM"), ([other_room], "M_INVALID_PARAM")):
        sent = dict(body) if state is None else dict(body, invite_room_state=state)
        status, resp = evil.request(setup.node, "PUT", path, sent)
        assert status == 400 and resp["errcode"] == code, (state, resp)
    status, resp = evil.request(setup.node, "PUT", path, dict(body, invite_room_state=[create]))
    assert status == 200, resp
    status, resp = api(setup.node.base_url, "GET", "/_matrix/client/v3/sync", alice[1], params={"timeout": "0"})
    invite_state = resp["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert any(e["type"] == "m.room.create" for e in invite_state)


def test_media_of_a_server_without_federation_media_endpoints_comes_from_the_legacy_download(setup):
    """404 M_UNRECOGNIZED on /_matrix/federation/v1/media/download: uzel falls back to
    /_matrix/media/v3/download/{server}/{mediaId}?allow_remote=false."""
    evil, alice = setup.evil, setup.alice
    evil.media["oldmedia"] = b"bytes from an old server"
    got = requests.get(f"{setup.node.base_url}/_matrix/client/v1/media/download/{q(evil.name)}/oldmedia",
                       headers={"Authorization": f"Bearer {alice[1]}"}, timeout=30)
    assert got.status_code == 200 and got.content == b"bytes from an old server", \
        (got.status_code, got.text, evil.paths, setup.node.log()[-3000:])
    assert "old.txt" in got.headers.get("Content-Disposition", "")
    legacy = [p for p in evil.paths if p.startswith("/_matrix/media/v3/download/")]
    assert legacy and "allow_remote=false" in legacy[0], evil.paths
    assert any(p.startswith("/_matrix/federation/v1/media/download/oldmedia") for p in evil.paths)
    got = requests.get(f"{setup.node.base_url}/_matrix/client/v1/media/download/{q(evil.name)}/missing",
                       headers={"Authorization": f"Bearer {alice[1]}"}, timeout=30)
    assert got.status_code == 404, got.text
