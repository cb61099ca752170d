"""sign_new_event gives exactly sign_event's signed event, the event ID computed from it and
the length of its canonical JSON, for every room version and event shape."""
import pytest

from homeserver.protocol.canonical_json import encode_canonical_json
from homeserver.protocol.hashing import compute_event_id
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat
from homeserver.protocol.signing import generate_signing_key, sign_event, sign_new_event

KEY = generate_signing_key("k1")
PDUS = [
    {"room_id": "!r:x", "type": "m.room.message", "sender": "@a:x", "depth": 5, "origin_server_ts": 1,
     "content": {"msgtype": "m.text", "body": "héllo ✓", "n": [1, 2.0, {"z": None}]},
     "prev_events": ["$p"], "auth_events": ["$a1", "$a2"]},
    {"room_id": "!r:x", "type": "m.room.member", "state_key": "@b:x", "sender": "@b:x", "depth": 6,
     "origin_server_ts": 2, "content": {"membership": "join", "displayname": "B"},
     "prev_events": [], "auth_events": []},
    {"type": "m.room.create", "state_key": "", "sender": "@a:x", "depth": 1, "origin_server_ts": 3,
     "content": {"room_version": "12"}, "prev_events": [], "auth_events": []},
]


@pytest.mark.parametrize("version", sorted(KNOWN_ROOM_VERSIONS, key=int))
@pytest.mark.parametrize("index", range(len(PDUS)))
def test_sign_new_event_matches_the_general_functions(version, index):
    rv = KNOWN_ROOM_VERSIONS[version]
    pdu = dict(PDUS[index])
    if rv.event_format == EventFormat.V1:
        pdu["event_id"] = "$abc:x"
    expected = sign_event(dict(pdu), rv, "x", KEY)
    signed, event_id, size = sign_new_event(dict(pdu), rv, "x", KEY)
    assert signed == expected
    assert event_id == compute_event_id(expected, rv)
    assert size == len(encode_canonical_json(expected))


def test_events_already_carrying_hashes_or_signatures_take_the_general_path():
    rv = KNOWN_ROOM_VERSIONS["11"]
    pdu = dict(PDUS[0], signatures={"y": {"ed25519:1": "sig"}}, unsigned={"age": 1})
    signed, event_id, size = sign_new_event(dict(pdu), rv, "x", KEY)
    assert signed == sign_event(dict(pdu), rv, "x", KEY) and signed["signatures"]["y"] == {"ed25519:1": "sig"}
    assert size == len(encode_canonical_json(signed)) and event_id == compute_event_id(signed, rv)
