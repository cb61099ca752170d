"""Third-party identifiers of accounts: email addresses and phone numbers (client-server-api
"Adding Account Administrative Contact Information", administrative_contact.yaml; the
requestToken endpoints of registration.yaml and password_management.yaml).

uzel trusts no identity server and sends neither email nor SMS. What follows, endpoint by endpoint:

* ``*/requestToken``: no validation can start. Adding one to an account: 400
  ``M_THREEPID_MEDIUM_NOT_SUPPORTED`` ("The homeserver does not support adding email addresses" /
  "phone numbers", administrative_contact.yaml). Registering or resetting a password with one: 403
  ``M_THREEPID_DENIED`` ("The homeserver does not permit the address to be bound", the only
  refusal registration.yaml and password_management.yaml list for it).
* ``/account/3pid/add`` needs a session the homeserver validated, and none can ever exist: after
  user-interactive auth it fails with 400 ``M_THREEPID_AUTH_FAILED`` ("Authentication could not be
  performed on the third-party identifier", Synapse's answer too). The deprecated
  ``POST /account/3pid`` fails the same way with the 403 its definition lists.
* ``/account/3pid/bind`` would go through an identity server: 400 ``M_SERVER_NOT_TRUSTED``.
* ``/account/3pid/unbind`` and ``/delete``: nothing was ever bound through uzel, so
  ``id_server_unbind_result`` is ``no-support`` ("If the homeserver does not know the original
  id_server, it MUST return a id_server_unbind_result of no-support"); delete removes the stored
  identifier.

Stored identifiers therefore come from server administrators (the ``user_threepids`` table);
``GET /account/3pid`` lists them and a deactivation deletes them.
"""
from __future__ import annotations

from typing import Literal

from homeserver.http.errors import MatrixError
from homeserver.storage.threepids_store import ThreepidsStore

MEDIA = ("email", "msisdn")
NO_SUPPORT = "no-support"

Purpose = Literal["registration", "password_reset", "account"]


def canonicalise_email(address: str) -> str | None:
    """The stored form of an email address: trimmed, local part case-folded, domain lower-cased
    (Synapse's rule, so the same address typed twice matches); None if it is not an address
    (one ``@``, both sides non-empty, no whitespace)."""
    address = address.strip()
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain or "@" in local or any(c.isspace() for c in address):
        return None
    return f"{local.casefold()}@{domain.lower()}"


def canonicalise_address(medium: str, address: str) -> str:
    """How an address of ``medium`` is stored and matched (emails canonicalised when they parse)."""
    if medium == "email":
        return canonicalise_email(address) or address
    return address


class ThreepidService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(ThreepidsStore)

    async def list_threepids(self, user_id: str) -> list[dict]:
        """GET /account/3pid entries: ``{medium, address, validated_at, added_at}``."""
        return [{"medium": t.medium, "address": t.address, "validated_at": t.validated_at, "added_at": t.added_at}
                for t in await self.store.get_threepids(user_id)]

    def request_token(self, purpose: Purpose, medium: str) -> None:
        """A validation token for an (already checked) requestToken body: always refused, since
        uzel cannot deliver one."""
        noun = "email addresses" if medium == "email" else "phone numbers"
        if purpose == "account":
            raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED",
                              f"This homeserver cannot validate {noun}, so they cannot be added to accounts")
        what = "registration" if purpose == "registration" else "password resets"
        raise MatrixError(403, "M_THREEPID_DENIED", f"This homeserver does not allow {noun} for {what}")

    async def add_validated(self, user_id: str, sid: str, client_secret: str) -> None:
        """POST /account/3pid/add after UIA: the session ``sid`` must be one this homeserver
        validated. uzel never starts a validation, so no session exists."""
        raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "No validated 3pid session found")

    async def add_legacy(self, user_id: str, sid: str, client_secret: str) -> None:
        """Deprecated POST /account/3pid: 403 M_THREEPID_AUTH_FAILED (its listed refusal)."""
        raise MatrixError(403, "M_THREEPID_AUTH_FAILED",
                          "The third-party credentials could not be verified: no validated 3pid session found")

    async def bind(self, user_id: str, id_server: str) -> None:
        """POST /account/3pid/bind: uzel talks to no identity server."""
        raise MatrixError(400, "M_SERVER_NOT_TRUSTED", f"This homeserver does not trust identity server {id_server!r}")

    async def unbind(self, user_id: str, medium: str, address: str, id_server: str | None) -> str:
        """POST /account/3pid/unbind: the id_server_unbind_result (always no-support)."""
        return NO_SUPPORT

    async def delete(self, user_id: str, medium: str, address: str, id_server: str | None) -> str:
        """POST /account/3pid/delete: forget the identifier (absent ones are no error, as in
        Synapse); returns the id_server_unbind_result (no-support: never bound through uzel)."""
        await self.store.delete_threepid(user_id, medium, canonicalise_address(medium, address))
        return NO_SUPPORT

    async def delete_all(self, user_id: str) -> None:
        """A deactivated account keeps no identifiers (they could be reused by another)."""
        await self.store.delete_all_threepids(user_id)
