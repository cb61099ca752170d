"""End-to-end encryption endpoints over real HTTP: keys upload/query/claim/changes, cross-signing,
signatures, key backup and send-to-device (end_to_end_encryption.md, send_to_device.md). Keys are
real ed25519 keys signed the way clients sign them; bad input must get the spec's error and
leave nothing stored."""
from __future__ import annotations

import itertools
import os

from signedjson.key import generate_signing_key
from unpaddedbase64 import encode_base64

from homeserver.protocol.signing import sign_json, verify_key_base64
from tests.integration.harness import api, db_execute, make_server_fixture, register_user

V3 = "/_matrix/client/v3"
PW = "correct horse battery staple"
ALGS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]

server = make_server_fixture()
_names = (f"e2e{n}" for n in itertools.count())
_key_ids = (f"AAAA{n:04d}" for n in itertools.count())


# --- client-side key material -------------------------------------------------------------------

class Device:
    """A client device: its ed25519 key signs its device keys and one-time keys."""

    def __init__(self, srv, name=None, device_id=None):
        self.srv = srv
        self.name = name or next(_names)
        self.user_id, self.token, self.device_id = register_user(srv.base_url, self.name, PW, device_id=device_id)
        self.key = generate_signing_key(self.device_id)
        self.ed25519 = verify_key_base64(self.key)

    def call(self, method, path, json=None, **kw):
        return api(self.srv.base_url, method, V3 + path, self.token, json, **kw)

    def device_keys(self, **changes) -> dict:
        keys = {"user_id": self.user_id, "device_id": self.device_id, "algorithms": ALGS,
                "keys": {f"ed25519:{self.device_id}": self.ed25519,
                         f"curve25519:{self.device_id}": _random_b64()}}
        keys.update(changes)
        return sign_json(keys, self.user_id, self.key)

    def one_time_keys(self, n=1, *, fallback=False, signer=None) -> dict:
        out = {}
        for _ in range(n):
            key = {"key": _random_b64()}
            if fallback:
                key["fallback"] = True
            out[f"signed_curve25519:{next(_key_ids)}"] = sign_json(key, self.user_id, signer or self.key)
        return out


class CrossSigning:
    """A user's master, self-signing and user-signing keys."""

    def __init__(self, user_id):
        self.user_id = user_id
        self.master, self.master_key = _xs_key(user_id, "master")
        self.ssk, self.ssk_key = _xs_key(user_id, "self_signing", self.master)
        self.usk, self.usk_key = _xs_key(user_id, "user_signing", self.master)

    def body(self, **extra) -> dict:
        return {"master_key": self.master_key, "self_signing_key": self.ssk_key, "user_signing_key": self.usk_key,
                **extra}


def _xs_key(user_id, usage, signer=None):
    sk = generate_signing_key("x")
    sk.version = verify_key_base64(sk)
    obj = {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{sk.version}": sk.version}}
    if signer is not None:
        obj = sign_json(obj, user_id, signer)
    return sk, obj


def _random_b64() -> str:
    return encode_base64(os.urandom(32))


def _strip_sigs(obj):
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _password_auth(user_id, session=None):
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": PW}
    if session:
        auth["session"] = session
    return auth


def _inbox(srv, user_id, device_id):
    return db_execute(srv, "SELECT message_json FROM e2e_device_inbox WHERE user_id = ? AND device_id = ?"
                           " ORDER BY stream_id", (user_id, device_id))


# --- /keys/upload, /keys/query ---------------------------------------------------------------------

def test_uploaded_device_and_one_time_keys_are_counted_and_queryable(server):
    alice, bob = Device(server), Device(server)
    assert alice.call("PUT", f"/devices/{alice.device_id}", {"display_name": "Alice's phone"})[0] == 200
    dk = alice.device_keys()
    status, body = alice.call("POST", "/keys/upload", {"device_keys": dk, "one_time_keys": alice.one_time_keys(3)})
    assert (status, body) == (200, {"one_time_key_counts": {"signed_curve25519": 3}})
    status, body = alice.call("POST", "/keys/upload", {"one_time_keys": alice.one_time_keys(2)})
    assert body == {"one_time_key_counts": {"signed_curve25519": 5}}
    status, body = bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert status == 200 and body["failures"] == {}
    got = body["device_keys"][alice.user_id][alice.device_id]
    assert got["unsigned"] == {"device_display_name": "Alice's phone"}
    assert _strip_sigs(got) == _strip_sigs(dk) and got["signatures"] == dk["signatures"]
    status, body = bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: ["NOPE"], "@ghost:test.local": []}})
    assert body["device_keys"] == {alice.user_id: {}, "@ghost:test.local": {}}


