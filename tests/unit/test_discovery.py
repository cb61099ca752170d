"""Server name resolution (server-server-api.md "Resolving server names") as decision tables,
the .well-known parsing and caching rules, and the outbound IP deny list on resolved addresses."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web import resource, server

from config.loader import parse_config
from federation import discovery
from federation.client import FederationClient, FederationDenied, FederationError
from federation.discovery import SrvRecord, WellKnownError, resolve
from homeserver.protocol import signing

H = 3600 * 1000
FED = "_matrix-fed._tcp."
OLD = "_matrix._tcp."


# --- the decision table -----------------------------------------------------------------------
# (server name, .well-known m.server or None, SRV answers) -> (Host header, TLS name, SNI, targets)
CASES = [
    # step 1: IP literals, with and without port; .well-known is never consulted
    ("1.2.3.4", "ignored.test", {}, "1.2.3.4", "1.2.3.4", None, [("1.2.3.4", 8448)]),
    ("1.2.3.4:1234", None, {}, "1.2.3.4:1234", "1.2.3.4", None, [("1.2.3.4", 1234)]),
    ("[2001:db8::1]", None, {}, "[2001:db8::1]", "2001:db8::1", None, [("2001:db8::1", 8448)]),
    ("[2001:db8::1]:99", None, {}, "[2001:db8::1]:99", "2001:db8::1", None, [("2001:db8::1", 99)]),
    # step 2: explicit port; no .well-known, no SRV
    ("example.test:1234", "ignored.test", {FED + "example.test": [SrvRecord(0, 0, 1, "x.test")]},
     "example.test:1234", "example.test", "example.test", [("example.test", 1234)]),
    # step 3.1: delegated to an IP literal (Host is the IP, with port when given)
    ("example.test", "5.6.7.8", {}, "5.6.7.8", "5.6.7.8", None, [("5.6.7.8", 8448)]),
    ("example.test", "5.6.7.8:9000", {}, "5.6.7.8:9000", "5.6.7.8", None, [("5.6.7.8", 9000)]),
    # step 3.2: delegated name with port
    ("example.test", "matrix.example.test:443", {FED + "matrix.example.test": [SrvRecord(0, 0, 1, "x.test")]},
     "matrix.example.test:443", "matrix.example.test", "matrix.example.test", [("matrix.example.test", 443)]),
    # step 3.3: delegated name, SRV _matrix-fed on the delegated name
    ("example.test", "matrix.example.test", {FED + "matrix.example.test": [SrvRecord(0, 0, 8443, "srv.example.test.")]},
     "matrix.example.test", "matrix.example.test", "matrix.example.test", [("srv.example.test", 8443)]),
    # step 3.4 (deprecated): only _matrix._tcp on the delegated name
    ("example.test", "matrix.example.test", {OLD + "matrix.example.test": [SrvRecord(0, 0, 7000, "old.example.test")]},
     "matrix.example.test", "matrix.example.test", "matrix.example.test", [("old.example.test", 7000)]),
    # _matrix-fed wins over _matrix
    ("example.test", "m.example.test", {FED + "m.example.test": [SrvRecord(0, 0, 1, "new.test")],
                                        OLD + "m.example.test": [SrvRecord(0, 0, 2, "old.test")]},
     "m.example.test", "m.example.test", "m.example.test", [("new.test", 1)]),
    # step 3.5: delegated name, no SRV: port 8448
    ("example.test", "matrix.example.test", {}, "matrix.example.test", "matrix.example.test",
     "matrix.example.test", [("matrix.example.test", 8448)]),
    # SRV records of the *original* name are not used once delegated
    ("example.test", "matrix.example.test", {FED + "example.test": [SrvRecord(0, 0, 1, "x.test")]},
     "matrix.example.test", "matrix.example.test", "matrix.example.test", [("matrix.example.test", 8448)]),
    # step 4: .well-known failed, SRV _matrix-fed on the original name; Host stays the server name
    ("example.test", None, {FED + "example.test": [SrvRecord(10, 0, 8448, "fed.example.test")]},
     "example.test", "example.test", "example.test", [("fed.example.test", 8448)]),
    # step 5 (deprecated): _matrix._tcp
    ("example.test", None, {OLD + "example.test": [SrvRecord(10, 0, 9448, "fed.example.test")]},
     "example.test", "example.test", "example.test", [("fed.example.test", 9448)]),
    # step 6: nothing: hostname and 8448
    ("example.test", None, {}, "example.test", "example.test", "example.test", [("example.test", 8448)]),
    # SRV "." target: service explicitly not offered -> fall through to the next name / 8448
    ("example.test", None, {FED + "example.test": [SrvRecord(0, 0, 0, ".")]},
     "example.test", "example.test", "example.test", [("example.test", 8448)]),
]


@pytest.mark.parametrize("name,well_known,srv,host_header,tls_name,sni,targets", CASES)
def test_resolution_decision_table(name, well_known, srv, host_header, tls_name, sni, targets):
    plan, got = resolve(name, well_known, srv)
    assert (plan.host_header, plan.tls_name, plan.sni, got) == (host_header, tls_name, sni, targets)


@pytest.mark.parametrize("name,needed", [
    ("example.test", True), ("example.test:8448", False), ("1.2.3.4", False), ("[::1]", False),
    ("localhost", True),
])
def test_well_known_is_only_needed_for_hostnames_without_port(name, needed):
    assert discovery.needs_well_known(name) is needed


def test_srv_records_are_ordered_by_priority_then_weight():
    records = [SrvRecord(20, 0, 1, "c.test"), SrvRecord(10, 1, 2, "b.test"), SrvRecord(10, 99, 3, "a.test")]
    assert discovery.order_srv_records(records, rng=lambda: 0.0) == [("a.test", 3), ("b.test", 2), ("c.test", 1)]
    # a high random draw picks the lighter one first within the same priority
    assert discovery.order_srv_records(records, rng=lambda: 0.999)[:2] == [("b.test", 2), ("a.test", 3)]


# --- .well-known ------------------------------------------------------------------------------

@pytest.mark.parametrize("body,expected", [
    (b'{"m.server": "delegated.test:1234"}', "delegated.test:1234"),
    (b'{"m.server": "[::1]"}', "[::1]"),
])
def test_well_known_body_gives_the_delegated_name(body, expected):
    assert discovery.parse_well_known(body) == expected


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}", b'{"m.server": 5}', b'{"m.server": "bad name!"}',
    b'{"m.server": "host:99999999"}', b"\xff",
])
def test_invalid_well_known_bodies_are_errors(body):
    with pytest.raises(WellKnownError):
        discovery.parse_well_known(body)


@pytest.mark.parametrize("headers,expected", [
    ({}, 24 * H),
    ({"cache-control": "max-age=3600"}, H),
    ({"cache-control": "public, max-age=864000"}, 48 * H),  # capped
    ({"cache-control": "no-store"}, 0),
    ({"expires": "Thu, 01 Jan 1970 02:00:00 GMT"}, 2 * H),  # now is the epoch below
    ({"expires": "garbage"}, 0),
    ({"cache-control": "max-age=60", "expires": "Thu, 01 Jan 1970 05:00:00 GMT"}, 60 * 1000),
])
def test_well_known_cache_period_follows_cache_headers(headers, expected):
    assert discovery.well_known_cache_ms(headers, now_ms=0) == expected


def test_well_known_errors_back_off_to_at_most_an_hour():
    periods = [discovery.well_known_error_cache_ms(n) for n in range(1, 8)]
    assert periods[0] == 5 * 60 * 1000 and periods == sorted(periods) and periods[-1] == H


class _FakeResponse:
    def __init__(self, code, body, headers=None):
        from twisted.web.http_headers import Headers
        self.code = code
        self._body = body
        self.headers = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
        self.length = len(body)

    def deliverBody(self, protocol):
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class _FakeAgent:
    def __init__(self, responses):
        self.responses = responses
        self.requests = []

    def request(self, method, uri, headers=None, body=None):
        from twisted.internet import defer
        self.requests.append(uri)
        r = self.responses.pop(0)
        return defer.fail(r) if isinstance(r, Exception) else defer.succeed(r)


@pytest_twisted.ensureDeferred
async def test_well_known_answers_and_errors_are_cached():
    now = [0]
    agent = _FakeAgent([_FakeResponse(200, b'{"m.server": "d.test:443"}', {"Cache-Control": "max-age=60"}),
                        _FakeResponse(404, b"nope"),
                        _FakeResponse(200, b'{"m.server": "e.test"}')])
    wk = discovery.WellKnownResolver(reactor, agent, lambda: now[0])
    assert await wk.delegated_name("example.test") == "d.test:443"
    assert agent.requests == [b"https://example.test/.well-known/matrix/server"]
    assert await wk.delegated_name("example.test") == "d.test:443"  # cached
    now[0] = 61_000
    assert await wk.delegated_name("example.test") is None  # 404: error, cached 5 min
    now[0] += 4 * 60 * 1000
    assert await wk.delegated_name("example.test") is None
    assert len(agent.requests) == 2
    now[0] += 60 * 1000
    assert await wk.delegated_name("example.test") == "e.test"
    assert await wk.delegated_name("example.test:8448") is None  # step 2: never asked
    assert len(agent.requests) == 3


# --- the deny list applies to resolved addresses -----------------------------------------------

class FakeDns(discovery.DnsResolver):
    def __init__(self, addresses=None, srv=None):
        self._addresses = addresses or {}
        self._srv = srv or {}
        self.queries = []

    async def srv(self, name):
        self.queries.append(("SRV", name))
        return list(self._srv.get(name, []))

    async def addresses(self, host):
        self.queries.append(("A", host))
        return list(self._addresses.get(host, []))


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"host": request.getHeader(b"host").decode(),
                           "auth": request.getHeader(b"authorization").decode()}).encode()


@pytest.fixture
def local_http():
    port = reactor.listenTCP(0, server.Site(_Hello()), interface="127.0.0.1")
    yield port.getHost().port
    port.stopListening()


def _client(tmp_path, dns, **config):
    cfg = parse_config({"server_name": "us.test", **config}, config_dir=str(tmp_path))
    hs = SimpleNamespace(config=cfg, reactor=reactor, hostname="us.test", clock_ms=lambda: 0,
                         signing_key=signing.generate_signing_key("k"))
    return FederationClient(hs, dns=dns)


@pytest_twisted.ensureDeferred
async def test_name_resolving_to_loopback_is_blocked_by_default(tmp_path, local_http):
    dest = f"sneaky.test:{local_http}"
    client = _client(tmp_path, FakeDns({"sneaky.test": ["127.0.0.1"]}),
                     federation_client_plain_http_destinations=[dest])
    with pytest.raises(FederationDenied):
        await client.get_json(dest, "/_matrix/federation/v1/version")
    with pytest.raises(FederationDenied):  # an IP literal is checked too
        await client.get_json(f"127.0.0.1:{local_http}", "/_matrix/federation/v1/version")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_whitelisted_range_is_reached_with_host_header_and_signature(tmp_path, local_http):
    dest = f"friendly.test:{local_http}"
    dns = FakeDns({"friendly.test": ["127.0.0.1"]})
    client = _client(tmp_path, dns, federation_client_plain_http_destinations=[dest],
                     ip_range_whitelist=["127.0.0.0/8"])
    got = await client.get_json(dest, "/_matrix/federation/v1/version")
    assert got["host"] == dest
    assert got["auth"].startswith(f'X-Matrix origin="us.test",destination="{dest}",key="ed25519:k",sig=')
    assert ("A", "friendly.test") in dns.queries
    await client.close()


@pytest_twisted.ensureDeferred
async def test_domain_whitelist_refuses_other_destinations_before_any_io(tmp_path):
    dns = FakeDns()
    client = _client(tmp_path, dns, federation_domain_whitelist=["friend.test"])
    with pytest.raises(FederationDenied):
        await client.get_json("stranger.test", "/_matrix/federation/v1/version")
    assert dns.queries == []
    await client.close()


@pytest_twisted.ensureDeferred
async def test_srv_target_is_resolved_and_checked_against_the_deny_list(tmp_path):
    dns = FakeDns({"fed.example.test": ["10.1.2.3"]},
                  {"_matrix-fed._tcp.example.test": [SrvRecord(0, 0, 8448, "fed.example.test")]})
    client = _client(tmp_path, dns)
    client.well_known = SimpleNamespace(delegated_name=_async(None))
    with pytest.raises(FederationDenied):
        await client.get_json("example.test", "/_matrix/federation/v1/version", timeout_s=5)
    assert dns.queries == [("SRV", "_matrix-fed._tcp.example.test"), ("A", "fed.example.test")]
    await client.close()


@pytest_twisted.ensureDeferred
async def test_error_status_becomes_federation_error(tmp_path, local_http):
    dest = f"127.0.0.1:{local_http}"
    client = _client(tmp_path, FakeDns(), federation_client_plain_http_destinations=[dest],
                     ip_range_whitelist=["127.0.0.0/8"])
    with pytest.raises(FederationError) as exc:
        await client.post_json(dest, "/_matrix/federation/v1/version", {})  # _Hello has no POST
    assert exc.value.code == 405
    await client.close()


def _async(value):
    async def f(*_a, **_k):
        return value
    return f
