"""Remote servers' signing keys: fetching, verifying, caching, and checking signatures with them.

Sources: server-server-api.md "Retrieving server keys" ("Publishing Keys", "Querying Keys Through
Another Server"), appendices.md "Checking for a Signature", rooms/v5.md "Signing key validity
period" (a key must be valid at the event's ``origin_server_ts``; validity is the lesser of
``valid_until_ts`` and 7 days after the fetch).

``hs.get(Keyring)`` is the service. Callers use::

    await keyring.verify_json_for_server(server_name, obj, valid_at_ts=ts_or_None)
    keys = await keyring.get_verify_keys(server_name, key_ids, valid_at_ts=ts_or_None)

Where keys come from, in order: our own keys (no I/O); keys pinned in configuration (the
``verify_keys`` of ``trusted_key_servers`` entries, or :meth:`Keyring.pin_keys`); the memory/DB
cache; a direct fetch of ``GET /_matrix/key/v2/server`` from the server (when a key id is unknown
or not valid at the wanted time, at most once per ``MIN_REFETCH_INTERVAL_MS`` per server); then the
configured notaries (``POST /_matrix/key/v2/query``). ``valid_at_ts=None`` accepts any known key
(room versions 1-4, which do not enforce key validity).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from twisted.internet import defer

from homeserver.protocol import signing
from homeserver.protocol.signing import SignatureError, VerifyKey

from .keys_store import KeyDocument, KeysStore, StoredKey

logger = logging.getLogger(__name__)

SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
MIN_REFETCH_INTERVAL_MS = 30 * 1000
KEY_FETCH_TIMEOUT_S = 15.0
NEVER_EXPIRES = 2**63 - 1


class KeyLookupError(SignatureError):
    """No usable verify key could be found for the signatures on an object."""


class KeyDocumentError(ValueError):
    """A ``/_matrix/key/v2/server`` document is malformed or not properly self-signed."""


# --- pure: key documents ------------------------------------------------------------------------

def parse_key_document(doc: Any, server_name: str, ts_fetched: int, from_server: str) -> list[StoredKey]:
    """The keys in a server's key document, after checking its shape and self-signature.

    keys_server.yaml: ``server_name`` must be the server asked about; ``valid_until_ts`` an
    integer; ``verify_keys`` maps ``ed25519:<version>`` to ``{"key": <base64>}``; the document must
    be signed by the server with at least one of its ``verify_keys``, and every such signature must
    verify. Keys of unknown algorithms are skipped. Current keys get the validity
    ``min(valid_until_ts, ts_fetched + 7 days)``; ``old_verify_keys`` get their ``expired_ts``.
    Raises :class:`KeyDocumentError`.
    """
    if not isinstance(doc, dict):
        raise KeyDocumentError("key document is not an object")
    if doc.get("server_name") != server_name:
        raise KeyDocumentError(f"key document is for {doc.get('server_name')!r}, not {server_name!r}")
    valid_until = doc.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise KeyDocumentError("valid_until_ts is missing or not an integer")
    verify_keys = doc.get("verify_keys")
    if not isinstance(verify_keys, dict):
        raise KeyDocumentError("verify_keys is missing or not an object")
    old_keys = doc.get("old_verify_keys", {})
    if not isinstance(old_keys, dict):
        raise KeyDocumentError("old_verify_keys is not an object")

    current: dict[str, tuple[str, VerifyKey]] = {}
    for kid, entry in verify_keys.items():
        if not kid.startswith(signing.ED25519 + ":"):
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise KeyDocumentError(f"verify_keys.{kid} has no key")
        try:
            current[kid] = (entry["key"], signing.decode_verify_key(kid, entry["key"]))
        except ValueError as e:
            raise KeyDocumentError(str(e)) from None

    signed_with = [kid for kid in signing.signature_key_ids(doc, server_name) if kid in current]
    if not signed_with:
        raise KeyDocumentError(f"key document is not signed by {server_name} with any of its verify_keys")
    for kid in signed_with:
        try:
            signing.verify_json(doc, server_name, kid, current[kid][1])
        except SignatureError as e:
            raise KeyDocumentError(f"bad self-signature: {e}") from None

    capped = min(valid_until, ts_fetched + SEVEN_DAYS_MS)
    keys = [StoredKey(server_name, kid, b64, capped, None, ts_fetched, from_server)
            for kid, (b64, _vk) in current.items()]
    for kid, entry in old_keys.items():
        if not kid.startswith(signing.ED25519 + ":") or kid in current:
            continue
        if (not isinstance(entry, dict) or not isinstance(entry.get("key"), str)
                or not isinstance(entry.get("expired_ts"), int)):
            raise KeyDocumentError(f"old_verify_keys.{kid} needs key and expired_ts")
        try:
            signing.decode_verify_key(kid, entry["key"])
        except ValueError as e:
            raise KeyDocumentError(str(e)) from None
        keys.append(StoredKey(server_name, kid, entry["key"], entry["expired_ts"], entry["expired_ts"],
                              ts_fetched, from_server))
    return keys


def key_is_usable(key: StoredKey | None, valid_at_ts: int | None) -> bool:
    return key is not None and (valid_at_ts is None or key.valid_until_ts >= valid_at_ts)


def _observe(d: defer.Deferred) -> defer.Deferred:
    """A new Deferred firing with ``d``'s result, leaving ``d`` usable by others (``d`` never fails)."""
    out: defer.Deferred = defer.Deferred()

    def fire(result):
        out.callback(result)
        return result
    d.addCallback(fire)
    return out