def test_upload_refuses_foreign_or_badly_signed_keys_and_stores_nothing(server):
    alice, bob = Device(server), Device(server)
    bad_sig = alice.device_keys()
    bad_sig["signatures"][alice.user_id][f"ed25519:{alice.device_id}"] = encode_base64(b"\0" * 64)
    cases = [
        ({"device_keys": bob.device_keys()}, "M_INVALID_PARAM"),                        # another user's device
        ({"device_keys": alice.device_keys(device_id="OTHERDEV")}, "M_INVALID_PARAM"),  # another device
        ({"device_keys": bad_sig}, "M_INVALID_SIGNATURE"),
        ({"device_keys": sign_json({"user_id": alice.user_id, "device_id": alice.device_id, "algorithms": ALGS,
                                    "keys": {}}, alice.user_id, alice.key)}, "M_BAD_JSON"),
        ({"device_keys": alice.device_keys(algorithms="m.olm")}, "M_BAD_JSON"),
        ({"device_keys": "nope"}, "M_BAD_JSON"),
        # one-time keys signed by another key, with valid device keys alongside: nothing at all stored
        ({"device_keys": alice.device_keys(), "one_time_keys": alice.one_time_keys(signer=bob.key)},
         "M_INVALID_SIGNATURE"),
        ({"one_time_keys": {"signed_curve25519:A": "plainstring"}}, "M_BAD_JSON"),
        ({"one_time_keys": {"nocolon": {"key": "x", "signatures": {}}}}, "M_BAD_JSON"),
        ({"one_time_keys": alice.one_time_keys()}, "M_INVALID_SIGNATURE"),               # no device keys yet
        ({"device_keys": alice.device_keys(),
          "fallback_keys": {**alice.one_time_keys(fallback=True), **alice.one_time_keys(fallback=True)}},
         "M_BAD_JSON"),                                                                   # two per algorithm
    ]
    for body, errcode in cases:
        status, resp = alice.call("POST", "/keys/upload", body)
        assert (status, resp.get("errcode")) == (400, errcode), (body, resp)
    status, body = bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert body["device_keys"] == {alice.user_id: {}}
    assert alice.call("POST", "/keys/upload", {})[1] == {"one_time_key_counts": {}}
    assert alice.call("POST", "/keys/upload", [])[0] == 400


def test_one_time_key_id_reused_with_another_key_is_refused(server):
    alice = Device(server)
    otk = alice.one_time_keys()
    assert alice.call("POST", "/keys/upload", {"device_keys": alice.device_keys(), "one_time_keys": otk})[0] == 200
    assert alice.call("POST", "/keys/upload", {"one_time_keys": otk})[1] == \
        {"one_time_key_counts": {"signed_curve25519": 1}}
    (name,) = otk
    other = {name: sign_json({"key": _random_b64()}, alice.user_id, alice.key)}
    status, body = alice.call("POST", "/keys/upload", {"one_time_keys": {**other, **alice.one_time_keys()}})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert alice.call("POST", "/keys/upload", {})[1] == {"one_time_key_counts": {"signed_curve25519": 1}}


