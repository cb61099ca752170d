"""X-Matrix Authorization headers: parsing per RFC 9110, signing round trip, inbound checks
(server-server-api.md "Request Authentication")."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.web.http_headers import Headers

from federation.keyring import Keyring
from federation.request_auth import (
    FederationRequestAuth,
    XMatrixAuth,
    format_x_matrix,
    parse_x_matrix,
    request_json,
    sign_request,
)
from homeserver.http.errors import MatrixError
from homeserver.protocol import signing


# --- parsing ----------------------------------------------------------------------------------

def test_parses_the_spec_example():
    auth = parse_x_matrix('X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
                          'key="ed25519:key1",sig="ABCDEF..."')
    assert auth == XMatrixAuth("origin.hs.example.com", "destination.hs.example.com", "ed25519:key1", "ABCDEF...")


@pytest.mark.parametrize("header", [
    'X-Matrix origin=origin.test,key="ed25519:k",sig="c2ln"',  # token value
    'X-Matrix origin=origin.test,key=ed25519:k,sig=c2ln',  # unquoted colon (older senders)
    'x-matrix ORIGIN="origin.test" , Key="ed25519:k",\tsig="c2ln"',  # case, spaces and tabs
    'X-Matrix   sig="c2ln",key="ed25519:k",origin="origin.test"',  # order, several spaces
    'X-Matrix origin="orig\\in.test",key="ed25519:k",sig="c2ln"',  # backslash escape
    'X-Matrix origin="origin.test",key="ed25519:k",sig="c2ln",foo="bar, baz"',  # unknown param
])
def test_header_variants_allowed_by_rfc_9110_parse_alike(header):
    auth = parse_x_matrix(header)
    assert (auth.origin, auth.key, auth.sig, auth.destination) == ("origin.test", "ed25519:k", "c2ln", None)


@pytest.mark.parametrize("header", [
    'Bearer abc',
    'X-Matrix',
    'X-Matrix key="ed25519:k",sig="c2ln"',  # no origin
    'X-Matrix origin="o.test",sig="c2ln"',  # no key
    'X-Matrix origin="o.test",key="ed25519:k"',  # no sig
    'X-Matrix origin="o.test,key="ed25519:k",sig="c2ln"',  # unterminated quote swallows the rest
    'X-Matrix origin="o.test" key="ed25519:k",sig="c2ln"',  # missing comma
    'X-Matrix origin="o.test",origin="p.test",key="ed25519:k",sig="c2ln"',  # repeated
    'X-Matrix origin,key="ed25519:k",sig="c2ln"',  # no value
])
def test_malformed_headers_are_rejected(header):
    with pytest.raises(ValueError):
        parse_x_matrix(header)


def test_format_is_the_compatible_form_and_parses_back():
    auth = XMatrixAuth("a.test:8448", "b.test", "ed25519:k1", "c2ln+/x")
    text = format_x_matrix(auth)
    assert text == 'X-Matrix origin="a.test:8448",destination="b.test",key="ed25519:k1",sig="c2ln+/x"'
    assert parse_x_matrix(text) == auth


# --- signing round trip ----------------------------------------------------------------------

def test_signed_request_verifies_over_method_uri_origin_destination_content():
    key = signing.generate_signing_key("k1")
    content = {"pdus": [], "n": 1}
    header = sign_request("put", "/_matrix/federation/v1/send/1?a=b", "a.test", "b.test", key, content)
    auth = parse_x_matrix(header)
    obj = request_json("PUT", "/_matrix/federation/v1/send/1?a=b", auth.origin, auth.destination, content)
    obj["signatures"] = {auth.origin: {auth.key: auth.sig}}
    signing.verify_json(obj, "a.test", "ed25519:k1", key.verify_key)
    tampered = dict(obj, uri="/_matrix/federation/v1/send/2?a=b")
    with pytest.raises(signing.SignatureError):
        signing.verify_json(tampered, "a.test", "ed25519:k1", key.verify_key)


# --- inbound authentication -------------------------------------------------------------------

ORIGIN_KEY = signing.generate_signing_key("orig")
OUR_KEY = signing.generate_signing_key("ours")


class _Hs:
    def __init__(self, whitelist=None):
        self.hostname = "us.test"
        self.signing_key = OUR_KEY
        self.config = SimpleNamespace(federation_domain_whitelist=whitelist, old_signing_keys={},
                                      trusted_key_servers=())
        self._instances = {}
        keyring = Keyring(self)
        keyring.pin_keys("origin.test", {signing.key_id(ORIGIN_KEY): signing.verify_key_base64(ORIGIN_KEY)})
        self._instances[Keyring] = keyring

    def get(self, cls):
        if cls not in self._instances:
            self._instances[cls] = cls(self)
        return self._instances[cls]

    def clock_ms(self):
        return 1_700_000_000_000


def _request(method, uri, body=b"", auth_headers=()):
    headers = Headers()
    for h in auth_headers:
        headers.addRawHeader(b"Authorization", h.encode())
    twisted = SimpleNamespace(requestHeaders=headers, uri=uri.encode(), authenticated_entity=None)
    return SimpleNamespace(method=method, body=body, twisted=twisted)


def _signed(method="PUT", uri="/_matrix/federation/v1/send/t1", content=None, destination="us.test",
            key=ORIGIN_KEY, origin="origin.test"):
    content = {"pdus": []} if content is None and method != "GET" else content
    header = sign_request(method, uri, origin, destination, key, content)
    body = json.dumps(content).encode() if content is not None else b""
    return _request(method, uri, body, [header])


async def _auth(request, hs=None):
    return await FederationRequestAuth(hs or _Hs()).authenticate_request(request)


@pytest_twisted.ensureDeferred
async def test_correctly_signed_request_yields_origin():
    request = _signed()
    assert await _auth(request) == "origin.test"
    assert request.twisted.authenticated_entity == "origin.test"
    assert await _auth(_signed("GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab")) == "origin.test"


@pytest_twisted.ensureDeferred
async def test_header_without_destination_from_older_senders_is_accepted():
    key = ORIGIN_KEY
    obj = signing.sign_json(request_json("GET", "/_matrix/x", "origin.test", None), "origin.test", key)
    sig = obj["signatures"]["origin.test"][signing.key_id(key)]
    header = f'X-Matrix origin=origin.test,key="{signing.key_id(key)}",sig="{sig}"'
    assert await _auth(_request("GET", "/_matrix/x", b"", [header])) == "origin.test"


async def _expect(request, code, errcode, hs=None):
    with pytest.raises(MatrixError) as exc:
        await _auth(request, hs)
    assert (exc.value.code, exc.value.errcode) == (code, errcode)


@pytest_twisted.ensureDeferred
async def test_missing_or_malformed_header_is_401():
    await _expect(_request("GET", "/_matrix/x"), 401, "M_UNAUTHORIZED")
    await _expect(_request("GET", "/_matrix/x", b"", ['X-Matrix origin="origin.test"']), 401, "M_UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_forged_signature_is_401():
    forger = signing.generate_signing_key("orig")  # same key id, different key
    await _expect(_signed(key=forger), 401, "M_UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_altered_body_or_uri_is_401():
    good = _signed()
    headers = [h.decode() for h in good.twisted.requestHeaders.getRawHeaders(b"authorization")]
    await _expect(_request("PUT", "/_matrix/federation/v1/send/t1", b'{"pdus": [1]}', headers),
                  401, "M_UNAUTHORIZED")
    await _expect(_request("PUT", "/_matrix/federation/v1/send/t2", good.body, headers), 401, "M_UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_request_addressed_to_another_server_is_401():
    await _expect(_signed(destination="someone-else.test"), 401, "M_UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_origin_outside_domain_whitelist_is_403():
    await _expect(_signed(), 403, "M_FORBIDDEN", _Hs(whitelist=frozenset({"friend.test"})))
    assert await _auth(_signed(), _Hs(whitelist=frozenset({"origin.test"}))) == "origin.test"


@pytest_twisted.ensureDeferred
async def test_non_json_body_is_400():
    header = sign_request("PUT", "/_matrix/x", "origin.test", "us.test", ORIGIN_KEY, {})
    await _expect(_request("PUT", "/_matrix/x", b"not json", [header]), 400, "M_NOT_JSON")
