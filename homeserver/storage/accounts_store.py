"""SQL for accounts: users, profiles, devices, access/refresh/login tokens, registration tokens.

Tables are created by ``schema/0020_accounts.sql``. Tokens arrive here already hashed (hex
SHA-256); the store never sees a token itself. Methods decide nothing: policy (who may do what,
which token is valid for how long) lives in ``homeserver/accounts/``.

The ``*_txn`` functions take a transaction so that start-up code and the CLI can use them
synchronously through ``db.run_sync`` (see :func:`create_user_txn`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .database import Txn

_USER_COLUMNS = ("user_id, password_hash, creation_ts, is_admin, is_guest, deactivated, locked, suspended, "
                 "user_type, appservice_id")


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    password_hash: str | None
    creation_ts: int
    is_admin: bool
    is_guest: bool
    deactivated: bool
    locked: bool
    suspended: bool
    user_type: str | None
    appservice_id: str | None


@dataclass(frozen=True)
class DeviceRecord:
    user_id: str
    device_id: str
    display_name: str | None
    created_ts: int
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


@dataclass(frozen=True)
class AccessTokenRecord:
    """An access token joined with the flags of its user (what request auth needs, one query)."""

    token_hash: str
    user_id: str
    device_id: str | None
    valid_until_ms: int | None
    refresh_token_hash: str | None
    used: bool
    is_guest: bool
    deactivated: bool
    locked: bool
    suspended: bool = False


@dataclass(frozen=True)
class RegistrationTokenRecord:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def is_valid(self, now_ms: int) -> bool:
        """client-server-api "Token-authenticated registration": usable while uses remain
        (counting sessions holding it) and before its expiry."""
        if self.expiry_time is not None and self.expiry_time <= now_ms:
            return False
        return self.uses_allowed is None or self.pending + self.completed < self.uses_allowed


def _user(row) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]), bool(row[4]), bool(row[5]), bool(row[6]),
                      bool(row[7]), row[8], row[9])


def _device(row) -> DeviceRecord:
    return DeviceRecord(*row)


# --- transaction functions (usable through db.run or db.run_sync) ------------------------------

def create_user_txn(txn: Txn, user_id: str, password_hash: str | None, now_ms: int, *, is_admin: bool = False,
                    is_guest: bool = False, displayname: str | None = None, user_type: str | None = None,
                    appservice_id: str | None = None) -> bool:
    """Insert the user and its profile row; False (and nothing written) if the user ID exists."""
    txn.execute(
        "INSERT INTO users (user_id, password_hash, creation_ts, is_admin, is_guest, user_type, appservice_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
        (user_id, password_hash, now_ms, is_admin, is_guest, user_type, appservice_id))
    if txn.rowcount != 1:
        return False
    txn.execute("INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, NULL) "
                "ON CONFLICT (user_id) DO NOTHING", (user_id, displayname))
    return True


def get_user_txn(txn: Txn, user_id: str) -> UserRecord | None:
    row = txn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return _user(row) if row else None


def add_device_txn(txn: Txn, user_id: str, device_id: str, display_name: str | None, now_ms: int) -> bool:
    """Create the device unless it exists; True if it was created."""
    txn.execute("INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id, device_id) DO NOTHING", (user_id, device_id, display_name, now_ms))
    return txn.rowcount == 1


def add_access_token_txn(txn: Txn, token_hash: str, user_id: str, device_id: str | None, now_ms: int,
                         valid_until_ms: int | None = None, refresh_token_hash: str | None = None) -> None:
    txn.execute("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ms, "
                "refresh_token_hash) VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, user_id, device_id, now_ms, valid_until_ms, refresh_token_hash))


def _delete_refresh_tokens_txn(txn: Txn, where: str, args: tuple) -> list[str]:
    """Delete the refresh tokens matching ``where`` and the access tokens issued with them;
    returns the deleted access-token hashes."""
    hashes = [r[0] for r in txn.execute(f"SELECT token_hash FROM refresh_tokens WHERE {where}", args).fetchall()]
    deleted: list[str] = []
    for h in hashes:
        deleted += [r[0] for r in txn.execute("SELECT token_hash FROM access_tokens WHERE refresh_token_hash = ?",
                                              (h,)).fetchall()]
        txn.execute("DELETE FROM access_tokens WHERE refresh_token_hash = ?", (h,))
        txn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?", (h,))
    return deleted


class AccountsStore:
    """Built once per server as ``hs.get(AccountsStore)``; only needs ``hs.db``."""

    def __init__(self, hs):
        self.db = hs.db

    # --- users -----------------------------------------------------------------------------
    async def create_user(self, user_id: str, password_hash: str | None, now_ms: int, **kwargs) -> bool:
        """Insert a user (and profile row); False if the user ID is taken. kwargs as create_user_txn."""
        return await self.db.run("create_user", lambda txn: create_user_txn(txn, user_id, password_hash, now_ms,
                                                                            **kwargs))

    async def get_user(self, user_id: str) -> UserRecord | None:
        return await self.db.run("get_user", get_user_txn, user_id, readonly=True)

    async def user_exists(self, user_id: str) -> bool:
        """Whether the ID was ever registered (deactivated IDs are never reused)."""
        def txn_fn(txn):
            return txn.scalar("SELECT 1 FROM users WHERE user_id = ?", (user_id,)) is not None
        return await self.db.run("user_exists", txn_fn, readonly=True)

    async def find_users_case_insensitive(self, user_id: str) -> list[str]:
        """User IDs equal to ``user_id`` ignoring (ASCII) case."""
        def txn_fn(txn):
            return [r[0] for r in txn.execute("SELECT user_id FROM users WHERE LOWER(user_id) = LOWER(?)",
                                              (user_id,)).fetchall()]
        return await self.db.run("find_users_case_insensitive", txn_fn, readonly=True)

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        def txn_fn(txn):
            txn.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id))
        await self.db.run("set_password_hash", txn_fn)

    async def set_admin(self, user_id: str, is_admin: bool) -> None:
        def txn_fn(txn):
            txn.execute("UPDATE users SET is_admin = ? WHERE user_id = ?", (is_admin, user_id))
        await self.db.run("set_admin", txn_fn)

    async def set_locked(self, user_id: str, locked: bool) -> None:
        def txn_fn(txn):
            txn.execute("UPDATE users SET locked = ? WHERE user_id = ?", (locked, user_id))
        await self.db.run("set_locked", txn_fn)

    async def set_suspended(self, user_id: str, suspended: bool) -> None:
        def txn_fn(txn):
            txn.execute("UPDATE users SET suspended = ? WHERE user_id = ?", (suspended, user_id))
        await self.db.run("set_suspended", txn_fn)

    async def deactivate_user(self, user_id: str) -> list[str]:
        """Mark deactivated, forget the password, delete every token; returns deleted access-token hashes.
        Devices are left for the device service to delete (it runs the device hooks)."""
        def txn_fn(txn):
            txn.execute("UPDATE users SET deactivated = ?, password_hash = NULL WHERE user_id = ?", (True, user_id))
            hashes = [r[0] for r in txn.execute("SELECT token_hash FROM access_tokens WHERE user_id = ?",
                                                (user_id,)).fetchall()]
            txn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM login_tokens WHERE user_id = ?", (user_id,))
            return hashes
        return await self.db.run("deactivate_user", txn_fn)

    async def get_profile(self, user_id: str) -> tuple[str | None, str | None] | None:
        """(displayname, avatar_url) of a local user, or None if there is no profile row."""
        def txn_fn(txn):
            return txn.execute("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?",
                               (user_id,)).fetchone()
        row = await self.db.run("get_profile", txn_fn, readonly=True)
        return (row[0], row[1]) if row else None

    # --- devices ---------------------------------------------------------------------------
    async def add_device(self, user_id: str, device_id: str, display_name: str | None, now_ms: int) -> bool:
        return await self.db.run("add_device", add_device_txn, user_id, device_id, display_name, now_ms)

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        def txn_fn(txn):
            row = txn.execute("SELECT user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, "
                              "last_seen_user_agent FROM devices WHERE user_id = ? AND device_id = ?",
                              (user_id, device_id)).fetchone()
            return _device(row) if row else None
        return await self.db.run("get_device", txn_fn, readonly=True)

    async def get_devices(self, user_id: str) -> list[DeviceRecord]:
        def txn_fn(txn):
            rows = txn.execute("SELECT user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, "
                               "last_seen_user_agent FROM devices WHERE user_id = ? ORDER BY device_id",
                               (user_id,)).fetchall()
            return [_device(r) for r in rows]
        return await self.db.run("get_devices", txn_fn, readonly=True)

    async def set_device_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """False if the device does not exist."""
        def txn_fn(txn):
            txn.execute("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                        (display_name, user_id, device_id))
            return txn.rowcount == 1
        return await self.db.run("set_device_display_name", txn_fn)

    async def delete_devices(self, user_id: str, device_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Delete devices with their access and refresh tokens.

        Returns (device IDs that existed, access-token hashes deleted)."""
        device_ids = list(dict.fromkeys(device_ids))

        def txn_fn(txn):
            existed: list[str] = []
            tokens: list[str] = []
            for device_id in device_ids:
                txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                if txn.rowcount:
                    existed.append(device_id)
                tokens += [r[0] for r in txn.execute(
                    "SELECT token_hash FROM access_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id)).fetchall()]
                txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            return existed, tokens
        return await self.db.run("delete_devices", txn_fn)

    async def update_last_seen(self, rows: list[tuple[str, str, int, str, str | None]]) -> None:
        """Record (user_id, device_id, ts, ip, user_agent) sightings of devices."""
        def txn_fn(txn):
            txn.executemany("UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ? "
                            "WHERE user_id = ? AND device_id = ?",
                            [(ts, ip, ua, user_id, device_id) for user_id, device_id, ts, ip, ua in rows])
        await self.db.run("update_last_seen", txn_fn)

    # --- access and refresh tokens ---------------------------------------------------------
    async def add_access_token(self, token_hash: str, user_id: str, device_id: str | None, now_ms: int,
                               valid_until_ms: int | None = None, refresh_token_hash: str | None = None) -> None:
        await self.db.run("add_access_token", add_access_token_txn, token_hash, user_id, device_id, now_ms,
                          valid_until_ms, refresh_token_hash)

    async def add_refresh_token(self, token_hash: str, user_id: str, device_id: str, now_ms: int) -> None:
        def txn_fn(txn):
            txn.execute("INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)",
                        (token_hash, user_id, device_id, now_ms))
        await self.db.run("add_refresh_token", txn_fn)

    async def get_access_token(self, token_hash: str) -> AccessTokenRecord | None:
        def txn_fn(txn):
            return txn.execute(
                "SELECT t.token_hash, t.user_id, t.device_id, t.valid_until_ms, t.refresh_token_hash, t.used, "
                "u.is_guest, u.deactivated, u.locked, u.suspended FROM access_tokens AS t "
                "JOIN users AS u USING (user_id) WHERE t.token_hash = ?", (token_hash,)).fetchone()
        row = await self.db.run("get_access_token", txn_fn, readonly=True)
        if row is None:
            return None
        return AccessTokenRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]),
                                 bool(row[7]), bool(row[8]), bool(row[9]))

    async def mark_access_token_used(self, token_hash: str) -> list[str]:
        """First use of a refreshed access token: revoke the refresh token it replaced (and the
        access tokens issued with that one). Returns the revoked access-token hashes."""
        def txn_fn(txn):
            txn.execute("UPDATE access_tokens SET used = ? WHERE token_hash = ?", (True, token_hash))
            refresh = txn.scalar("SELECT refresh_token_hash FROM access_tokens WHERE token_hash = ?", (token_hash,))
            if refresh is None:
                return []
            return _delete_refresh_tokens_txn(txn, "next_token_hash = ?", (refresh,))
        return await self.db.run("mark_access_token_used", txn_fn)

    async def delete_access_token(self, token_hash: str) -> None:
        """Delete one access token and the refresh token it was issued with."""
        def txn_fn(txn):
            refresh = txn.scalar("SELECT refresh_token_hash FROM access_tokens WHERE token_hash = ?", (token_hash,))
            txn.execute("DELETE FROM access_tokens WHERE token_hash = ?", (token_hash,))
            if refresh is not None:
                _delete_refresh_tokens_txn(txn, "token_hash = ?", (refresh,))
        await self.db.run("delete_access_token", txn_fn)

    async def delete_access_tokens_for_user(self, user_id: str, *, except_token_hash: str | None = None,
                                            device_id: str | None = None) -> list[str]:
        """Delete a user's access and refresh tokens (of one device if given), keeping
        ``except_token_hash`` and its refresh token; returns the deleted access-token hashes."""
        def txn_fn(txn):
            where, args = "user_id = ?", [user_id]
            if device_id is not None:
                where, args = where + " AND device_id = ?", args + [device_id]
            keep_refresh = None
            if except_token_hash is not None:
                keep_refresh = txn.scalar("SELECT refresh_token_hash FROM access_tokens WHERE token_hash = ?",
                                          (except_token_hash,))
                where, args = where + " AND token_hash <> ?", args + [except_token_hash]
            hashes = [r[0] for r in txn.execute(f"SELECT token_hash FROM access_tokens WHERE {where}",
                                                args).fetchall()]
            txn.execute(f"DELETE FROM access_tokens WHERE {where}", args)
            rwhere, rargs = "user_id = ?", [user_id]
            if device_id is not None:
                rwhere, rargs = rwhere + " AND device_id = ?", rargs + [device_id]
            if keep_refresh is not None:
                rwhere, rargs = rwhere + " AND token_hash <> ?", rargs + [keep_refresh]
            txn.execute(f"DELETE FROM refresh_tokens WHERE {rwhere}", rargs)
            return hashes
        return await self.db.run("delete_access_tokens_for_user", txn_fn)

    async def rotate_refresh_token(self, old_hash: str, new_refresh_hash: str, new_access_hash: str,
                                   now_ms: int, valid_until_ms: int | None) -> tuple[str, str, list[str]] | None:
        """Replace a refresh token by a new refresh token and access token (client-server-api
        "Refreshing access tokens"). The old token stays until its successor is used; refreshing it
        again replaces the unused successor. Using it revokes its own predecessor.

        Returns (user_id, device_id, revoked access-token hashes), or None if ``old_hash`` is unknown.
        """
        def txn_fn(txn):
            row = txn.execute("SELECT user_id, device_id, next_token_hash FROM refresh_tokens WHERE token_hash = ?",
                              (old_hash,)).fetchone()
            if row is None:
                return None
            user_id, device_id, next_hash = row
            revoked: list[str] = []
            if next_hash is not None:
                revoked += _delete_refresh_tokens_txn(txn, "token_hash = ?", (next_hash,))
            revoked += _delete_refresh_tokens_txn(txn, "next_token_hash = ?", (old_hash,))
            txn.execute("INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)",
                        (new_refresh_hash, user_id, device_id, now_ms))
            add_access_token_txn(txn, new_access_hash, user_id, device_id, now_ms, valid_until_ms, new_refresh_hash)
            txn.execute("UPDATE refresh_tokens SET next_token_hash = ? WHERE token_hash = ?",
                        (new_refresh_hash, old_hash))
            return user_id, device_id, revoked
        return await self.db.run("rotate_refresh_token", txn_fn)

    # --- login tokens ----------------------------------------------------------------------
    async def add_login_token(self, token_hash: str, user_id: str, expiry_ts: int) -> None:
        def txn_fn(txn):
            txn.execute("INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (?, ?, ?)",
                        (token_hash, user_id, expiry_ts))
        await self.db.run("add_login_token", txn_fn)

    async def consume_login_token(self, token_hash: str, now_ms: int) -> str | None:
        """The user of an unused, unexpired login token, marking it used; None otherwise."""
        def txn_fn(txn):
            row = txn.execute("SELECT user_id, expiry_ts, used FROM login_tokens WHERE token_hash = ?",
                              (token_hash,)).fetchone()
            if row is None or row[2] or row[1] <= now_ms:
                return None
            txn.execute("UPDATE login_tokens SET used = ? WHERE token_hash = ? AND used = ?", (True, token_hash, False))
            return row[0] if txn.rowcount == 1 else None
        return await self.db.run("consume_login_token", txn_fn)

    # --- registration tokens ---------------------------------------------------------------
    async def create_registration_token(self, token: str, uses_allowed: int | None = None,
                                        expiry_time: int | None = None) -> bool:
        """False if the token exists already."""
        def txn_fn(txn):
            txn.execute("INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?) "
                        "ON CONFLICT (token) DO NOTHING", (token, uses_allowed, expiry_time))
            return txn.rowcount == 1
        return await self.db.run("create_registration_token", txn_fn)

    async def get_registration_token(self, token: str) -> RegistrationTokenRecord | None:
        def txn_fn(txn):
            return txn.execute("SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens "
                               "WHERE token = ?", (token,)).fetchone()
        row = await self.db.run("get_registration_token", txn_fn, readonly=True)
        return RegistrationTokenRecord(*row) if row else None

    async def reserve_registration_token(self, token: str, now_ms: int) -> bool:
        """If the token is valid, count one more pending use and return True."""
        def txn_fn(txn):
            row = txn.execute("SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens "
                              "WHERE token = ?", (token,)).fetchone()
            if row is None or not RegistrationTokenRecord(*row).is_valid(now_ms):
                return False
            txn.execute("UPDATE registration_tokens SET pending = pending + 1 WHERE token = ?", (token,))
            return True
        return await self.db.run("reserve_registration_token", txn_fn)

    async def finish_registration_token(self, token: str, *, used: bool) -> None:
        """A pending use ends: counted as completed (used) or given back."""
        def txn_fn(txn):
            extra = ", completed = completed + 1" if used else ""
            txn.execute(f"UPDATE registration_tokens SET pending = pending - 1{extra} WHERE token = ? AND pending > 0",
                        (token,))
        await self.db.run("finish_registration_token", txn_fn)
