"""Content/reference hashes, event IDs, JSON and event signatures.

Vectors from appendices.md "Cryptographic Test Vectors"; algorithms from server-server-api.md
"Signing Events".
"""
import copy
import hashlib
import os

import pytest
from signedjson.key import decode_signing_key_base64
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.protocol.canonical_json import encode_canonical_json
from homeserver.protocol.events import Event
from homeserver.protocol.hashing import (
    add_hashes,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    room_id_for_create_event,
)
from homeserver.protocol.redaction import redact
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RedactionRules
from homeserver.protocol.signing import (
    SignatureError,
    decode_verify_key,
    generate_signing_key,
    key_id,
    read_signing_keys,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_json,
    verify_key_base64,
)

# appendices.md "Signing Key"
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER_NAME = "domain"
KEY_ID = "ed25519:1"
V1 = KNOWN_ROOM_VERSIONS["1"]
V3 = KNOWN_ROOM_VERSIONS["3"]
V10 = KNOWN_ROOM_VERSIONS["10"]
V11 = KNOWN_ROOM_VERSIONS["11"]
V12 = KNOWN_ROOM_VERSIONS["12"]
# Versions whose redaction algorithm keeps top-level "origin", as the spec's event vectors assume.
ORIGIN_KEEPING = [rv for rv in KNOWN_ROOM_VERSIONS.values() if rv.redaction_rules < RedactionRules.V11]


@pytest.fixture(scope="module")
def spec_key():
    return decode_signing_key_base64("ed25519", "1", SEED)


# --- appendices.md "JSON Signing" ----------------------------------------------------------

