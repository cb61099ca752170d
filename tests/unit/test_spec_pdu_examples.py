"""The spec's example PDUs (data/api/server-server/examples/pdu_v*.json), checked for the
consistency they allow: IDs well-formed for their room version, event IDs derived as the version
says, hash and redaction behaviour. The examples carry placeholder hashes and signatures by keys we
do not have, so signature validity is not asserted.

The examples are embedded below with their ``$ref``/``allOf`` parts resolved; when the spec checkout
is present, a test confirms the embedded copies still match it.
"""
import copy
import json
from pathlib import Path

import pytest
from unpaddedbase64 import decode_base64

from homeserver.protocol.events import Event
from homeserver.protocol.hashing import (
    add_hashes,
    check_content_hash,
    compute_event_id,
    compute_reference_hash,
)
from homeserver.protocol.ids import is_valid_event_id, is_valid_room_id, is_valid_user_id
from homeserver.protocol.redaction import redact
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat
from homeserver.protocol.signing import generate_signing_key, sign_event
from tests.spec_paths import SPEC_DIR

SPEC_EXAMPLES_DIR = SPEC_DIR / "data/api/server-server/examples"

_BASE = {
    "room_id": "!UcYsUzyxTGDxLBEvLy:example.org",
    "sender": "@alice:example.com",
    "origin_server_ts": 1404838188000,
    "depth": 12,
    "type": "m.room.message",
    "content": {"key": "value"},
    "hashes": {"sha256": "thishashcoversallfieldsincasethisisredacted"},
    "signatures": {"example.com": {
        "ed25519:key_version": "these86bytesofbase64signaturecoveressentialfieldsincludinghashessocancheckredactedpdus"}},
    "unsigned": {"age": 4612},
}
_V4_REFS = {
    "auth_events": ["$urlsafe_base64_encoded_eventid", "$a-different-event-id"],
    "prev_events": ["$urlsafe_base64_encoded_eventid", "$a-different-event-id"],
}
EXAMPLES = {
    "pdu_v1.json": {**_BASE,
                    "event_id": "$a4ecee13e2accdadf56c1025:example.com",
                    "auth_events": [["$af232176:example.org", {"sha256": "abase64encodedsha256hashshouldbe43byteslong"}]],
                    "prev_events": [["$af232176:example.org", {"sha256": "abase64encodedsha256hashshouldbe43byteslong"}]]},
    "pdu_v3.json": {**_BASE,
                    "auth_events": ["$base64encodedeventid", "$adifferenteventid"],
                    "prev_events": ["$base64encodedeventid", "$adifferenteventid"],
                    "redacts": "$some/old+event"},
    "pdu_v4.json": {**_BASE, **_V4_REFS, "redacts": "$some-old_event"},
    "pdu_v4_join_membership.json": {
        **_BASE, **_V4_REFS,
        "signatures": {
            "example.com": {"ed25519:key_version": "these86bytesofbase64signaturecoveressentialfieldsincludinghashessocancheckredactedpdus"},
            "resident.example.com": {"ed25519:other_key_version": "a different signature"}},
        "type": "m.room.member",
        "state_key": "@alice:example.com",
        "content": {"membership": "join", "join_authorised_via_users_server": "@arbitrary:resident.example.com"}},
    "pdu_v11.json": {**_BASE, **_V4_REFS},
    "pdu_v12.json": {**_BASE, **_V4_REFS, "room_id": "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"},
}
# The room versions each example's format is used for (rooms/v*.md "Event format").
EXAMPLE_VERSIONS = {
    "pdu_v1.json": ["1", "2"],
    "pdu_v3.json": ["3"],
    "pdu_v4.json": ["4", "5", "6", "7", "8", "9", "10"],
    "pdu_v4_join_membership.json": ["9", "10"],
    "pdu_v11.json": ["11"],
    "pdu_v12.json": ["12"],
}
CASES = [(name, v) for name, versions in EXAMPLE_VERSIONS.items() for v in versions]


def _resolve(path: Path) -> dict:
    """The example with ``$ref`` and ``allOf`` merged (later parts override earlier ones)."""
    raw = json.loads(path.read_text())
    return _merge(raw, path.parent)


def _merge(node: dict, base: Path) -> dict:
    out: dict = {}
    if "$ref" in node:
        out.update(_resolve(base / node["$ref"]))
    for part in node.get("allOf", []):
        out.update(_merge(part, base))
    out.update({k: v for k, v in node.items() if k not in ("$ref", "allOf")})
    return out