def test_query_validates_its_body(server):
    alice = Device(server)
    for body, errcode in [({}, "M_MISSING_PARAM"), ({"device_keys": []}, "M_BAD_JSON"),
                          ({"device_keys": {"notauser": []}}, "M_INVALID_PARAM"),
                          ({"device_keys": {alice.user_id: "DEV"}}, "M_BAD_JSON"),
                          ({"device_keys": {alice.user_id: []}, "timeout": "soon"}, "M_BAD_JSON")]:
        status, resp = alice.call("POST", "/keys/query", body)
        assert (status, resp["errcode"]) == (400, errcode), body
    assert alice.call("POST", "/keys/query", {"device_keys": {}})[0] == 200
    assert api(server.base_url, "POST", V3 + "/keys/query", None, {"device_keys": {}})[0] == 401


def test_query_of_remote_users_reports_the_server_in_failures(server):
    alice = Device(server)
    status, body = alice.call("POST", "/keys/query", {"device_keys": {"@bob:elsewhere.example": []}})
    assert status == 200 and "elsewhere.example" in body["failures"]
    assert "@bob:elsewhere.example" not in body["device_keys"]


# --- /keys/claim --------------------------------------------------------------------------------

def test_claim_hands_out_each_one_time_key_once_then_the_fallback_key(server):
    alice, bob = Device(server), Device(server)
    otks = alice.one_time_keys(2)
    fallback = alice.one_time_keys(fallback=True)
    assert alice.call("POST", "/keys/upload", {"device_keys": alice.device_keys(), "one_time_keys": otks,
                                               "fallback_keys": fallback})[0] == 200
    query = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    claimed = []
    for _ in range(2):
        status, body = bob.call("POST", "/keys/claim", query)
        assert status == 200 and body["failures"] == {}
        claimed.append(body["one_time_keys"][alice.user_id][alice.device_id])
    assert {k for c in claimed for k in c} == set(otks)
    assert [v for c in claimed for v in c.values()] != []
    for _ in range(2):  # fallback key is reused, not consumed
        assert bob.call("POST", "/keys/claim", query)[1]["one_time_keys"] == {alice.user_id: {alice.device_id: fallback}}
    assert alice.call("POST", "/keys/upload", {})[1] == {"one_time_key_counts": {}}
    unknown = {"one_time_keys": {alice.user_id: {"NODEVICE": "signed_curve25519"}, "@nobody:test.local": {"X": "a"}}}
    assert bob.call("POST", "/keys/claim", unknown)[1] == {"one_time_keys": {}, "failures": {}}


def test_claim_validates_its_body_and_reports_remote_servers(server):
    bob = Device(server)
    for body in ({}, {"one_time_keys": []}, {"one_time_keys": {bob.user_id: ["x"]}},
                 {"one_time_keys": {bob.user_id: {"D": 5}}}, {"one_time_keys": {"bad": {}}}):
        status, resp = bob.call("POST", "/keys/claim", body)
        assert status == 400 and resp["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON", "M_INVALID_PARAM"), body
    status, body = bob.call("POST", "/keys/claim", {"one_time_keys": {"@x:far.example": {"D": "signed_curve25519"}}})
    assert status == 200 and "far.example" in body["failures"]


# --- /keys/changes --------------------------------------------------------------------------------

def test_keys_changes_lists_room_sharers_whose_keys_changed(server):
    alice, bob, carol = Device(server), Device(server), Device(server)
    # Alice and Bob share a room (membership rows written directly until rooms can be created here).
    for user in (alice, bob):
        db_execute(server, "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender,"
                           " stream_ordering) VALUES (?, ?, 'join', ?, ?, 1)",
                   (f"!shared{alice.name}:test.local", user.user_id, f"$m{user.name}", user.user_id))
    start = db_execute(server, "SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_list_stream")[0][0]
    for dev in (bob, carol):
        assert dev.call("POST", "/keys/upload", {"device_keys": dev.device_keys()})[0] == 200
    def token(device_lists):
        return f"s0_0_0_0_0_0_{device_lists}"
    status, body = alice.call("GET", "/keys/changes", params={"from": token(start), "to": token(start + 1000)})
    assert status == 200 and body == {"changed": [bob.user_id], "left": []}
    status, body = alice.call("GET", "/keys/changes", params={"from": token(start + 1000), "to": token(start + 2000)})
    assert body == {"changed": [], "left": []}
    assert alice.call("GET", "/keys/changes", params={"from": token(1)})[1]["errcode"] == "M_MISSING_PARAM"
    assert alice.call("GET", "/keys/changes", params={"from": "x", "to": "y"})[1]["errcode"] == "M_INVALID_PARAM"


