"""Two (and a TLS third) uzel servers in this process on loopback: key fetching and verification,
the notary endpoints, X-Matrix request authentication between servers, TLS with a self-signed
certificate (server-server-api.md "Retrieving server keys", "Request Authentication", "TLS")."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor

from config.loader import parse_config
from config.schema import TrustedKeyServer
from federation.client import FederationClient, FederationError, FederationUnreachable
from federation.keys_store import KeysStore
from federation.keyring import SEVEN_DAYS_MS, KeyDocumentError, KeyLookupError, Keyring, parse_key_document
from federation.request_auth import authenticate_request, sign_request
from homeserver.app import HomeServer
from homeserver.cli import write_self_signed_certificate
from homeserver.protocol import signing
from tests.integration.harness import free_port

WHOAMI = "/_matrix/federation/v1/uzel_test/whoami"


def _build(tmp_path, port: int, plain_peers: list[str], *, tls: bool = False) -> HomeServer:
    name = f"127.0.0.1:{port}"
    data = tmp_path / f"hs{port}"
    data.mkdir()
    key_path = data / "signing.key"
    signing.write_signing_key(key_path, signing.generate_signing_key())
    listener = {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": tls,
                "resources": [{"names": ["client", "federation", "keys"]}]}
    if tls:
        cert, key = str(data / "tls.crt"), str(data / "tls.key")
        write_self_signed_certificate(name, cert, key)
        listener.update(tls_certificate_path=cert, tls_private_key_path=key)
    config = parse_config({
        "server_name": name,
        "listeners": [listener],
        "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
        "signing_key_path": str(key_path),
        "ip_range_whitelist": ["127.0.0.0/8"],
        "federation_client_plain_http_destinations": plain_peers,
    }, config_dir=str(data))
    hs = HomeServer(config, reactor)
    hs.setup()

    async def whoami(request):
        return 200, {"origin": await authenticate_request(hs, request), "body": request.json(allow_empty=True)}

    hs.router.add("GET", WHOAMI, whoami, "federation")
    hs.router.add("PUT", WHOAMI, whoami, "federation")
    pytest_twisted.blockon(defer.ensureDeferred(hs.start()))
    hs.listen()
    return hs


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("federation")
    pa, pb, pc = free_port(), free_port(), free_port()
    a = _build(tmp, pa, [f"127.0.0.1:{pb}"])
    b = _build(tmp, pb, [f"127.0.0.1:{pa}"])
    c = _build(tmp, pc, [], tls=True)
    yield SimpleNamespace(a=a, b=b, c=c, url={hs.hostname: f"http://{hs.hostname}" for hs in (a, b)})
    for hs in (a, b, c):
        pytest_twisted.blockon(defer.ensureDeferred(hs.get(FederationClient).close()))
        for port in hs._ports:
            pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        hs.db.close()


def _own_key(hs):
    return signing.key_id(hs.signing_key), hs.signing_key.verify_key


@pytest_twisted.ensureDeferred
async def test_server_fetches_verifies_and_stores_a_peers_key(servers):
    a, b = servers.a, servers.b
    kid, vk = _own_key(b)
    keys = await a.get(Keyring).get_verify_keys(b.hostname, [kid], valid_at_ts=a.clock_ms())
    assert keys[kid].encode() == vk.encode()
    stored = await a.get(KeysStore).get_server_keys(b.hostname)
    assert stored[kid].verify_key == signing.verify_key_base64(b.signing_key)
    assert stored[kid].valid_until_ts > a.clock_ms()
    # our own key needs no I/O and never expires
    own = await a.get(Keyring).get_verify_keys(a.hostname, [_own_key(a)[0]], valid_at_ts=2**60)
    assert list(own) == [_own_key(a)[0]]


@pytest_twisted.ensureDeferred
async def test_unknown_key_id_of_a_peer_is_not_found(servers):
    a, b = servers.a, servers.b
    assert await a.get(Keyring).get_verify_keys(b.hostname, ["ed25519:nope"]) == {}


@pytest_twisted.ensureDeferred
async def test_notary_get_returns_the_peers_document_signed_by_both(servers):
    a, b = servers.a, servers.b
    resp = await treq.get(f"{servers.url[a.hostname]}/_matrix/key/v2/query/{b.hostname}")
    assert resp.code == 200
    docs = (await treq.json_content(resp))["server_keys"]
    assert len(docs) == 1 and docs[0]["server_name"] == b.hostname
    signing.verify_json(docs[0], b.hostname, *_own_key(b))
    signing.verify_json(docs[0], a.hostname, *_own_key(a))


@pytest_twisted.ensureDeferred
async def test_notary_post_answers_known_servers_and_omits_unreachable_ones(servers):
    a, b = servers.a, servers.b
    kid = _own_key(b)[0]
    dead = f"127.0.0.1:{free_port()}"
    query = {"server_keys": {b.hostname: {kid: {"minimum_valid_until_ts": a.clock_ms()}}, dead: {},
                             a.hostname: {}}}
    resp = await treq.post(f"{servers.url[a.hostname]}/_matrix/key/v2/query", json=query)
    assert resp.code == 200
    docs = (await treq.json_content(resp))["server_keys"]
    assert sorted(d["server_name"] for d in docs) == sorted([b.hostname, a.hostname])
    for doc in docs:
        signing.verify_json(doc, a.hostname, *_own_key(a))
    resp = await treq.post(f"{servers.url[a.hostname]}/_matrix/key/v2/query", json={"server_keys": []})
    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_signed_request_between_servers_is_accepted(servers):
    a, b = servers.a, servers.b
    client = a.get(FederationClient)
    assert (await client.get_json(b.hostname, WHOAMI, {"q": "a b/c"}))["origin"] == a.hostname
    got = await client.put_json(b.hostname, WHOAMI, {"hello": "wörld"})
    assert got == {"origin": a.hostname, "body": {"hello": "wörld"}}


async def _raw_put(servers, hs, auth: str | None, body=b"{}"):
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    resp = await treq.put(f"{servers.url[hs.hostname]}{WHOAMI}", data=body, headers=headers)
    return resp.code, await treq.json_content(resp)


@pytest_twisted.ensureDeferred
async def test_forged_or_misaddressed_request_is_rejected_with_401(servers):
    a, b = servers.a, servers.b
    forger = signing.generate_signing_key(a.signing_key.version)  # a's key id, another key
    code, body = await _raw_put(servers, b, sign_request("PUT", WHOAMI, a.hostname, b.hostname, forger, {}))
    assert (code, body["errcode"]) == (401, "M_UNAUTHORIZED")
    wrong_dest = sign_request("PUT", WHOAMI, a.hostname, "elsewhere.test", a.signing_key, {})
    assert (await _raw_put(servers, b, wrong_dest))[0] == 401
    assert (await _raw_put(servers, b, None))[0] == 401
    genuine = sign_request("PUT", WHOAMI, a.hostname, b.hostname, a.signing_key, {})
    assert await _raw_put(servers, b, genuine) == (200, {"origin": a.hostname, "body": {}})
    # the body is covered by the signature
    assert (await _raw_put(servers, b, genuine, b'{"x": 1}'))[0] == 401


@pytest_twisted.ensureDeferred
async def test_tls_peer_with_self_signed_certificate_needs_verification_off(servers):
    a, c = servers.a, servers.c
    with pytest.raises(FederationUnreachable):
        await a.get(FederationClient).get_json(c.hostname, "/_matrix/key/v2/server", sign=False)
    lax = SimpleNamespace(config=dataclasses.replace(a.config, federation_verify_certificates=False),
                          reactor=reactor, hostname=a.hostname, signing_key=a.signing_key, clock_ms=a.clock_ms)
    client = FederationClient(lax)
    try:
        doc = await client.get_json(c.hostname, "/_matrix/key/v2/server", sign=False)
    finally:
        await client.close()
    signing.verify_json(doc, c.hostname, *_own_key(c))


# --- key documents and the keyring's validity rules (no network: fake client and store) -------

REMOTE = "remote.test"
REMOTE_KEY = signing.generate_signing_key("r1")
OLD_KEY = signing.generate_signing_key("r0")
NOTARY_KEY = signing.generate_signing_key("n1")
DAY = 24 * 3600 * 1000


def _doc(valid_until, key=REMOTE_KEY, server=REMOTE, old=None, sign_with=None):
    doc = {"server_name": server, "valid_until_ts": valid_until,
           "verify_keys": {signing.key_id(key): {"key": signing.verify_key_base64(key)}},
           "old_verify_keys": old or {}}
    return signing.sign_json(doc, server, sign_with or key)


def test_key_document_validity_is_capped_at_seven_days_after_fetch():
    keys = parse_key_document(_doc(10**13), REMOTE, 1000, REMOTE)
    assert [(k.key_id, k.valid_until_ts) for k in keys] == [("ed25519:r1", 1000 + SEVEN_DAYS_MS)]
    old = {"ed25519:r0": {"key": signing.verify_key_base64(OLD_KEY), "expired_ts": 500}}
    keys = parse_key_document(_doc(5000, old=old), REMOTE, 1000, REMOTE)
    assert {(k.key_id, k.valid_until_ts, k.expired_ts) for k in keys} == {("ed25519:r1", 5000, None),
                                                                           ("ed25519:r0", 500, 500)}


@pytest.mark.parametrize("doc", [
    _doc(5000, server="other.test"),  # about another server
    {k: v for k, v in _doc(5000).items() if k != "signatures"},  # unsigned
    _doc(5000, sign_with=signing.generate_signing_key("r1")),  # signed by an impostor with the key id
    dict(_doc(5000), valid_until_ts=6000),  # altered after signing
    {k: v for k, v in _doc(5000).items() if k != "valid_until_ts"},
    "not an object",
])
def test_bad_key_documents_are_refused(doc):
    with pytest.raises(KeyDocumentError):
        parse_key_document(doc, REMOTE, 1000, REMOTE)


class _FakeStore:
    def __init__(self):
        self.keys, self.docs = {}, {}

    async def store_server_keys(self, server_name, keys, document=None):
        for k in keys:
            self.keys.setdefault(server_name, {})[k.key_id] = k
        if document is not None:
            self.docs[server_name] = document

    async def get_server_keys(self, server_name):
        return dict(self.keys.get(server_name, {}))

    async def get_key_document(self, server_name):
        return self.docs.get(server_name)


class _FakeClient:
    def __init__(self):
        self.direct = []  # documents to serve, in order; an exception = unreachable
        self.notary_answers = {}
        self.calls = []

    async def get_json(self, destination, path, args=None, **_kw):
        self.calls.append(("GET", destination, path))
        doc = self.direct.pop(0) if self.direct else FederationError(404, "M_NOT_FOUND", "no")
        if isinstance(doc, Exception):
            raise doc
        return doc

    async def post_json(self, destination, path, data=None, args=None, **_kw):
        self.calls.append(("POST", destination, path))
        return self.notary_answers[destination]


def _keyring(now, trusted=()):
    hs = SimpleNamespace(hostname="us.test", signing_key=signing.generate_signing_key("us"),
                         config=SimpleNamespace(old_signing_keys={}, trusted_key_servers=tuple(trusted)),
                         clock_ms=lambda: now[0])
    objs = {KeysStore: _FakeStore(), FederationClient: _FakeClient()}
    hs.get = lambda cls: objs[cls]
    return Keyring(hs), objs[FederationClient]


def _signed_obj(key=REMOTE_KEY):
    return signing.sign_json({"content": "x"}, REMOTE, key)


@pytest_twisted.ensureDeferred
async def test_key_validity_is_enforced_and_expired_keys_are_refetched():
    now = [1_000_000]
    keyring, client = _keyring(now)
    client.direct = [_doc(now[0] + DAY)]
    await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=now[0])
    await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=now[0] + DAY)  # cached
    assert len(client.calls) == 1
    # an event after the key's validity: a re-fetch, but not twice within the throttle interval
    client.direct = [_doc(now[0] + 3 * DAY)]
    now[0] += 1000
    with pytest.raises(KeyLookupError):
        await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=now[0] + 2 * DAY)
    assert len(client.calls) == 1
    now[0] += 60_000
    await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=now[0] + 2 * DAY)
    assert len(client.calls) == 2
    # room versions without key validity (valid_at_ts=None) accept any known key
    await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=None)
    # a wrong signature with a known key fails outright
    with pytest.raises(signing.SignatureError):
        await keyring.verify_json_for_server(REMOTE, _signed_obj(signing.generate_signing_key("r1")),
                                             valid_at_ts=None)


@pytest_twisted.ensureDeferred
async def test_old_verify_keys_are_valid_only_until_they_expired():
    now = [1_000_000]
    keyring, client = _keyring(now)
    old = {"ed25519:r0": {"key": signing.verify_key_base64(OLD_KEY), "expired_ts": 900_000}}
    client.direct = [_doc(now[0] + DAY, old=old)]
    await keyring.verify_json_for_server(REMOTE, _signed_obj(OLD_KEY), valid_at_ts=800_000)
    with pytest.raises(KeyLookupError):
        await keyring.verify_json_for_server(REMOTE, _signed_obj(OLD_KEY), valid_at_ts=950_000)


@pytest_twisted.ensureDeferred
async def test_notary_supplies_keys_when_the_server_is_unreachable():
    now = [1_000_000]
    notary = TrustedKeyServer("notary.test", {signing.key_id(NOTARY_KEY): signing.verify_key_base64(NOTARY_KEY)})
    keyring, client = _keyring(now, [notary])
    client.direct = [FederationUnreachable(REMOTE, "down")]
    vouched = signing.sign_json(_doc(now[0] + DAY), "notary.test", NOTARY_KEY)
    client.notary_answers["notary.test"] = {"server_keys": [vouched]}
    await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=now[0])
    assert [c[:2] for c in client.calls] == [("GET", REMOTE), ("POST", "notary.test")]


@pytest_twisted.ensureDeferred
async def test_notary_answer_without_the_notarys_signature_is_ignored():
    now = [1_000_000]
    notary = TrustedKeyServer("notary.test", {signing.key_id(NOTARY_KEY): signing.verify_key_base64(NOTARY_KEY)})
    keyring, client = _keyring(now, [notary])
    client.direct = [FederationUnreachable(REMOTE, "down")]
    client.notary_answers["notary.test"] = {"server_keys": [_doc(now[0] + DAY)]}  # not notary-signed
    with pytest.raises(KeyLookupError):
        await keyring.verify_json_for_server(REMOTE, _signed_obj(), valid_at_ts=now[0])
