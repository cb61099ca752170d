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
from federation.client import FederationClient, FederationUnreachable
from federation.keys_store import KeysStore
from federation.keyring import Keyring
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