@pytest.mark.skipif(not SPEC_EXAMPLES_DIR.is_dir(), reason="matrix-spec checkout not available")
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_embedded_examples_match_the_spec_files(name):
    assert _resolve(SPEC_EXAMPLES_DIR / name) == EXAMPLES[name]


@pytest.mark.skipif(not SPEC_EXAMPLES_DIR.is_dir(), reason="matrix-spec checkout not available")
def test_every_pdu_example_in_the_spec_is_covered():
    assert {p.name for p in SPEC_EXAMPLES_DIR.glob("pdu_v*.json")} == set(EXAMPLES)


@pytest.mark.parametrize("name,version", CASES)
def test_example_identifiers_are_well_formed(name, version):
    pdu = EXAMPLES[name]
    rv = KNOWN_ROOM_VERSIONS[version]
    assert is_valid_user_id(pdu["sender"], strict=True)
    assert is_valid_room_id(pdu["room_id"])
    event = Event(pdu, rv)
    for ref in event.prev_event_ids + event.auth_event_ids:
        assert ref.startswith("$")
    if rv.event_format == EventFormat.V1:
        assert is_valid_event_id(pdu["event_id"])
        # v1-style references carry [event_id, {hashes}] pairs.
        assert all(isinstance(r, list) and len(r) == 2 for r in pdu["auth_events"] + pdu["prev_events"])
    else:
        assert "event_id" not in pdu
        assert all(isinstance(r, str) for r in pdu["auth_events"] + pdu["prev_events"])


def test_v12_example_room_id_has_the_hash_form():
    room_id = EXAMPLES["pdu_v12.json"]["room_id"]
    assert ":" not in room_id and len(room_id) == 44
    assert len(decode_base64(room_id[1:].replace("-", "+").replace("_", "/"))) == 32


@pytest.mark.parametrize("name,version", CASES)
def test_event_id_is_derived_as_the_room_version_says(name, version):
    pdu = EXAMPLES[name]
    rv = KNOWN_ROOM_VERSIONS[version]
    event_id = compute_event_id(pdu, rv)
    assert Event(pdu, rv).event_id == event_id
    assert is_valid_event_id(event_id)
    if rv.event_format == EventFormat.V1:
        assert event_id == pdu["event_id"]
        return
    assert len(event_id) == 44
    body = event_id[1:]
    if rv.event_format == EventFormat.V2:
        assert "-" not in body and "_" not in body
    else:
        assert "+" not in body and "/" not in body
    # Signatures and unsigned data do not affect the ID; the content hash does.
    resigned = sign_event(pdu, rv, "uzel.test", generate_signing_key("t"))
    assert compute_event_id({**resigned, "unsigned": {"age": 1}}, rv) == event_id
    assert compute_event_id(add_hashes(pdu), rv) != event_id


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_content_hash_is_a_placeholder_that_recomputation_replaces(name):
    pdu = EXAMPLES[name]
    assert len(decode_base64(pdu["hashes"]["sha256"])) == 32  # right shape for a SHA-256
    assert not check_content_hash(pdu)                        # but not the real hash
    assert check_content_hash(add_hashes(pdu))


@pytest.mark.parametrize("name,version", CASES)
def test_example_reference_hash_ignores_non_essential_content(name, version):
    pdu = EXAMPLES[name]
    rv = KNOWN_ROOM_VERSIONS[version]
    changed = copy.deepcopy(pdu)
    changed["content"]["key"] = "other value"
    changed["unsigned"] = {"age": 1}
    assert compute_reference_hash(changed, rv) == compute_reference_hash(pdu, rv)


@pytest.mark.parametrize("name,version", [("pdu_v3.json", "3"), ("pdu_v4.json", "4"), ("pdu_v4.json", "10")])
def test_top_level_redacts_is_not_protected_by_redaction(name, version):
    redacted = redact(EXAMPLES[name], KNOWN_ROOM_VERSIONS[version])
    assert "redacts" not in redacted and redacted["content"] == {}


@pytest.mark.parametrize("version,kept", [
    ("4", {"membership": "join"}),
    ("8", {"membership": "join"}),
    ("9", {"membership": "join", "join_authorised_via_users_server": "@arbitrary:resident.example.com"}),
    ("12", {"membership": "join", "join_authorised_via_users_server": "@arbitrary:resident.example.com"}),
])
def test_join_membership_example_redaction_keeps_authorising_server_from_v9(version, kept):
    redacted = redact(EXAMPLES["pdu_v4_join_membership.json"], KNOWN_ROOM_VERSIONS[version])
    assert redacted["content"] == kept
    # both servers' signatures survive redaction
    assert set(redacted["signatures"]) == {"example.com", "resident.example.com"}
