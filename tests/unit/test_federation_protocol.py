"""Pure federation rules: received-PDU format checks and required signers
(homeserver/protocol/pdu.py), server ACL matching (homeserver/protocol/server_acl.py), the
sender's back-off and the multipart media framing."""
from __future__ import annotations

import pytest

from federation.handlers.remote_reads import multipart_body, parse_multipart
from federation.sender import backoff_interval_ms
from federation.sender.queue import MAX_RETRY_MS, MIN_RETRY_MS
from homeserver.protocol import signing
from homeserver.protocol.pdu import PduFormatError, parse_pdu, servers_that_must_sign
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.protocol.server_acl import server_allowed

V10, V12, V1 = KNOWN_ROOM_VERSIONS["10"], KNOWN_ROOM_VERSIONS["12"], KNOWN_ROOM_VERSIONS["1"]
KEY = signing.generate_signing_key("k")


def _pdu(rv=V10, **over):
    pdu = {"room_id": "!r:a.test", "type": "m.room.message", "sender": "@u:a.test", "content": {"body": "x"},
           "origin_server_ts": 1, "depth": 3, "prev_events": ["$" + "a" * 43], "auth_events": ["$" + "b" * 43]}
    pdu.update(over)
    return signing.sign_event(pdu, rv, "a.test", KEY)


def test_a_well_formed_pdu_parses_to_an_event():
    ev = parse_pdu(_pdu(), V10)
    assert ev.sender == "@u:a.test" and ev.event_id.startswith("$")


@pytest.mark.parametrize("change", [
    {"sender": "not-a-user"}, {"content": []}, {"depth": -1}, {"depth": "3"}, {"origin_server_ts": 1.5},
    {"prev_events": "$x"}, {"prev_events": [["$" + "a" * 43, {}]]}, {"auth_events": ["$" + "b" * 43] * 11},
    {"room_id": 5}, {"state_key": 3}, {"content": {"n": 2 ** 60}},
])
def test_malformed_pdus_are_refused(change):
    with pytest.raises(PduFormatError):
        parse_pdu(_pdu(**change), V10)


def test_oversized_pdus_are_refused():
    with pytest.raises(PduFormatError):
        parse_pdu(_pdu(content={"body": "x" * 70_000}), V10)


def test_v12_create_events_carry_no_room_id_and_v1_events_need_an_event_id():
    create = signing.sign_event({"type": "m.room.create", "state_key": "", "sender": "@u:a.test",
                                 "content": {"room_version": "12"}, "origin_server_ts": 1, "depth": 1,
                                 "prev_events": [], "auth_events": []}, V12, "a.test", KEY)
    assert parse_pdu(create, V12).room_id.startswith("!")
    with pytest.raises(PduFormatError):
        parse_pdu(dict(create, room_id="!r:a.test"), V12)
    with pytest.raises(PduFormatError):
        parse_pdu(_pdu(V1, prev_events=[], auth_events=[]), V1)


def test_signers_are_the_sender_event_id_and_restricted_join_authoriser_servers():
    assert servers_that_must_sign(parse_pdu(_pdu(), V10)) == {"a.test"}
    v1 = parse_pdu(_pdu(V1, event_id="$e:b.test", prev_events=[], auth_events=[]), V1)
    assert servers_that_must_sign(v1) == {"a.test", "b.test"}
    join = parse_pdu(_pdu(type="m.room.member", state_key="@u:a.test",
                          content={"membership": "join", "join_authorised_via_users_server": "@m:c.test"}), V10)
    assert servers_that_must_sign(join) == {"a.test", "c.test"}
    third_party = parse_pdu(_pdu(type="m.room.member", state_key="@v:d.test",
                                 content={"membership": "invite", "third_party_invite": {}}), V10)
    assert servers_that_must_sign(third_party) == set()


def test_server_acl_checks_ip_literals_then_deny_then_allow_ignoring_ports():
    acl = {"allow": ["*.example.org", "good.test"], "deny": ["bad.example.org"], "allow_ip_literals": False}
    assert server_allowed("chat.example.org:8448", acl)
    assert not server_allowed("bad.example.org", acl)
    assert not server_allowed("other.test", acl)
    assert not server_allowed("1.2.3.4", dict(acl, allow=["*"]))
    assert server_allowed("[::1]:8448", {"allow": ["*"]})
    assert not server_allowed("anything", {})
    assert server_allowed("anything", None)
    assert server_allowed("GOOD.test", acl)


def test_backoff_doubles_from_the_minimum_up_to_the_cap():
    assert backoff_interval_ms(0) == MIN_RETRY_MS
    assert backoff_interval_ms(MIN_RETRY_MS, rng=lambda: 0.5) == 2 * MIN_RETRY_MS
    assert backoff_interval_ms(MAX_RETRY_MS, rng=lambda: 1.0) == MAX_RETRY_MS


def test_multipart_media_bodies_round_trip():
    body, ctype = multipart_body(b"{}", b"\r\nbinary\r\n--x", "image/png", 'inline; filename="a.png"')
    parts = parse_multipart(ctype, body)
    assert parts[0] == ({"content-type": "application/json"}, b"{}")
    assert parts[1][0]["content-type"] == "image/png" and parts[1][1] == b"\r\nbinary\r\n--x"


# --- invite_room_state (invites-v2.yaml, spec v1.16) ------------------------------------------------
from homeserver.protocol.pdu import InviteStateError, parse_invite_room_state  # noqa: E402


def _v12_create(**content):
    return signing.sign_event({"type": "m.room.create", "state_key": "", "sender": "@u:a.test",
                               "content": {"room_version": "12", **content}, "origin_server_ts": 1, "depth": 1,
                               "prev_events": [], "auth_events": []}, V12, "a.test", KEY)


def test_invite_room_state_of_v12_rooms_must_hold_the_rooms_create_pdu():
    create = _v12_create()
    room_id = parse_pdu(create, V12).room_id
    name = signing.sign_event({"type": "m.room.name", "state_key": "", "sender": "@u:a.test", "room_id": room_id,
                               "content": {"name": "n"}, "origin_server_ts": 2, "depth": 2,
                               "prev_events": ["$" + "a" * 43], "auth_events": ["$" + "b" * 43]},
                              V12, "a.test", KEY)
    events = parse_invite_room_state([create, name], room_id, V12)
    assert [e.type for e in events] == ["m.room.create", "m.room.name"]
    assert V12.strict_invite_room_state and not V10.strict_invite_room_state


@pytest.mark.parametrize("raw,errcode", [
    (None, "M_MISSING_PARAM"),
    ({"type": "m.room.create"}, "M_INVALID_PARAM"),
    ([], "M_INVALID_PARAM"),                                                       # no create
    ([{"type": "m.room.create", "state_key": "", "sender": "@u:a.test", "content": {}}], "M_INVALID_PARAM"),
    ([_v12_create(other="room")], "M_INVALID_PARAM"),                              # another room's create
    (["not an event"], "M_INVALID_PARAM"),
])
def test_malformed_invite_room_state_is_refused(raw, errcode):
    room_id = parse_pdu(_v12_create(), V12).room_id
    with pytest.raises(InviteStateError) as e:
        parse_invite_room_state(raw, room_id, V12)
    assert e.value.errcode == errcode
