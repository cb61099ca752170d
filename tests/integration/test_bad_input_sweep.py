"""Every client-server operation uzel serves refuses bad input with a spec error, on both engines.

The operations come from the spec's OpenAPI files (tests/integration/openapi_cases.py); each is sent,
with the token of a user who has a room, a non-JSON body, a JSON array, each required field left
out, fields of the wrong JSON type, malformed query values, bad IDs in each path parameter, a 2 MB
body and no token. Rules (client-server-api "Standard error response", "Access tokens"):
never a 5xx; a 4xx carries a JSON ``errcode`` (a user-interactive-auth 401 carries ``flows``);
no token → 401 ``M_MISSING_TOKEN``; a non-JSON body → 400 ``M_NOT_JSON``; a JSON array → 400
``M_BAD_JSON``; a body over the limit → 413 ``M_TOO_LARGE``. Afterwards the server still answers
/versions and its log holds no traceback. Operations answered 404/405 ``M_UNRECOGNIZED`` by the
router are "not implemented" and listed (printed with ``-s``).
"""
from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse

import pytest

from tests.integration import openapi_cases
from tests.integration.harness import api, login, make_server_fixture, register_user
from tests.integration.openapi_cases import Case, Operation

server = make_server_fixture({"federation_domain_whitelist": ["test.local"]})

PASSWORD = "sweep password 123"
TXN_PLACEHOLDER = "SWEEPTXN"
REQUEST_TIMEOUT_S = 20


@dataclass
class Outcome:
    case: Case
    status: int
    body: object  # parsed JSON or None
    raw: bytes


