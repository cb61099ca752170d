"""Identifier grammars from appendices.md "Identifier Grammar"."""
import pytest

from homeserver.protocol.ids import (
    domain_or_none,
    get_domain,
    is_valid_event_id,
    is_valid_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    new_v1_event_id,
    parse_server_name,
    parse_user_id,
    random_string,
)

# appendices.md "Server Name": the spec's own examples plus edge cases of the grammar.
SERVER_NAMES = [
    ("matrix.org", ("matrix.org", None)),
    ("matrix.org:8888", ("matrix.org", 8888)),
    ("1.2.3.4", ("1.2.3.4", None)),
    ("1.2.3.4:1234", ("1.2.3.4", 1234)),
    ("[1234:5678::abcd]", ("[1234:5678::abcd]", None)),
    ("[1234:5678::abcd]:5678", ("[1234:5678::abcd]", 5678)),
    ("localhost", ("localhost", None)),
    ("MATRIX.ORG", ("MATRIX.ORG", None)),
    ("a-b.example", ("a-b.example", None)),
    ("[::1]:8448", ("[::1]", 8448)),
    ("[::ffff:1.2.3.4]", ("[::ffff:1.2.3.4]", None)),
    ("x:1", ("x", 1)),
    ("x:99999", ("x", 99999)),  # the grammar allows any 1-5 digits
    ("a" * 255, ("a" * 255, None)),
]

INVALID_SERVER_NAMES = [
    "", ":8448", "matrix.org:", "matrix.org:123456", "matrix.org:abc", "matrix.org:-1",
    "matr_ix.org", "matrix org", "mätrix.org", "1.2.3.256", "999.1.1.1",
    "[1234:5678::abcd", "1234:5678::abcd", "[::1]x", "[::1]:", "[xyz::1]", "[]", "[::1%eth0]",
    "[1:2:3:4:5:6:7:8:9]", "a" * 256, "matrix.org:80:80", "example.org/path",
]


@pytest.mark.parametrize("name,parsed", SERVER_NAMES)
def test_valid_server_names_parse_into_host_and_port(name, parsed):
    assert is_valid_server_name(name)
    assert parse_server_name(name) == parsed


@pytest.mark.parametrize("name", INVALID_SERVER_NAMES)
def test_invalid_server_names_are_rejected(name):
    assert not is_valid_server_name(name)
    with pytest.raises(ValueError):
        parse_server_name(name)


# appendices.md "User Identifiers" (strict) and "Historical User IDs" (lenient).
STRICT_USER_IDS = ["@alice:example.org", "@a:b", "@a.b_c=d-e/f+g:matrix.org:8448",
                   "@0123456789:[::1]", "@x:1.2.3.4"]
HISTORICAL_ONLY_USER_IDS = ["@Alice:example.org", "@:example.org", "@al ice:example.org",
                            "@日本:example.org", "@a!#$%&*:example.org", "@\x01:example.org"]
INVALID_USER_IDS = ["alice:example.org", "@alice", "@alice:", "@alice:bad_host", "#alice:example.org",
                    "@al\x00ice:example.org", "@a:" + "b" * 253, "", "@\ud800:example.org"]


@pytest.mark.parametrize("user_id", STRICT_USER_IDS)
def test_current_grammar_user_ids_are_valid_strictly_and_leniently(user_id):
    assert is_valid_user_id(user_id, strict=True)
    assert is_valid_user_id(user_id)


@pytest.mark.parametrize("user_id", HISTORICAL_ONLY_USER_IDS)
def test_historical_user_ids_are_accepted_only_leniently(user_id):
    assert is_valid_user_id(user_id)
    assert not is_valid_user_id(user_id, strict=True)


@pytest.mark.parametrize("user_id", INVALID_USER_IDS)
def test_malformed_user_ids_are_rejected(user_id):
    assert not is_valid_user_id(user_id)
    with pytest.raises(ValueError):
        parse_user_id(user_id)


