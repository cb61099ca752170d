"""A ``Location`` another server names for its media is fetched only at addresses the federation
IP range lists allow (federation/handlers/remote_reads.py, homeserver/http/outbound.py)."""
from types import SimpleNamespace

import pytest
import pytest_twisted

from federation.handlers.remote_reads import FederationMediaFetcher
from homeserver.http.errors import MatrixError


@pytest_twisted.ensureDeferred
async def test_media_location_on_a_denied_address_is_refused_without_connecting():
    from twisted.internet import reactor
    seen = []

    def deny(address):
        seen.append(address)
        return False
    hs = SimpleNamespace(reactor=reactor, config=SimpleNamespace(ip_allowed=deny))
    with pytest.raises(MatrixError) as e:
        await FederationMediaFetcher(hs)._follow("https://127.0.0.1:9/media", 100)
    assert (e.value.code, e.value.errcode) == (404, "M_NOT_FOUND")
    assert seen == ["127.0.0.1"]