def test_keys_changes_with_sync_tokens_reports_new_sharers_and_users_who_left(server):
    alice, dave, erin = Device(server), Device(server), Device(server)
    room = f"!tokens{alice.name}:test.local"
    base = 5_000_000
    rows = [(alice, "join", 1), (dave, "join", 1), (dave, "leave", base + 1), (erin, "join", base + 2)]
    for user, membership, stream in rows:
        db_execute(server, "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender,"
                           " stream_ordering) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE"
                           " SET membership = excluded.membership, stream_ordering = excluded.stream_ordering",
                   (room, user.user_id, membership, f"$m{user.name}{stream}", user.user_id, stream))
    dl = db_execute(server, "SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_list_stream")[0][0]
    since, now = f"s{base}_0_0_0_0_0_{dl}", f"s{base + 5}_0_0_0_0_0_{dl}"
    status, body = alice.call("GET", "/keys/changes", params={"from": since, "to": now})
    assert (status, body) == (200, {"changed": [erin.user_id], "left": [dave.user_id]})
    assert alice.call("GET", "/keys/changes", params={"from": "s1_2", "to": now})[1]["errcode"] == "M_INVALID_PARAM"


# --- cross-signing -----------------------------------------------------------------------------

def test_cross_signing_upload_is_free_once_then_needs_uia_and_is_shown_per_viewer(server):
    alice, bob = Device(server), Device(server)
    xs = CrossSigning(alice.user_id)
    assert alice.call("POST", "/keys/device_signing/upload", xs.body()) == (200, {})
    assert alice.call("POST", "/keys/device_signing/upload", xs.body()) == (200, {})  # identical: idempotent
    new = CrossSigning(alice.user_id)
    status, body = alice.call("POST", "/keys/device_signing/upload", new.body())
    assert status == 401 and body["flows"] == [{"stages": ["m.login.password"]}]
    status, _ = alice.call("POST", "/keys/device_signing/upload",
                           new.body(auth=_password_auth(alice.user_id, body["session"])))
    assert status == 200
    status, body = alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert body["master_keys"][alice.user_id] == new.master_key
    assert body["self_signing_keys"][alice.user_id] == new.ssk_key
    assert body["user_signing_keys"][alice.user_id] == new.usk_key
    status, body = bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert alice.user_id in body["master_keys"] and alice.user_id in body["self_signing_keys"]
    assert body.get("user_signing_keys", {}) == {}


def test_cross_signing_upload_refuses_bad_keys(server):
    alice = Device(server)
    xs, other = CrossSigning(alice.user_id), CrossSigning(alice.user_id)
    wrong_usage = dict(xs.master_key, usage=["self_signing"])
    two_keys = dict(xs.master_key, keys={**xs.master_key["keys"], "ed25519:abc": "abc"})
    mismatched = dict(xs.master_key, keys={f"ed25519:{xs.master.version}": "somethingelse"})
    cases = [
        ({"self_signing_key": xs.ssk_key}, 400, "M_MISSING_PARAM"),                     # no master anywhere
        ({"master_key": xs.master_key, "self_signing_key": other.ssk_key}, 400, "M_INVALID_SIGNATURE"),
        ({"master_key": dict(xs.master_key, user_id="@someone:test.local")}, 400, "M_INVALID_PARAM"),
        ({"master_key": wrong_usage}, 400, "M_BAD_JSON"),
        ({"master_key": two_keys}, 400, "M_BAD_JSON"),
        ({"master_key": mismatched}, 400, "M_BAD_JSON"),
        ({"master_key": "x"}, 400, "M_BAD_JSON"),
    ]
    for body, status, errcode in cases:
        got = alice.call("POST", "/keys/device_signing/upload", body)
        assert (got[0], got[1].get("errcode")) == (status, errcode), body
    status, body = alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert body["master_keys"] == {} and body["self_signing_keys"] == {}