def test_user_id_length_limit_is_255_bytes_including_sigil_and_domain():
    server = "example.org"
    ok = "@" + "a" * (255 - 2 - len(server)) + ":" + server
    assert len(ok.encode()) == 255 and is_valid_user_id(ok, strict=True)
    assert not is_valid_user_id("@a" + ok[1:])
    # bytes, not characters: 2-byte characters count twice
    assert not is_valid_user_id("@" + "é" * 122 + ":" + server)


def test_parse_user_id_splits_at_first_colon():
    assert parse_user_id("@alice:example.org:8448") == ("alice", "example.org:8448")
    assert parse_user_id("@:example.org") == ("", "example.org")


@pytest.mark.parametrize("localpart,valid", [
    ("alice", True), ("a.b_c=d-e/f+g", True), ("0", True),
    ("", False), ("Alice", False), ("al ice", False), ("al:ice", False), ("é", False), ("a*", False),
])
def test_localpart_for_registration_follows_current_grammar(localpart, valid):
    assert is_valid_localpart(localpart) is valid


@pytest.mark.parametrize("alias,valid", [
    ("#room:example.org", True), ("#日本 room!:example.org:8448", True), ("#Room:[::1]", True),
    ("#:example.org", False), ("room:example.org", False), ("#room", False), ("#room:", False),
    ("#ro\x00om:example.org", False), ("#room:bad_host", False),
    ("#" + "r" * 242 + ":example.org", True), ("#" + "r" * 243 + ":example.org", False),
])
def test_room_alias_grammar(alias, valid):
    assert is_valid_room_alias(alias) is valid


V12_ROOM_ID = "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"


@pytest.mark.parametrize("room_id,valid", [
    ("!UcYsUzyxTGDxLBEvLy:example.org", True), ("!a:b", True), (V12_ROOM_ID, True),
    ("!" + "A" * 43, True), ("!" + "A" * 42, False), ("!" + "A" * 44, False), ("!abc=def" + "A" * 35, False),
    ("!:example.org", False), ("!abc:", False), ("!abc", False), ("#abc:example.org", False),
    ("!ab\x00c:example.org", False), ("", False), ("!" + "a" * 242 + ":example.org", True),
    ("!" + "a" * 243 + ":example.org", False),
])
def test_room_id_grammar(room_id, valid):
    assert is_valid_room_id(room_id) is valid


@pytest.mark.parametrize("event_id,valid", [
    ("$a4ecee13e2accdadf56c1025:example.com", True),  # v1/v2 form
    ("$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk", True),  # v3: standard alphabet
    ("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", True),  # v4+: URL-safe (rooms/fragments/v4-event-ids.md)
    ("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Z", False),
    ("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg=", False),
    ("$", False), ("$:example.org", False), ("$abc", False), ("abc:example.org", False),
    ("$0:domain", True), ("$a:bad host", False),
])
def test_event_id_grammar(event_id, valid):
    assert is_valid_event_id(event_id) is valid


def test_get_domain_returns_text_after_first_colon():
    assert get_domain("@a:example.org:8448") == "example.org:8448"
    assert get_domain("!r:[::1]") == "[::1]"
    with pytest.raises(ValueError):
        get_domain(V12_ROOM_ID)
    with pytest.raises(ValueError):
        get_domain("@a:")


def test_domain_or_none_is_get_domain_without_raising():
    assert domain_or_none("@a:example.org:8448") == "example.org:8448"
    assert domain_or_none(V12_ROOM_ID) is None
    assert domain_or_none("@a:") is None
    assert domain_or_none(None) is None and domain_or_none(42) is None


def test_random_string_is_ascii_letters_of_requested_length():
    s = random_string(32)
    assert len(s) == 32 and s.isascii() and s.isalpha()
    assert random_string(32) != s
    assert random_string(0) == ""


def test_new_v1_event_id_is_a_valid_event_id_on_the_server():
    event_id = new_v1_event_id("example.org:8448")
    assert is_valid_event_id(event_id)
    assert get_domain(event_id) == "example.org:8448"
    assert new_v1_event_id("example.org") != new_v1_event_id("example.org")