@dataclass
class SweepResult:
    outcomes: list[Outcome] = field(default_factory=list)
    not_implemented: list[Operation] = field(default_factory=list)
    swept: list[Operation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # transport failures (timeouts, resets)
    seconds: float = 0.0


class RawClient:
    """Keep-alive HTTP client that sends paths exactly as given (no dot-segment normalisation)."""

    def __init__(self, base_url: str):
        u = urlparse(base_url)
        self.host, self.port = u.hostname, u.port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, query: dict, body: bytes | None, ctype: str | None,
                token: str | None) -> tuple[int, bytes]:
        if query:
            path = path + "?" + urlencode(query)
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if ctype:
            headers["Content-Type"] = ctype
        if body is not None:
            headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.HTTPException, ConnectionError) as e:
                self.close()
                if attempt:
                    raise OSError(f"{method} {path}: {e!r}") from e

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class SweepContext:
    """The user, room and objects the valid parts of each request point at; re-created when a
    case logged the user out, made them leave, or deactivated them."""

    def __init__(self, base: str):
        self.base = base
        self.values: dict = {}
        self.setup()

    def setup(self) -> None:
        base = self.base
        n = uuid.uuid4().hex[:8]
        self.name = f"sweep{n}"
        self.user_id, self.token, self.device_id = register_user(base, self.name, PASSWORD)
        bob_id, bob_token, _ = register_user(base, f"bob{n}", PASSWORD)
        other_device = login(base, self.name, PASSWORD, device_id="SWEEPDEV")["device_id"]
        self.make_room()
        status, media = api(base, "POST", "/_matrix/media/v3/upload", self.token, data=b"sweep media",
                            headers={"Content-Type": "text/plain"})
        assert status == 200, media
        media_id = media["content_uri"].rsplit("/", 1)[1]
        status, filt = api(base, "POST", f"/_matrix/client/v3/user/{self.user_id}/filter", self.token,
                           json={"room": {"timeline": {"limit": 5}}})
        assert status == 200, filt
        status, backup = api(base, "POST", "/_matrix/client/v3/room_keys/version", self.token,
                             json={"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                                   "auth_data": {"public_key": "abcdefg", "signatures": {}}})
        version = backup.get("version", "1") if status == 200 else "1"
        status, created = api(base, "POST", "/_matrix/media/v1/create", self.token)
        upload_id = created["content_uri"].rsplit("/", 1)[1] if status == 200 else "nomedia"
        self.values = {
            # path parameters
            "userId": self.user_id, "roomId": self.room_id, "eventId": self.event_id,
            "roomIdOrAlias": self.room_id, "roomAlias": self.alias, "serverName": "test.local",
            "mediaId": media_id, "uploadCreate.mediaId": upload_id, "eventType": "org.example.sweep",
            "stateKey": "sweep", "txnId": TXN_PLACEHOLDER, "type": "org.example.sweep",
            "keyName": "displayname", "kind": "override", "ruleId": "sweep_rule", "receiptType": "m.read",
            "tag": "u.sweep", "version": version, "sessionId": "sweepsession", "deviceId": other_device,
            "filterId": filt["filter_id"], "relType": "m.annotation", "protocol": "irc", "networkId": "irc",
            "appserviceId": "sweep", "idpId": "sweep", "fileName": "f.txt",
            # IDs inside bodies and queries
            "mx-user-id": bob_id, "user_id": bob_id, "mx-room-id": self.room_id, "room_id": self.room_id,
            "mx-event-id": self.event_id, "event_id": self.event_id, "mx-server-name": "test.local",
            "server_name": "test.local",
        }
        self.bob_token = bob_token

    def make_room(self) -> None:
        n = uuid.uuid4().hex[:8]
        status, room = api(self.base, "POST", "/_matrix/client/v3/createRoom", self.token,
                           json={"preset": "public_chat", "room_alias_name": f"sweep{n}", "name": "sweep"})
        assert status == 200, room
        self.room_id = room["room_id"]
        self.alias = f"#sweep{n}:test.local"
        status, sent = api(self.base, "PUT", f"/_matrix/client/v3/rooms/{self.room_id}/send/m.room.message/t{n}",
                           self.token, json={"msgtype": "m.text", "body": "hello"})
        assert status == 200, sent
        self.event_id = sent["event_id"]

    def ensure(self) -> None:
        """After an operation's cases: the token still works and the user is still in the room."""
        status, _ = api(self.base, "GET", "/_matrix/client/v3/account/whoami", self.token)
        if status != 200:
            try:
                self.token = login(self.base, self.name, PASSWORD)["access_token"]
            except AssertionError:  # deactivated: start over with a new user
                self.setup()
                return
        status, joined = api(self.base, "GET", "/_matrix/client/v3/joined_rooms", self.token)
        if status == 200 and self.room_id in joined["joined_rooms"]:
            return
        status, _ = api(self.base, "POST", f"/_matrix/client/v3/join/{self.room_id}", self.token, json={})
        if status != 200:
            self.make_room()
            self.values.update({"roomId": self.room_id, "roomIdOrAlias": self.room_id, "roomAlias": self.alias,
                                "eventId": self.event_id, "mx-room-id": self.room_id, "room_id": self.room_id,
                                "mx-event-id": self.event_id, "event_id": self.event_id})


def _parse(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def _send(client: RawClient, case: Case, token: str) -> Outcome:
    path = case.path.replace(TXN_PLACEHOLDER, "t" + uuid.uuid4().hex)
    status, raw = client.request(case.op.method, path, case.query, case.body, case.content_type,
                                 token if case.with_token else None)
    return Outcome(case, status, _parse(raw), raw)


def _unrecognized(status: int, body) -> bool:
    return status in (404, 405) and isinstance(body, dict) and body.get("errcode") == "M_UNRECOGNIZED"


def _operations() -> list[Operation]:
    seen, ops = set(), []
    for op in openapi_cases.load_operations():
        key = (op.method, op.full_template)
        if key not in seen:
            seen.add(key)
            ops.append(op)
    return ops


def run_sweep(base_url: str) -> SweepResult:
    result = SweepResult()
    started = time.monotonic()
    ctx = SweepContext(base_url)
    client = RawClient(base_url)
    rng = random.Random(20240611)
    try:
        for op in _operations():
            values = dict(ctx.values)
            if op.operation_id == "uploadContentToMXC":
                values["mediaId"] = values["uploadCreate.mediaId"]
            cases = openapi_cases.bad_input_cases(op, values, rng)
            if op.appservice_only:  # a user's token is refused before the body is read
                cases = [c for c in cases if c.kind == "no_token" or c.kind.startswith(("path:", "query:"))]
            # Probe: the valid request without a token (harmless on every route); the router's
            # 404/405 M_UNRECOGNIZED means the operation is not served.
            probe = Case(op, "probe", openapi_cases.fill_path(op, values), openapi_cases.base_query(op, values),
                         None, None, with_token=False)
            if op.takes_json_body:
                probe.body, probe.content_type = json.dumps(openapi_cases.valid_body(op, values)).encode(), \
                    "application/json"
            try:
                first = _send(client, probe, ctx.token)
            except OSError as e:
                result.errors.append(str(e))
                continue
            if _unrecognized(first.status, first.body):
                result.not_implemented.append(op)
                continue
            result.swept.append(op)
            result.outcomes.append(first)
            for case in cases:
                try:
                    result.outcomes.append(_send(client, case, ctx.token))
                except OSError as e:
                    result.errors.append(f"{case.label}: {e}")
            ctx.ensure()
    finally:
        client.close()
    result.seconds = time.monotonic() - started
    return result


@pytest.fixture(scope="module")
def sweep(server) -> SweepResult:
    result = run_sweep(server.base_url)
    print(f"\n[{server.engine}] swept {len(result.swept)} operations, {len(result.outcomes)} requests "
          f"in {result.seconds:.1f}s; not implemented ({len(result.not_implemented)}):")
    for op in result.not_implemented:
        print(f"  not implemented: {op}")
    accepted = [o for o in result.outcomes if 200 <= o.status < 300 and o.case.kind.startswith(("missing:", "type:"))]
    for o in accepted:
        print(f"  accepted (2xx): {o.case.label}")
    return result


def _fmt(outcomes: list[Outcome], limit: int = 40) -> str:
    lines = [f"{o.case.label} -> {o.status} {o.raw[:200]!r}" for o in outcomes[:limit]]
    if len(outcomes) > limit:
        lines.append(f"... and {len(outcomes) - limit} more")
    return "\n".join(lines)


def test_sweep_covers_the_served_api_within_the_time_budget(sweep):
    assert len(sweep.swept) >= 100, [str(op) for op in sweep.swept]
    assert not sweep.errors, "\n".join(sweep.errors[:40])
    assert sweep.seconds < 180


def _remote_unreachable(o: Outcome) -> bool:
    """``?server=`` names a syntactically valid but unreachable server (federation is limited to
    test.local): 502 is the answer for a directory that cannot be fetched."""
    return o.case.kind.startswith("query:server:") and o.status == 502 and isinstance(o.body, dict) \
        and "errcode" in o.body


def test_no_bad_input_gets_a_5xx(sweep):
    bad = [o for o in sweep.outcomes if o.status >= 500 and not _remote_unreachable(o)]
    assert not bad, _fmt(bad)


def test_every_4xx_is_json_with_an_errcode(sweep):
    def ok(o: Outcome) -> bool:
        if not isinstance(o.body, dict):
            return False
        if isinstance(o.body.get("errcode"), str):
            return True
        return o.status == 401 and "flows" in o.body  # user-interactive auth
    bad = [o for o in sweep.outcomes if 400 <= o.status < 500 and not ok(o)]
    assert not bad, _fmt(bad)


def test_no_token_gets_401_missing_token(sweep):
    bad = [o for o in sweep.outcomes if o.case.kind == "no_token"
           and not (o.status == 401 and isinstance(o.body, dict) and o.body.get("errcode") == "M_MISSING_TOKEN")]
    assert not bad, _fmt(bad)


def test_a_body_that_is_not_json_gets_m_not_json(sweep):
    bad = [o for o in sweep.outcomes if o.case.kind == "not_json"
           and not (o.status == 400 and isinstance(o.body, dict) and o.body.get("errcode") == "M_NOT_JSON")]
    assert not bad, _fmt(bad)


def test_a_json_array_body_gets_m_bad_json(sweep):
    bad = [o for o in sweep.outcomes if o.case.kind == "array"
           and not (o.status == 400 and isinstance(o.body, dict) and o.body.get("errcode") == "M_BAD_JSON")]
    assert not bad, _fmt(bad)


def test_a_2mb_json_body_gets_413_m_too_large(sweep):
    bad = [o for o in sweep.outcomes if o.case.kind == "too_large"
           and not (o.status == 413 and isinstance(o.body, dict) and o.body.get("errcode") == "M_TOO_LARGE")]
    assert not bad, _fmt(bad)


def test_a_missing_required_field_is_refused(sweep):
    bad = [o for o in sweep.outcomes if o.case.kind.startswith("missing:") and o.status < 400]
    assert not bad, _fmt(bad)


def test_server_still_answers_and_logged_no_traceback(server, sweep):
    status, body = api(server.base_url, "GET", "/_matrix/client/versions")
    assert status == 200 and "versions" in body
    log = server.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:log.index("Traceback") + 3000]