def test_cross_signing_key_equal_to_a_device_id_is_forbidden(server):
    sk = generate_signing_key("x")
    public = verify_key_base64(sk)
    alice = Device(server, device_id=public)
    sk.version = public
    master = {"user_id": alice.user_id, "usage": ["master"], "keys": {f"ed25519:{public}": public}}
    status, body = alice.call("POST", "/keys/device_signing/upload", {"master_key": master})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_signatures_upload_stores_valid_signatures_and_reports_bad_ones(server):
    alice, bob = Device(server), Device(server)
    xs_a, xs_b = CrossSigning(alice.user_id), CrossSigning(bob.user_id)
    assert alice.call("POST", "/keys/device_signing/upload", xs_a.body())[0] == 200
    assert bob.call("POST", "/keys/device_signing/upload", xs_b.body())[0] == 200
    dk = alice.device_keys()
    assert alice.call("POST", "/keys/upload", {"device_keys": dk})[0] == 200

    signed_device = sign_json(dk, alice.user_id, xs_a.ssk)           # SSK signs Alice's device
    signed_master = sign_json(xs_a.master_key, alice.user_id, alice.key)  # the device signs her master key
    signed_bob = sign_json(xs_b.master_key, alice.user_id, xs_a.usk)      # her USK signs Bob's master key
    forged = sign_json(dk, alice.user_id, xs_b.ssk)                   # wrong key under the SSK's name
    forged["signatures"][alice.user_id] = {f"ed25519:{xs_a.ssk.version}":
                                           forged["signatures"][alice.user_id][f"ed25519:{xs_b.ssk.version}"]}
    status, body = alice.call("POST", "/keys/signatures/upload", {
        alice.user_id: {alice.device_id: signed_device, xs_a.master.version: signed_master, "NODEVICE": dk},
        bob.user_id: {xs_b.master.version: signed_bob, "notbobsmaster": signed_bob},
    })
    assert status == 200
    assert set(body["failures"]) == {alice.user_id, bob.user_id}
    assert body["failures"][alice.user_id]["NODEVICE"]["errcode"] == "M_NOT_FOUND"
    assert body["failures"][bob.user_id]["notbobsmaster"]["errcode"] == "M_NOT_FOUND"
    assert set(body["failures"][alice.user_id]) == {"NODEVICE"}
    status, body = alice.call("POST", "/keys/signatures/upload", {alice.user_id: {alice.device_id: forged}})
    assert body["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    changed = dict(signed_device, algorithms=["other"])
    status, body = alice.call("POST", "/keys/signatures/upload", {alice.user_id: {alice.device_id: changed}})
    assert body["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert alice.call("POST", "/keys/signatures/upload", {alice.user_id: "x"})[0] == 400

    # Everyone sees the SSK signature on the device and the device's signature on the master key.
    status, seen_by_bob = bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: [], bob.user_id: []}})
    device_sigs = seen_by_bob["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert device_sigs == signed_device["signatures"][alice.user_id]
    assert seen_by_bob["master_keys"][alice.user_id]["signatures"][alice.user_id] == \
        signed_master["signatures"][alice.user_id]
    # Alice's USK signature on Bob's master key is hers alone.
    assert alice.user_id not in seen_by_bob["master_keys"][bob.user_id].get("signatures", {})
    status, seen_by_alice = alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert seen_by_alice["master_keys"][bob.user_id]["signatures"][alice.user_id] == \
        signed_bob["signatures"][alice.user_id]


# --- key backup --------------------------------------------------------------------------------

def _backup_key(fmi, fc=0, verified=False, data="x"):
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ciphertext": data}}


def test_key_backup_versions_keys_etag_and_best_key_rules(server):
    alice, bob = Device(server), Device(server)
    alg = "m.megolm_backup.v1.curve25519-aes-sha2"
    assert alice.call("GET", "/room_keys/version")[1]["errcode"] == "M_NOT_FOUND"
    status, body = alice.call("POST", "/room_keys/version", {"algorithm": alg, "auth_data": {"public_key": "a"}})
    assert status == 200
    v1 = body["version"]
    v2 = alice.call("POST", "/room_keys/version", {"algorithm": alg, "auth_data": {"public_key": "b"}})[1]["version"]
    status, info = alice.call("GET", "/room_keys/version")
    assert info == {"algorithm": alg, "auth_data": {"public_key": "b"}, "count": 0, "etag": info["etag"],
                    "version": v2}
    assert bob.call("GET", "/room_keys/version")[0] == 404  # backups are per user

    status, body = alice.call("PUT", "/room_keys/keys/!r:test.local/s1", _backup_key(3), params={"version": v1})
    assert (status, body["errcode"], body["current_version"]) == (403, "M_WRONG_ROOM_KEYS_VERSION", v2)
    status, w1 = alice.call("PUT", "/room_keys/keys/!r:test.local/s1", _backup_key(3), params={"version": v2})
    assert status == 200 and w1["count"] == 1
    status, w2 = alice.call("PUT", "/room_keys/keys", {"rooms": {"!r:test.local": {"sessions": {
        "s1": _backup_key(5, data="worse"), "s2": _backup_key(0)}}}}, params={"version": v2})
    assert w2["count"] == 2 and w2["etag"] != w1["etag"]
    assert alice.call("GET", "/room_keys/keys/!r:test.local/s1", params={"version": v2})[1] == _backup_key(3)
    # verified beats a lower index; equal otherwise, the lower forwarded_count wins
    alice.call("PUT", "/room_keys/keys/!r:test.local", {"sessions": {"s1": _backup_key(9, verified=True, data="v")}},
               params={"version": v2})
    alice.call("PUT", "/room_keys/keys/!r:test.local/s1", _backup_key(1, data="unverified"), params={"version": v2})
    assert alice.call("GET", "/room_keys/keys/!r:test.local/s1", params={"version": v2})[1]["session_data"] == \
        {"ciphertext": "v"}
    status, unchanged = alice.call("PUT", "/room_keys/keys/!r:test.local/s2", _backup_key(0, fc=1),
                                   params={"version": v2})
    assert unchanged["etag"] == alice.call("GET", f"/room_keys/version/{v2}")[1]["etag"]
    status, all_keys = alice.call("GET", "/room_keys/keys", params={"version": v2})
    assert set(all_keys["rooms"]["!r:test.local"]["sessions"]) == {"s1", "s2"}
    assert alice.call("GET", "/room_keys/keys/!other:test.local", params={"version": v2})[1] == {"sessions": {}}
    assert alice.call("GET", "/room_keys/keys/!r:test.local/nope", params={"version": v2})[0] == 404

    status, body = alice.call("DELETE", "/room_keys/keys/!r:test.local/s2", params={"version": v2})
    assert status == 200 and body["count"] == 1
    assert alice.call("PUT", f"/room_keys/version/{v2}", {"algorithm": alg, "auth_data": {"public_key": "c"},
                                                          "version": v2}) == (200, {})
    assert alice.call("GET", f"/room_keys/version/{v2}")[1]["auth_data"] == {"public_key": "c"}
    assert alice.call("DELETE", f"/room_keys/version/{v2}") == (200, {})
    assert alice.call("DELETE", f"/room_keys/version/{v2}") == (200, {})  # deleting again succeeds
    assert alice.call("GET", f"/room_keys/version/{v2}")[0] == 404
    assert alice.call("GET", "/room_keys/version")[1]["version"] == v1
    assert alice.call("DELETE", "/room_keys/version/999")[0] == 404


def test_key_backup_refuses_bad_input(server):
    alice = Device(server)
    alg = "m.megolm_backup.v1.curve25519-aes-sha2"
    for body in ({}, {"algorithm": alg}, {"algorithm": alg, "auth_data": "x"}, {"algorithm": 5, "auth_data": {}}):
        assert alice.call("POST", "/room_keys/version", body)[0] == 400, body
    v = alice.call("POST", "/room_keys/version", {"algorithm": alg, "auth_data": {}})[1]["version"]
    assert alice.call("PUT", f"/room_keys/version/{v}", {"algorithm": "other", "auth_data": {}})[1]["errcode"] == \
        "M_INVALID_PARAM"
    assert alice.call("PUT", f"/room_keys/version/{v}", {"algorithm": alg, "auth_data": {}, "version": "77"})[1][
        "errcode"] == "M_INVALID_PARAM"
    assert alice.call("PUT", "/room_keys/version/77", {"algorithm": alg, "auth_data": {}})[0] == 404
    assert alice.call("GET", "/room_keys/version/notanumber")[0] == 404
    bad_keys = [_backup_key(-1), dict(_backup_key(0), is_verified="yes"), dict(_backup_key(0), session_data=[]),
                {"first_message_index": 0}]
    for key in bad_keys:
        status, body = alice.call("PUT", "/room_keys/keys/!r:test.local/s", key, params={"version": v})
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), key
    assert alice.call("PUT", "/room_keys/keys", {"rooms": []}, params={"version": v})[0] == 400
    assert alice.call("PUT", "/room_keys/keys/!r:test.local/s", _backup_key(0))[1]["errcode"] == "M_MISSING_PARAM"
    assert alice.call("GET", "/room_keys/keys", params={"version": v})[1] == {"rooms": {}}


