"""Application service registrations: validation errors name the file and field; namespace rules."""
from __future__ import annotations

import pytest
import yaml

from appservices.registration import (AppService, RegistrationError, check_unique, load_registrations,
                                      parse_registration)
from config.schema import ConfigError

SERVER = "test.local"


def reg(**overrides) -> dict:
    data = {
        "id": "irc", "url": "http://127.0.0.1:9000", "as_token": "as-secret", "hs_token": "hs-secret",
        "sender_localpart": "_irc_bot",
        "namespaces": {"users": [{"exclusive": True, "regex": "@_irc_.*"}],
                       "aliases": [{"exclusive": False, "regex": "#_irc_.*"}],
                       "rooms": [{"exclusive": False, "regex": "!bridged.*"}]},
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def parse(data, source="irc.yaml") -> AppService:
    return parse_registration(data, SERVER, source)


def error_of(data) -> RegistrationError:
    with pytest.raises(RegistrationError) as e:
        parse(data)
    return e.value


def test_spec_example_registration_parses():
    s = parse(reg())
    assert (s.id, s.url, s.sender, s.rate_limited, s.receive_ephemeral) == \
        ("irc", "http://127.0.0.1:9000", "@_irc_bot:test.local", True, False)
    assert [n.regex for n in s.users] == ["@_irc_.*"] and s.users[0].exclusive


def test_registration_errors_are_config_errors_naming_file_and_field():
    e = error_of(reg(as_token=...))
    assert isinstance(e, ConfigError)
    assert "irc.yaml" in str(e) and "as_token" in str(e) and "missing" in str(e)


@pytest.mark.parametrize("field", ["id", "as_token", "hs_token", "sender_localpart", "namespaces", "url"])
def test_each_required_field_is_checked(field):
    assert field in str(error_of(reg(**{field: ...})))


def test_bad_regex_is_reported_with_its_position():
    e = error_of(reg(namespaces={"users": [{"exclusive": True, "regex": "@_irc_(.*"}]}))
    assert "namespaces.users[0].regex" in str(e) and "invalid regular expression" in str(e)


@pytest.mark.parametrize("data, field", [
    (reg(url="ftp://x"), "url"),
    (reg(url=12), "url"),
    (reg(sender_localpart="Bad Bot"), "sender_localpart"),
    (reg(namespaces={"users": "@_irc_.*"}), "namespaces.users"),
    (reg(namespaces={"users": [{"regex": "@a.*", "exclusive": "yes"}]}), "namespaces.users[0].exclusive"),
    (reg(namespaces={"users": [{"exclusive": True}]}), "namespaces.users[0].regex"),
    (reg(namespaces={"people": []}), "namespaces"),
    (reg(rate_limited="no"), "rate_limited"),
    (reg(protocols="irc"), "protocols"),
    (reg(receive_ephemeral="true"), "receive_ephemeral"),
    (reg(hs_token="as-secret"), "hs_token"),
    (["not", "a", "mapping"], ""),
])
def test_malformed_fields_are_refused(data, field):
    e = error_of(data)
    assert e.field_path == field


def test_null_url_means_no_traffic():
    assert parse(reg(url=None)).url is None


def test_msc2409_key_enables_ephemeral_and_rate_limited_false_is_kept():
    s = parse(reg(**{"de.sorunome.msc2409.push_ephemeral": True, "rate_limited": False}))
    assert s.receive_ephemeral and not s.rate_limited and s.wants_to_device


def test_duplicate_ids_tokens_and_senders_are_refused():
    a = parse(reg(), "a.yaml")
    with pytest.raises(RegistrationError, match="id"):
        check_unique([a, parse(reg(as_token="other", sender_localpart="_other"), "b.yaml")])
    with pytest.raises(RegistrationError, match="as_token.*a.yaml"):
        check_unique([a, parse(reg(id="two", sender_localpart="_other"), "b.yaml")])
    with pytest.raises(RegistrationError, match="sender"):
        check_unique([a, parse(reg(id="two", as_token="other"), "b.yaml")])
    check_unique([a, parse(reg(id="two", as_token="other", hs_token="hs2", sender_localpart="_two"), "b.yaml")])


def test_load_registrations_reads_files_and_reports_yaml_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(reg()))
    assert [s.id for s in load_registrations([str(good)], SERVER)] == ["irc"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: [unclosed\n")
    with pytest.raises(RegistrationError, match="broken.yaml.*not valid YAML"):
        load_registrations([str(broken)], SERVER)
    with pytest.raises(RegistrationError, match="missing.yaml.*cannot read"):
        load_registrations([str(tmp_path / "missing.yaml")], SERVER)


def test_user_namespace_covers_local_users_and_the_sender_only():
    s = parse(reg())
    assert s.is_interested_in_user("@_irc_alice:test.local")
    assert s.is_interested_in_user("@_irc_bot:test.local")
    assert not s.is_interested_in_user("@_irc_alice:elsewhere.org")  # "only local users"
    assert not s.is_interested_in_user("@alice:test.local")
    assert s.is_exclusive_user("@_irc_x:test.local")
    assert not parse(reg(namespaces={"users": [{"regex": "@_irc_.*", "exclusive": False}]})) \
        .is_exclusive_user("@_irc_x:test.local")


def test_event_interest_by_sender_target_room_alias_and_members():
    s = parse(reg())
    assert s.is_interested_in_event("m.room.message", "@_irc_a:test.local", None, "!r:test.local", False)
    assert s.is_interested_in_event("m.room.member", "@alice:test.local", "@_irc_a:test.local", "!r:x", False)
    assert not s.is_interested_in_event("m.room.message", "@alice:test.local", None, "!r:x", False)
    assert s.is_interested_in_event("m.room.message", "@alice:test.local", None, "!r:x", True)
    assert s.is_interested_in_room("!bridged1:x", [], [])
    assert s.is_interested_in_room("!r:x", ["#_irc_chan:test.local"], [])
    assert s.is_interested_in_room("!r:x", [], ["@alice:test.local", "@_irc_a:test.local"])
    assert not s.is_interested_in_room("!r:x", ["#other:test.local"], ["@alice:test.local"])