def test_signing_empty_object_matches_spec_vector(spec_key):
    assert sign_json({}, SERVER_NAME, spec_key) == {
        "signatures": {"domain": {"ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}
    }


def test_signing_object_with_values_matches_spec_vector(spec_key):
    assert sign_json({"one": 1, "two": "Two"}, SERVER_NAME, spec_key) == {
        "one": 1,
        "signatures": {"domain": {"ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},
        "two": "Two",
    }


def test_sign_json_ignores_unsigned_and_keeps_other_signatures(spec_key):
    obj = {"one": 1, "two": "Two", "unsigned": {"age_ts": 5},
           "signatures": {"other.example": {"ed25519:x": "abc"}}}
    signed = sign_json(obj, SERVER_NAME, spec_key)
    assert signed["signatures"]["domain"]["ed25519:1"].startswith("KqmLSbO39")
    assert signed["signatures"]["other.example"] == {"ed25519:x": "abc"}
    assert signed["unsigned"] == {"age_ts": 5}
    assert "domain" not in obj["signatures"]  # input untouched


def test_verify_json_accepts_spec_vector_and_rejects_tampering(spec_key):
    vk = decode_verify_key(KEY_ID, verify_key_base64(spec_key))
    signed = sign_json({"one": 1, "two": "Two"}, SERVER_NAME, spec_key)
    verify_json(signed, SERVER_NAME, KEY_ID, vk)
    verify_json({**signed, "unsigned": {"anything": 1}}, SERVER_NAME, KEY_ID, vk)
    with pytest.raises(SignatureError):
        verify_json({**signed, "one": 2}, SERVER_NAME, KEY_ID, vk)


@pytest.mark.parametrize("signatures", [
    None,
    {},
    {"domain": {}},
    {"domain": {"ed25519:1": "!!not base64!!"}},
    {"domain": {"ed25519:1": "AAAA"}},
    {"domain": {"ed25519:1": 5}},
    {"domain": "notadict"},
    {"other": {"ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}},
])
def test_verify_json_raises_signature_error_for_missing_or_malformed_signatures(spec_key, signatures):
    vk = spec_key.verify_key
    obj = {} if signatures is None else {"signatures": signatures}
    with pytest.raises(SignatureError):
        verify_json(obj, SERVER_NAME, KEY_ID, vk)
    assert issubclass(SignatureError, ValueError)


def test_signature_by_another_key_does_not_verify(spec_key):
    other = generate_signing_key("1")
    signed = sign_json({"a": 1}, SERVER_NAME, other)
    with pytest.raises(SignatureError):
        verify_json(signed, SERVER_NAME, KEY_ID, spec_key.verify_key)


# --- appendices.md "Event Signing" ---------------------------------------------------------

MINIMAL_EVENT = {
    "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain", "origin_server_ts": 1000000,
    "signatures": {}, "hashes": {}, "type": "X", "content": {}, "prev_events": [],
    "auth_events": [], "depth": 3, "unsigned": {"age_ts": 1000000},
}
MINIMAL_EVENT_SIGNED = {
    "auth_events": [], "content": {}, "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain", "origin_server_ts": 1000000, "prev_events": [], "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {"domain": {"ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
    "type": "X", "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT = {
    "content": {"body": "Here is the message content"}, "event_id": "$0:domain", "origin": "domain",
    "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain",
    "sender": "@u:domain", "signatures": {}, "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT_SIGNED = {
    "content": {"body": "Here is the message content"}, "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}, "origin": "domain",
    "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {"domain": {"ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},
    "unsigned": {"age_ts": 1000000},
}


@pytest.mark.parametrize("rv", ORIGIN_KEEPING, ids=lambda rv: "v" + rv.identifier)
@pytest.mark.parametrize("given,expected", [
    (MINIMAL_EVENT, MINIMAL_EVENT_SIGNED), (REDACTABLE_EVENT, REDACTABLE_EVENT_SIGNED)],
    ids=["minimal", "redactable"])
def test_event_signing_matches_spec_vector(spec_key, rv, given, expected):
    original = copy.deepcopy(given)
    assert sign_event(given, rv, SERVER_NAME, spec_key) == expected
    assert given == original  # input untouched


@pytest.mark.parametrize("vector", [MINIMAL_EVENT_SIGNED, REDACTABLE_EVENT_SIGNED])
def test_spec_signed_events_verify_and_have_correct_content_hash(spec_key, vector):
    vk = decode_verify_key(KEY_ID, verify_key_base64(spec_key))
    verify_event_signature(vector, V1, SERVER_NAME, KEY_ID, vk)
    assert check_content_hash(vector)


def test_spec_event_signature_survives_redaction(spec_key):
    redacted = redact(REDACTABLE_EVENT_SIGNED, V1)
    assert redacted["content"] == {}
    verify_event_signature(redacted, V1, SERVER_NAME, KEY_ID, spec_key.verify_key)
    assert not check_content_hash(redacted)  # hash covers the unredacted content


def test_v11_signature_does_not_cover_origin(spec_key):
    signed = sign_event(MINIMAL_EVENT, V11, SERVER_NAME, spec_key)
    assert signed["signatures"] != MINIMAL_EVENT_SIGNED["signatures"]  # origin not signed in v11
    verify_event_signature({**signed, "origin": "elsewhere"}, V11, SERVER_NAME, KEY_ID, spec_key.verify_key)
    with pytest.raises(SignatureError):
        verify_event_signature({**signed, "origin": "elsewhere"}, V10, SERVER_NAME, KEY_ID,
                               spec_key.verify_key)


def test_tampering_with_essential_field_breaks_event_signature(spec_key):
    with pytest.raises(SignatureError):
        verify_event_signature({**REDACTABLE_EVENT_SIGNED, "sender": "@evil:domain"}, V1,
                               SERVER_NAME, KEY_ID, spec_key.verify_key)


def test_sign_event_keeps_an_existing_content_hash_and_other_signatures(spec_key):
    pdu = {**MINIMAL_EVENT, "hashes": {"sha256": "existing"}, "signatures": {"o.example": {"ed25519:z": "s"}}}
    signed = sign_event(pdu, V10, SERVER_NAME, spec_key)
    assert signed["hashes"] == {"sha256": "existing"}
    assert signed["signatures"]["o.example"] == {"ed25519:z": "s"}
    assert KEY_ID in signed["signatures"]["domain"]


# --- hashes --------------------------------------------------------------------------------

def test_content_hash_ignores_unsigned_signatures_and_hashes():
    base = {"type": "m.room.message", "content": {"body": "hi"}}
    h = compute_content_hash(base)
    assert h == hashlib.sha256(encode_canonical_json(base)).digest()
    assert compute_content_hash({**base, "unsigned": {"a": 1}, "signatures": {"x": {}},
                                 "hashes": {"sha256": "x"}}) == h
    assert compute_content_hash({**base, "content": {"body": "ho"}}) != h


def test_add_hashes_sets_unpadded_base64_sha256_and_keeps_other_algorithms():
    pdu = {"type": "X", "content": {}, "hashes": {"sha512": "keep"}}
    hashed = add_hashes(pdu)
    assert hashed["hashes"]["sha512"] == "keep"
    assert hashed["hashes"]["sha256"] == encode_base64(compute_content_hash(pdu))
    assert "=" not in hashed["hashes"]["sha256"]
    assert pdu["hashes"] == {"sha512": "keep"}
    assert check_content_hash(hashed)


@pytest.mark.parametrize("hashes", [None, "x", {}, {"sha256": 5}, {"sha256": "!!!"}, {"sha256": "AAAA"}])
def test_check_content_hash_is_false_for_missing_or_malformed_hashes(hashes):
    pdu = {"type": "X", "content": {}}
    if hashes is not None:
        pdu["hashes"] = hashes
    assert check_content_hash(pdu) is False


def test_check_content_hash_accepts_padded_base64():
    pdu = add_hashes({"type": "X", "content": {}})
    pdu["hashes"]["sha256"] += "="
    assert check_content_hash(pdu)


def test_reference_hash_covers_redacted_form_only():
    pdu = add_hashes({"type": "m.room.message", "room_id": "!r:d", "sender": "@u:d", "depth": 1,
                      "origin_server_ts": 1, "auth_events": [], "prev_events": [],
                      "content": {"body": "x"}})
    ref = compute_reference_hash(pdu, V11)
    expected = redact(pdu, V11)
    assert ref == hashlib.sha256(encode_canonical_json(expected)).digest()
    assert compute_reference_hash({**pdu, "signatures": {"s": {"k": "v"}}, "unsigned": {"a": 1}}, V11) == ref
    # The hashes (which cover the content) are part of the reference hash.
    assert compute_reference_hash(add_hashes({**pdu, "content": {"body": "y"}}), V11) != ref


EVENT = {"type": "m.room.message", "room_id": "!r:d", "sender": "@u:d", "depth": 1,
         "origin_server_ts": 1, "auth_events": [], "prev_events": [], "content": {"body": "x"},
         "hashes": {"sha256": "abc"}}


def test_event_id_formats_follow_room_version_event_format():
    for rv in KNOWN_ROOM_VERSIONS.values():
        if rv.event_format == EventFormat.V1:
            assert compute_event_id({**EVENT, "event_id": "$abc:d"}, rv) == "$abc:d"
            continue
        digest = compute_reference_hash(EVENT, rv)
        event_id = compute_event_id(EVENT, rv)
        if rv.event_format == EventFormat.V2:
            assert event_id == "$" + encode_base64(digest)
        else:
            assert event_id == "$" + encode_base64(digest, urlsafe=True)
        assert len(event_id) == 44 and "=" not in event_id


def test_v3_uses_standard_alphabet_and_v4_url_safe():
    # Find content whose hash contains + or / so the alphabets differ visibly.
    for i in range(200):
        pdu = {**EVENT, "depth": i}
        v3_id = compute_event_id(pdu, V3)
        if "+" in v3_id or "/" in v3_id:
            v4_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["4"])
            assert "+" not in v4_id and "/" not in v4_id
            assert decode_base64(v3_id[1:]) == decode_base64(v4_id[1:].replace("-", "+").replace("_", "/"))
            return
    pytest.fail("no hash with + or / found")


def test_v12_room_id_is_create_event_id_with_bang_sigil():
    create = add_hashes({"type": "m.room.create", "sender": "@c:d", "state_key": "", "depth": 1,
                         "origin_server_ts": 1, "auth_events": [], "prev_events": [],
                         "content": {"room_version": "12"}})
    room_id = room_id_for_create_event(create, V12)
    assert room_id == "!" + compute_event_id(create, V12)[1:]
    assert Event(create, V12).room_id == room_id
    assert room_id_for_create_event({**create, "room_id": "!old:d"}, V11) == "!old:d"


# --- key handling --------------------------------------------------------------------------

def test_generated_key_has_a_versioned_id_and_round_trips_through_the_key_file(tmp_path):
    key = generate_signing_key()
    assert key_id(key).startswith("ed25519:a_") and len(key.version) == 6
    path = tmp_path / "signing.key"
    from homeserver.protocol.signing import write_signing_key
    write_signing_key(path, key)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    text = path.read_text()
    alg, version, seed = text.split()
    assert (alg, version) == ("ed25519", key.version) and len(seed) == 43
    [loaded] = read_signing_keys(path)
    assert loaded.encode() == key.encode() and key_id(loaded) == key_id(key)


def test_read_signing_keys_reads_synapse_format_with_several_lines(tmp_path):
    path = tmp_path / "k"
    path.write_text(f"ed25519 1 {SEED}\n\ned25519 a_bcde {SEED}\n")
    keys = read_signing_keys(path)
    assert [key_id(k) for k in keys] == ["ed25519:1", "ed25519:a_bcde"]
    assert verify_key_base64(keys[0]) == verify_key_base64(decode_signing_key_base64("ed25519", "1", SEED))


@pytest.mark.parametrize("content", ["ed25519 1\n", "rsa 1 AAAA\n", "ed25519 1 !!!\n"])
def test_read_signing_keys_rejects_malformed_lines(tmp_path, content):
    path = tmp_path / "k"
    path.write_text(content)
    with pytest.raises(ValueError):
        read_signing_keys(path)


@pytest.mark.parametrize("kid,b64", [("ed25519", "AAAA"), ("curve25519:1", "A" * 43), ("ed25519:1", "AAAA"),
                                     ("ed25519:1", "!!")])
def test_decode_verify_key_rejects_bad_ids_and_keys(kid, b64):
    with pytest.raises(ValueError):
        decode_verify_key(kid, b64)


def test_decode_verify_key_accepts_published_key(spec_key):
    vk = decode_verify_key("ed25519:1", verify_key_base64(spec_key))
    assert vk.encode() == spec_key.verify_key.encode()