# --- send-to-device ----------------------------------------------------------------------------

def test_send_to_device_delivers_once_per_txn_and_expands_the_wildcard(server):
    alice, bob = Device(server), Device(server)
    bob2_token = api(server.base_url, "POST", V3 + "/login", None, {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.name}, "password": PW})[1]
    msgs = {"messages": {bob.user_id: {"*": {"hello": 1}}, "@nobody:test.local": {"X": {}}}}
    assert alice.call("PUT", "/sendToDevice/m.test/txn1", msgs) == (200, {})
    assert alice.call("PUT", "/sendToDevice/m.test/txn1", msgs) == (200, {})  # retried: not delivered twice
    import json
    for device_id in (bob.device_id, bob2_token["device_id"]):
        rows = _inbox(server, bob.user_id, device_id)
        assert [json.loads(r[0]) for r in rows] == [{"type": "m.test", "sender": alice.user_id,
                                                    "content": {"hello": 1}}]
    assert alice.call("PUT", "/sendToDevice/m.test/txn2", {"messages": {bob.user_id: {bob.device_id: {"n": 2},
                                                                                      "UNKNOWN": {}}}})[0] == 200
    assert len(_inbox(server, bob.user_id, bob.device_id)) == 2
    assert _inbox(server, bob.user_id, "UNKNOWN") == []


