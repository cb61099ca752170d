"""SQL for remote servers' signing keys and their signed key documents (0050_federation_keys.sql).

Policy (which keys to trust, when to re-fetch) lives in federation/keyring.py; this module only
stores and loads. A newer fetch replaces an older one; an older one never overwrites a newer one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class StoredKey:
    """One verify key of a server as uzel knows it."""

    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int  # validity uzel uses (capped; expired_ts for old keys)
    expired_ts: int | None  # set when the key came from old_verify_keys
    ts_fetched: int
    from_server: str  # the server itself or the notary that vouched for it


@dataclass(frozen=True)
class KeyDocument:
    """The latest signed ``/_matrix/key/v2/server`` document received for a server."""

    server_name: str
    from_server: str
    ts_fetched: int
    valid_until_ts: int  # as published in the document
    key_json: dict


class KeysStore:
    def __init__(self, hs):
        self.db = hs.db

    async def store_server_keys(self, server_name: str, keys: Iterable[StoredKey],
                                document: KeyDocument | None = None) -> None:
        """Insert or refresh keys (and the document they came in) in one transaction."""
        rows = [(k.server_name, k.key_id, k.verify_key, k.valid_until_ts, k.expired_ts, k.ts_fetched,
                 k.from_server) for k in keys]
        await self.db.run("store_server_keys", _store_txn, server_name, rows, document)

    async def get_server_keys(self, server_name: str) -> dict[str, StoredKey]:
        """Every stored key of ``server_name`` by key id."""
        def txn(t):
            t.execute("SELECT key_id, verify_key, valid_until_ts, expired_ts, ts_fetched, from_server"
                      " FROM server_signing_keys WHERE server_name = ?", (server_name,))
            return {r[0]: StoredKey(server_name, r[0], r[1], int(r[2]), None if r[3] is None else int(r[3]),
                                    int(r[4]), r[5]) for r in t.fetchall()}
        return await self.db.run("get_server_keys", txn, readonly=True)

    async def get_key_document(self, server_name: str) -> KeyDocument | None:
        def txn(t):
            t.execute("SELECT from_server, ts_fetched, valid_until_ts, key_json FROM server_key_documents"
                      " WHERE server_name = ?", (server_name,))
            return t.fetchone()
        row = await self.db.run("get_key_document", txn, readonly=True)
        if row is None:
            return None
        return KeyDocument(server_name, row[0], int(row[1]), int(row[2]), json.loads(row[3]))


def _store_txn(t, server_name: str, rows: list[tuple], document: KeyDocument | None) -> None:
    t.executemany(
        "INSERT INTO server_signing_keys (server_name, key_id, verify_key, valid_until_ts, expired_ts,"
        " ts_fetched, from_server) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,"
        " valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts,"
        " ts_fetched = excluded.ts_fetched, from_server = excluded.from_server"
        " WHERE excluded.ts_fetched >= server_signing_keys.ts_fetched",
        rows)
    if document is not None:
        t.execute(
            "INSERT INTO server_key_documents (server_name, from_server, ts_fetched, valid_until_ts, key_json)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (server_name) DO UPDATE SET from_server = excluded.from_server,"
            " ts_fetched = excluded.ts_fetched, valid_until_ts = excluded.valid_until_ts,"
            " key_json = excluded.key_json"
            " WHERE excluded.ts_fetched >= server_key_documents.ts_fetched",
            (server_name, document.from_server, document.ts_fetched, document.valid_until_ts,
             json.dumps(document.key_json, ensure_ascii=False, separators=(",", ":"))))
