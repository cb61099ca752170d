"""Canonical JSON (appendices.md "Canonical JSON") and strict parsing for v6+ rooms."""
import json

import pytest

from homeserver.protocol.canonical_json import (
    check_canonical_values,
    encode_canonical_json,
    parse_json,
)
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

# Every example from appendices.md "Canonical JSON" → "Examples": (input text, canonical output).
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {"medium": "email", "address": "john.doe@example.org"},
                {"medium": "msisdn", "address": "123456789"}
            ]
        }
    }
}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
    ('{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize("given,expected", SPEC_EXAMPLES)
def test_spec_example_encodes_to_the_given_canonical_form(given, expected):
    assert encode_canonical_json(parse_json(given.encode("utf-8"))) == expected.encode("utf-8")


def test_control_characters_use_short_escapes_and_u00xx_otherwise():
    assert encode_canonical_json({"a": "\n\t\x01\"\\"}) == b'{"a":"\\n\\t\\u0001\\"\\\\"}'


def test_non_integral_floats_are_still_encodable_for_legacy_rooms():
    assert encode_canonical_json({"a": 1.5}) == b'{"a":1.5}'


def test_encoding_does_not_modify_the_input():
    obj = {"a": [1.0, {"b": 2.0}]}
    encode_canonical_json(obj)
    assert obj == {"a": [1.0, {"b": 2.0}]} and isinstance(obj["a"][0], float)


def test_encoding_nan_is_refused():
    with pytest.raises(ValueError):
        encode_canonical_json({"a": float("nan")})


@pytest.mark.parametrize("text", [b"NaN", b'{"a": Infinity}', b'[-Infinity]'])
def test_parse_rejects_nan_and_infinity(text):
    with pytest.raises(ValueError):
        parse_json(text)


@pytest.mark.parametrize("data", [b"\xff{}", b'{"a": "\xc3"}', b"{", b"", b"{'a': 1}", b"[1,]"])
def test_parse_rejects_invalid_utf8_and_invalid_json(data):
    with pytest.raises(ValueError):
        parse_json(data)


def test_parse_accepts_duplicate_keys_last_wins():
    assert parse_json(b'{"a": 1, "a": 2}') == {"a": 2}


def test_parse_accepts_str_input():
    assert parse_json('{"a": [1, true, null]}') == {"a": [1, True, None]}


STRICT = KNOWN_ROOM_VERSIONS["6"]
LEGACY = KNOWN_ROOM_VERSIONS["5"]


@pytest.mark.parametrize("value", [
    {"a": 1.5},
    {"a": [1, 2, {"b": 1.0}]},
    {"n": 2**53},
    {"n": -(2**53)},
    [[[{"deep": 10**20}]]],
])
def test_strict_room_versions_reject_floats_and_out_of_range_ints(value):
    with pytest.raises(ValueError):
        check_canonical_values(value, STRICT)
    check_canonical_values(value, LEGACY)  # v1–v5 must tolerate them


@pytest.mark.parametrize("value", [
    {"n": 2**53 - 1, "m": -(2**53) + 1, "t": True, "f": False, "z": None, "s": "x"},
    [],
    "plain",
])
def test_strict_room_versions_accept_values_in_range(value):
    check_canonical_values(value, STRICT)


def test_strictness_follows_the_room_version_flag():
    for rv in KNOWN_ROOM_VERSIONS.values():
        if rv.strict_canonicaljson:
            with pytest.raises(ValueError):
                check_canonical_values({"a": 0.5}, rv)
        else:
            check_canonical_values({"a": 0.5}, rv)


def test_canonical_output_matches_spec_reference_implementation_for_ints_and_strings():
    obj = {"z": [1, "ü", {"y": None, "x": -3}], "a": "\u2028"}
    reference = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode_canonical_json(obj) == reference.encode("utf-8")