def test_send_to_device_queues_remote_messages_and_refuses_bad_bodies(server):
    alice = Device(server)
    remote = {"messages": {"@zed:far.example": {"DEV": {"secret": True}}}}
    assert alice.call("PUT", "/sendToDevice/m.test/remote1", remote) == (200, {})
    rows = db_execute(server, "SELECT destination, sender, message_type FROM e2e_device_outbox WHERE sender = ?",
                      (alice.user_id,))
    assert rows == [("far.example", alice.user_id, "m.test")]
    for body in ({}, {"messages": []}, {"messages": {"notauser": {}}}, {"messages": {alice.user_id: {"D": "x"}}},
                 {"messages": {alice.user_id: []}}):
        status, resp = alice.call("PUT", "/sendToDevice/m.test/bad", body)
        assert status == 400 and resp["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON", "M_INVALID_PARAM"), body


def test_sync_delivers_to_device_messages_and_deletes_them_once_acknowledged(server):
    alice, bob = Device(server), Device(server)
    status, first = bob.call("GET", "/sync", params={"timeout": "0"})
    assert status == 200
    for n in range(3):
        assert alice.call("PUT", f"/sendToDevice/m.test/sync{n}", {"messages": {bob.user_id: {
            bob.device_id: {"n": n}}}})[0] == 200
    status, body = bob.call("GET", "/sync", params={"since": first["next_batch"], "timeout": "0"})
    events = body["to_device"]["events"]
    assert [e["content"]["n"] for e in events] == [0, 1, 2]
    assert all(e["sender"] == alice.user_id and e["type"] == "m.test" for e in events)
    assert len(_inbox(server, bob.user_id, bob.device_id)) == 3  # not yet acknowledged
    status, again = bob.call("GET", "/sync", params={"since": body["next_batch"], "timeout": "0"})
    assert again.get("to_device", {}).get("events", []) == []
    assert _inbox(server, bob.user_id, bob.device_id) == []


