"""The router matches templates segment by segment and percent-decodes parameters."""
from homeserver.http.router import Router


async def _h(request, **kw):
    return 200, kw


def _router():
    r = Router()
    r.add_client("GET", "/rooms/{roomId}/state/{eventType}/{stateKey?}", _h)
    r.add_client("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", _h)
    r.add("GET", "/_matrix/key/v2/server", _h, "keys")
    r.add("GET", "/_matrix/media/v3/download/{server}/{rest*}", _h, "media")
    return r


def test_params_are_percent_decoded_after_splitting():
    m = _router().match("PUT", "/_matrix/client/v3/rooms/%21abc%3Aex.org/send/m.room.message/t%2F1")
    assert m.route is not None
    assert m.params == {"roomId": "!abc:ex.org", "eventType": "m.room.message", "txnId": "t/1"}


def test_optional_last_segment_matches_empty_or_missing():
    r = _router()
    assert r.match("GET", "/_matrix/client/v3/rooms/!a:b/state/m.room.name/").params["stateKey"] == ""
    assert r.match("GET", "/_matrix/client/v3/rooms/!a:b/state/m.room.name").params["stateKey"] == ""
    assert r.match("GET", "/_matrix/client/r0/rooms/!a:b/state/m.room.member/%40u%3Ab").params["stateKey"] == "@u:b"


def test_wrong_method_reports_allowed_methods():
    m = _router().match("POST", "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1")
    assert m.route is None and m.allowed_methods == {"PUT"}


def test_unknown_path_does_not_match():
    m = _router().match("GET", "/_matrix/client/v3/nonsense")
    assert m.route is None and not m.allowed_methods


def test_listener_resources_limit_routes():
    r = _router()
    assert r.match("GET", "/_matrix/key/v2/server", {"client"}).route is None
    assert r.match("GET", "/_matrix/key/v2/server", {"keys"}).route is not None


def test_rest_parameter_takes_remaining_segments():
    m = _router().match("GET", "/_matrix/media/v3/download/ex.org/abc/file%20name.png")
    assert m.params == {"server": "ex.org", "rest": "abc/file name.png"}