# --- the service ------------------------------------------------------------------------------

class Keyring:
    def __init__(self, hs):
        self.hs = hs
        self.server_name: str = hs.hostname
        self._own: dict[str, tuple[VerifyKey, int]] = {
            signing.key_id(hs.signing_key): (hs.signing_key.verify_key, NEVER_EXPIRES)}
        for kid, old in hs.config.old_signing_keys.items():  # config.schema.OldSigningKey
            try:
                self._own.setdefault(kid, (signing.decode_verify_key(kid, old.key), old.expired_ts))
            except ValueError:
                logger.warning("ignoring malformed old signing key %s", kid)
        self._pinned: dict[str, dict[str, VerifyKey]] = {}
        self.trusted_key_servers = tuple(hs.config.trusted_key_servers)
        for notary in self.trusted_key_servers:
            if notary.verify_keys:
                self.pin_keys(notary.server_name, notary.verify_keys)
        self._cache: dict[str, dict[str, StoredKey]] = {}
        self._inflight: dict[str, defer.Deferred] = {}
        self._last_attempt: dict[str, int] = {}

    @property
    def store(self) -> KeysStore:
        return self.hs.get(KeysStore)

    @property
    def client(self):
        from .client import FederationClient
        return self.hs.get(FederationClient)

    def pin_keys(self, server_name: str, keys: dict[str, str]) -> None:
        """Trust exactly these keys (key id → unpadded base64) for ``server_name``; no fetching."""
        self._pinned[server_name] = {kid: signing.decode_verify_key(kid, b64) for kid, b64 in keys.items()}

    # --- lookups ---
    async def get_verify_keys(self, server_name: str, key_ids: Iterable[str], *,
                              valid_at_ts: int | None = None) -> dict[str, VerifyKey]:
        """The verify keys among ``key_ids`` that are known and valid at ``valid_at_ts``.

        Unknown or expired ones trigger a fetch (direct, then notaries); keys still missing after
        that are simply absent from the result.
        """
        key_ids = list(dict.fromkeys(key_ids))
        if server_name == self.server_name:
            return {kid: vk for kid, (vk, until) in self._own.items()
                    if kid in key_ids and (valid_at_ts is None or until >= valid_at_ts)}
        if server_name in self._pinned:
            return {kid: vk for kid, vk in self._pinned[server_name].items() if kid in key_ids}
        known = await self._load(server_name)
        missing = [kid for kid in key_ids if not key_is_usable(known.get(kid), valid_at_ts)]
        if missing:
            await self._fetch_direct(server_name)
            known = self._cache.get(server_name, {})
            missing = [kid for kid in missing if not key_is_usable(known.get(kid), valid_at_ts)]
        if missing and self.trusted_key_servers:
            await self._fetch_via_notaries(server_name, missing, valid_at_ts)
            known = self._cache.get(server_name, {})
        return {kid: signing.decode_verify_key(kid, known[kid].verify_key)
                for kid in key_ids if key_is_usable(known.get(kid), valid_at_ts)}

    async def verify_json_for_server(self, server_name: str, obj: dict, *, valid_at_ts: int | None) -> None:
        """Check ``obj`` is signed by ``server_name`` (appendices.md "Checking for a Signature").

        At least one of its ed25519 signatures must be by a key we can find that is valid at
        ``valid_at_ts`` (None: any known key), and every signature by such a key must verify.
        Raises :class:`SignatureError` (:class:`KeyLookupError` when no key could be found).
        """
        key_ids = signing.signature_key_ids(obj, server_name)
        if not key_ids:
            raise SignatureError(f"No ed25519 signature from {server_name}")
        keys = await self.get_verify_keys(server_name, key_ids, valid_at_ts=valid_at_ts)
        if not keys:
            when = " valid at the required time" if valid_at_ts is not None else ""
            raise KeyLookupError(f"No key{when} found for {server_name} ({', '.join(key_ids)})")
        for kid, vk in keys.items():
            signing.verify_json(obj, server_name, kid, vk)

    # --- notary support (federation/api/key_query.py) ---
    async def notary_key_documents(self, server_name: str, key_ids: Iterable[str],
                                   minimum_valid_until_ts: int) -> list[dict]:
        """Key documents for ``server_name`` to serve as a notary (keys_query.yaml).

        From the cache when it holds every requested key id, is valid until
        ``minimum_valid_until_ts`` and is younger than half its lifetime (keys_server.yaml); else
        re-fetched from the server, falling back to the cached copy when the server does not
        answer. Empty when nothing is known. Our own server's document is built fresh.
        """
        if server_name == self.server_name:
            from .api.key_server import server_keys_response
            return [server_keys_response(self.hs)]
        doc = await self.store.get_key_document(server_name)
        if doc is None or not self._document_fresh(doc, list(key_ids), minimum_valid_until_ts):
            fetched = await self._fetch_direct(server_name)
            if fetched is not None:
                doc = fetched
        return [doc.key_json] if doc is not None else []

    def _document_fresh(self, doc: KeyDocument, key_ids: list[str], minimum_valid_until_ts: int) -> bool:
        now = self.hs.clock_ms()
        published = set(doc.key_json.get("verify_keys") or {}) | set(doc.key_json.get("old_verify_keys") or {})
        half_life = doc.ts_fetched + (doc.valid_until_ts - doc.ts_fetched) // 2
        return (all(k in published for k in key_ids) and doc.valid_until_ts >= minimum_valid_until_ts
                and now <= half_life)

    # --- internals ---
    async def _load(self, server_name: str) -> dict[str, StoredKey]:
        known = self._cache.get(server_name)
        if known is None:
            known = await self.store.get_server_keys(server_name)
            self._cache[server_name] = dict(known)
            known = self._cache[server_name]
        return known

    def _remember(self, server_name: str, keys: list[StoredKey]) -> None:
        cached = self._cache.setdefault(server_name, {})
        for k in keys:
            old = cached.get(k.key_id)
            if old is None or k.ts_fetched >= old.ts_fetched:
                cached[k.key_id] = k

    async def _fetch_direct(self, server_name: str) -> KeyDocument | None:
        """Fetch, check and store the server's own key document; None when that failed.

        Concurrent callers share one fetch; a new attempt waits ``MIN_REFETCH_INTERVAL_MS``.
        """
        inflight = self._inflight.get(server_name)
        if inflight is not None:
            return await _observe(inflight)
        now = self.hs.clock_ms()
        last = self._last_attempt.get(server_name)
        if last is not None and now - last < MIN_REFETCH_INTERVAL_MS:
            return None
        self._last_attempt[server_name] = now
        d = defer.ensureDeferred(self._do_fetch_direct(server_name))
        self._inflight[server_name] = d
        try:
            return await _observe(d)
        finally:
            self._inflight.pop(server_name, None)

    async def _do_fetch_direct(self, server_name: str) -> KeyDocument | None:
        from .client import FederationError, FederationUnreachable
        try:
            doc = await self.client.get_json(server_name, "/_matrix/key/v2/server",
                                             timeout_s=KEY_FETCH_TIMEOUT_S, sign=False)
            now = self.hs.clock_ms()
            keys = parse_key_document(doc, server_name, now, server_name)
            document = KeyDocument(server_name, server_name, now, doc["valid_until_ts"], doc)
            await self.store.store_server_keys(server_name, keys, document)
        except (FederationError, FederationUnreachable, KeyDocumentError) as e:
            logger.info("fetching the keys of %s failed: %s", server_name, e)
            return None
        except Exception:
            logger.exception("fetching the keys of %s failed", server_name)
            return None
        self._remember(server_name, keys)
        return document

    async def _fetch_via_notaries(self, server_name: str, key_ids: list[str], valid_at_ts: int | None) -> None:
        """Ask each configured notary in turn until the keys are found (keys_query.yaml, POST)."""
        from .client import FederationError, FederationUnreachable
        throttle_key = f"notary:{server_name}"
        now = self.hs.clock_ms()
        last = self._last_attempt.get(throttle_key)
        if last is not None and now - last < MIN_REFETCH_INTERVAL_MS:
            return
        self._last_attempt[throttle_key] = now
        minimum = valid_at_ts if valid_at_ts is not None else now
        query = {"server_keys": {server_name: {kid: {"minimum_valid_until_ts": minimum} for kid in key_ids}}}
        for notary in self.trusted_key_servers:
            if notary.server_name == server_name:
                continue
            try:
                response = await self.client.post_json(notary.server_name, "/_matrix/key/v2/query", query,
                                                       timeout_s=KEY_FETCH_TIMEOUT_S)
                docs = response.get("server_keys")
                if not isinstance(docs, list):
                    raise KeyDocumentError("server_keys is not a list")
                for doc in docs:
                    if not isinstance(doc, dict) or doc.get("server_name") != server_name:
                        continue
                    if not notary.accept_keys_insecurely or notary.verify_keys:
                        await self.verify_json_for_server(notary.server_name, doc, valid_at_ts=None)
                    fetched = self.hs.clock_ms()
                    keys = parse_key_document(doc, server_name, fetched, notary.server_name)
                    await self.store.store_server_keys(
                        server_name, keys, KeyDocument(server_name, notary.server_name, fetched,
                                                       doc["valid_until_ts"], doc))
                    self._remember(server_name, keys)
            except (FederationError, FederationUnreachable, KeyDocumentError, SignatureError) as e:
                logger.info("notary %s could not give keys of %s: %s", notary.server_name, server_name, e)
                continue
            known = self._cache.get(server_name, {})
            if all(key_is_usable(known.get(kid), valid_at_ts) for kid in key_ids):
                return