def test_sync_reports_one_time_key_counts_and_unused_fallback_types(server):
    alice = Device(server)
    fallback = alice.one_time_keys(fallback=True)
    assert alice.call("POST", "/keys/upload", {"device_keys": alice.device_keys(),
                                               "one_time_keys": alice.one_time_keys(2),
                                               "fallback_keys": fallback})[0] == 200
    status, body = alice.call("GET", "/sync", params={"timeout": "0"})
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    for _ in range(3):
        assert alice.call("POST", "/keys/claim", claim)[0] == 200
    status, body = alice.call("GET", "/sync", params={"since": body["next_batch"], "timeout": "0"})
    assert body.get("device_one_time_keys_count", {}).get("signed_curve25519", 0) == 0
    assert body["device_unused_fallback_key_types"] == []


def test_sync_device_lists_show_room_sharers_changes(server):
    alice, bob = Device(server), Device(server)
    status, created = alice.call("POST", "/createRoom", {"invite": [bob.user_id]})
    assert status == 200
    assert bob.call("POST", f"/join/{created['room_id']}", {})[0] == 200
    status, base = alice.call("GET", "/sync", params={"timeout": "0"})
    assert bob.call("POST", "/keys/upload", {"device_keys": bob.device_keys()})[0] == 200
    status, body = alice.call("GET", "/sync", params={"since": base["next_batch"], "timeout": "0"})
    assert bob.user_id in body["device_lists"]["changed"]
    status, changes = alice.call("GET", "/keys/changes", params={"from": base["next_batch"],
                                                                 "to": body["next_batch"]})
    assert changes == {"changed": [bob.user_id], "left": []}
    assert bob.call("POST", f"/rooms/{created['room_id']}/leave", {})[0] == 200
    status, after = alice.call("GET", "/sync", params={"since": body["next_batch"], "timeout": "0"})
    assert bob.user_id in after["device_lists"]["left"]


# --- device deletion --------------------------------------------------------------------------

def test_deleting_a_device_removes_its_keys(server):
    alice, bob = Device(server), Device(server)
    assert alice.call("POST", "/keys/upload", {"device_keys": alice.device_keys(),
                                               "one_time_keys": alice.one_time_keys(2)})[0] == 200
    status, body = alice.call("DELETE", f"/devices/{alice.device_id}", {})
    assert status == 401
    assert alice.call("DELETE", f"/devices/{alice.device_id}",
                      {"auth": _password_auth(alice.user_id, body["session"])})[0] == 200
    status, body = bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert body["device_keys"] == {alice.user_id: {}}
    assert db_execute(server, "SELECT COUNT(*) FROM e2e_one_time_keys WHERE user_id = ?", (alice.user_id,)) == [(0,)]
