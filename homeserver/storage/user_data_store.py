"""SQL for per-user client data: filters, account data and tags, push rules, pushers, extra
profile fields, presence (schema 0030_client_features.sql).

Two streams live here, each with a :class:`StreamIdGenerator`: ``account_data_ids`` (account data,
tags and push-rule changes) and ``presence_ids``. Writers allocate an id on the reactor thread,
pass it in, and call ``finish`` once the write committed (the services do this).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .database import Txn
from .id_generator import StreamIdGenerator
from .lru import LruCache

PUSH_RULES_TYPE = "m.push_rules"
TAG_TYPE = "m.tag"
GLOBAL = ""  # room_id of global account data


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class PushRuleNotFound(Exception):
    """The before/after rule of an insertion does not exist."""


@dataclass(frozen=True)
class AccountDataRow:
    room_id: str  # "" for global
    data_type: str
    content: dict | None  # None for the m.push_rules marker row
    stream_id: int


@dataclass(frozen=True)
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    stream_id: int


def _chunks(items: Sequence, n: int = 500):
    for i in range(0, len(items), n):
        yield items[i:i + n]


class UserDataStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        ad, pr = self.db.run_sync("user_data_store_init", self._init_txn)
        self.account_data_ids = StreamIdGenerator(ad)
        self.presence_ids = StreamIdGenerator(pr)
        # Pushers per user (most have none; the push pool asks for every notified user).
        self._pushers_cache: LruCache[str, list[dict]] = LruCache(50_000)
        self._pushers_generation = 0
        # Profiles of local users (read for every membership event they send); only users with a
        # profile row are cached, a read racing a write of any profile is not kept.
        self._profiles: LruCache[str, dict] = LruCache(20_000)
        self._profiles_generation = 0

    @staticmethod
    def _init_txn(txn: Txn) -> tuple[int, int]:
        return (txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM account_data") or 0,
                txn.scalar("SELECT COALESCE(MAX(stream_id), 0) FROM presence") or 0)

    # --- filters --------------------------------------------------------------------------------
    async def add_filter(self, user_id: str, filter_json: dict) -> int:
        """Store a filter; returns its per-user id (0, 1, 2, ...)."""
        def txn_fn(txn: Txn) -> int:
            n = txn.scalar("SELECT COALESCE(MAX(filter_id), -1) FROM user_filters WHERE user_id = ?", (user_id,))
            filter_id = int(n) + 1
            txn.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                        (user_id, filter_id, _dumps(filter_json)))
            return filter_id
        return await self.db.run("add_filter", txn_fn)

    async def get_filter(self, user_id: str, filter_id: int) -> dict | None:
        def txn_fn(txn: Txn):
            return txn.scalar("SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
                              (user_id, filter_id))
        raw = await self.db.run("get_filter", txn_fn, readonly=True)
        return json.loads(raw) if raw is not None else None

    # --- account data ---------------------------------------------------------------------------
    @staticmethod
    def _put_account_data_txn(txn: Txn, user_id: str, room_id: str, data_type: str, content: str,
                              stream_id: int) -> None:
        txn.execute(
            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content,"
            " stream_id = excluded.stream_id",
            (user_id, room_id, data_type, content, stream_id))

    async def set_account_data(self, user_id: str, room_id: str, data_type: str, content: dict,
                               stream_id: int) -> None:
        """Replace one account data entry (room_id "" for global)."""
        await self.db.run("set_account_data", self._put_account_data_txn, user_id, room_id, data_type,
                          _dumps(content), stream_id)

    async def get_account_data(self, user_id: str, room_id: str, data_type: str) -> dict | None:
        def txn_fn(txn: Txn):
            return txn.scalar("SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND data_type = ?",
                              (user_id, room_id, data_type))
        raw = await self.db.run("get_account_data", txn_fn, readonly=True)
        return json.loads(raw) if raw is not None else None

    async def get_account_data_changes(self, user_id: str, from_id: int, to_id: int) -> list[AccountDataRow]:
        """Entries of ``user_id`` changed in (from_id, to_id], oldest first (from_id 0: all)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_id, data_type, content, stream_id FROM account_data"
                        " WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
                        (user_id, from_id, to_id))
            return txn.fetchall()
        rows = await self.db.run("get_account_data_changes", txn_fn, readonly=True)
        return [AccountDataRow(r[0], r[1], None if r[1] == PUSH_RULES_TYPE and r[0] == GLOBAL else json.loads(r[2]),
                               int(r[3])) for r in rows]

    async def change_tags(self, user_id: str, room_id: str, stream_id: int, *, add: tuple[str, dict] | None = None,
                          remove: str | None = None) -> None:
        """Add (tag, content) or remove a tag in the room's m.tag entry, in one transaction."""
        def txn_fn(txn: Txn):
            raw = txn.scalar("SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND data_type = ?",
                             (user_id, room_id, TAG_TYPE))
            content = json.loads(raw) if raw is not None else {}
            tags = content.get("tags") if isinstance(content.get("tags"), dict) else {}
            if add is not None:
                tags[add[0]] = add[1]
            if remove is not None:
                tags.pop(remove, None)
            self._put_account_data_txn(txn, user_id, room_id, TAG_TYPE, _dumps({"tags": tags}), stream_id)
        await self.db.run("change_tags", txn_fn)

    # --- push rules -----------------------------------------------------------------------------
    async def get_push_rules(self, user_id: str) -> tuple[dict[str, list[dict]], dict[tuple[str, str], dict]]:
        """(kind -> own rules most important first, (kind, rule_id) -> changes to defaults)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
                        " WHERE user_id = ? ORDER BY kind, priority", (user_id,))
            rules = txn.fetchall()
            txn.execute("SELECT kind, rule_id, enabled, actions FROM push_rule_default_changes WHERE user_id = ?",
                        (user_id,))
            return rules, txn.fetchall()
        rows, changes = await self.db.run("get_push_rules", txn_fn, readonly=True)
        user_rules: dict[str, list[dict]] = {}
        for kind, rule_id, conditions, pattern, actions, enabled in rows:
            rule: dict[str, Any] = {"rule_id": rule_id, "actions": json.loads(actions), "enabled": bool(enabled)}
            if conditions is not None:
                rule["conditions"] = json.loads(conditions)
            if pattern is not None:
                rule["pattern"] = pattern
            user_rules.setdefault(kind, []).append(rule)
        defaults = {(k, r): {"enabled": None if e is None else bool(e), "actions": None if a is None else json.loads(a)}
                    for k, r, e, a in changes}
        return user_rules, defaults

    def _mark_push_rules_txn(self, txn: Txn, user_id: str, stream_id: int) -> None:
        self._put_account_data_txn(txn, user_id, GLOBAL, PUSH_RULES_TYPE, "{}", stream_id)

    async def add_push_rule(self, user_id: str, kind: str, rule: dict, stream_id: int, *,
                            before: str | None = None, after: str | None = None) -> None:
        """Insert or update a rule. A new rule without before/after becomes the most important of
        its kind; an updated one keeps its place unless before/after is given. Raises
        :class:`PushRuleNotFound` if the before/after rule is not one of the user's rules."""
        rule_id = rule["rule_id"]

        def txn_fn(txn: Txn):
            txn.execute("SELECT rule_id, enabled FROM push_rules WHERE user_id = ? AND kind = ? ORDER BY priority",
                        (user_id, kind))
            existing = txn.fetchall()
            order = [r[0] for r in existing]
            enabled = {r[0]: bool(r[1]) for r in existing}
            is_new = rule_id not in enabled
            anchor = before if before is not None else after
            if anchor is not None:
                if anchor == rule_id or anchor not in enabled:
                    raise PushRuleNotFound(anchor)
                order = [r for r in order if r != rule_id]
                i = order.index(anchor)
                order.insert(i if before is not None else i + 1, rule_id)
            elif is_new:
                order.insert(0, rule_id)
            txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (user_id, kind, rule_id))
            txn.execute("INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions,"
                        " enabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (user_id, kind, rule_id, 0,
                         _dumps(rule["conditions"]) if "conditions" in rule else None,
                         rule.get("pattern"), _dumps(rule["actions"]),
                         True if is_new else enabled[rule_id]))
            txn.executemany("UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                            [(i, user_id, kind, rid) for i, rid in enumerate(order)])
            self._mark_push_rules_txn(txn, user_id, stream_id)
        await self.db.run("add_push_rule", txn_fn)

    async def delete_push_rule(self, user_id: str, kind: str, rule_id: str, stream_id: int) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (user_id, kind, rule_id))
            if txn.rowcount <= 0:
                return False
            self._mark_push_rules_txn(txn, user_id, stream_id)
            return True
        return await self.db.run("delete_push_rule", txn_fn)

    async def update_push_rule(self, user_id: str, kind: str, rule_id: str, stream_id: int, *,
                               is_default: bool, enabled: bool | None = None, actions: list | None = None) -> bool:
        """Set enabled and/or actions of a rule (a server-default one when ``is_default``).
        False if the user has no such rule of their own (server-default rules always exist)."""
        def txn_fn(txn: Txn) -> bool:
            if is_default:
                txn.execute("INSERT INTO push_rule_default_changes (user_id, kind, rule_id, enabled, actions)"
                            " VALUES (?, ?, ?, NULL, NULL) ON CONFLICT (user_id, kind, rule_id) DO NOTHING",
                            (user_id, kind, rule_id))
                table = "push_rule_default_changes"
            else:
                table = "push_rules"
            sets, args = [], []
            if enabled is not None:
                sets.append("enabled = ?")
                args.append(bool(enabled))
            if actions is not None:
                sets.append("actions = ?")
                args.append(_dumps(actions))
            if not sets:
                return True
            txn.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        args + [user_id, kind, rule_id])
            if txn.rowcount <= 0:
                return False
            self._mark_push_rules_txn(txn, user_id, stream_id)
            return True
        return await self.db.run("update_push_rule", txn_fn)

    # --- pushers --------------------------------------------------------------------------------
    _PUSHER_COLS = ("user_id", "app_id", "pushkey", "kind", "app_display_name", "device_display_name",
                    "profile_tag", "lang", "data", "device_id", "created_ts")

    def _pusher(self, row) -> dict:
        p = dict(zip(self._PUSHER_COLS, row))
        p["data"] = json.loads(p["data"])
        return p

    async def get_pushers(self, user_id: str | None = None) -> list[dict]:
        """The user's pushers (every pusher when user_id is None), as column dicts (a user's are
        cached until a pusher changes)."""
        if user_id is not None:
            cached = self._pushers_cache.get(user_id)
            if cached is not None:
                return copy.deepcopy(cached)
        generation = self._pushers_generation

        def txn_fn(txn: Txn):
            sql = f"SELECT {', '.join(self._PUSHER_COLS)} FROM pushers"
            if user_id is None:
                txn.execute(sql + " ORDER BY user_id, created_ts")
            else:
                txn.execute(sql + " WHERE user_id = ? ORDER BY created_ts, app_id, pushkey", (user_id,))
            return txn.fetchall()
        pushers = [self._pusher(r) for r in await self.db.run("get_pushers", txn_fn, readonly=True)]
        if user_id is not None and generation == self._pushers_generation:
            self._pushers_cache.set(user_id, copy.deepcopy(pushers))
        return pushers

    def _pushers_changed(self) -> None:
        self._pushers_generation += 1
        self._pushers_cache.clear()

    async def set_pusher(self, pusher: dict, *, append: bool) -> None:
        """Insert or replace a pusher (keys of ``_PUSHER_COLS``); unless ``append``, remove the
        pushers of other users with the same app_id and pushkey (pusher.yaml ``append``)."""
        def txn_fn(txn: Txn):
            if not append:
                txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                            (pusher["app_id"], pusher["pushkey"], pusher["user_id"]))
            txn.execute("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                        (pusher["user_id"], pusher["app_id"], pusher["pushkey"]))
            row = dict(pusher, data=_dumps(pusher["data"]))
            txn.execute(f"INSERT INTO pushers ({', '.join(self._PUSHER_COLS)})"
                        f" VALUES ({', '.join('?' * len(self._PUSHER_COLS))})",
                        [row.get(c) for c in self._PUSHER_COLS])
        try:
            await self.db.run("set_pusher", txn_fn)
        finally:
            self._pushers_changed()

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                        (user_id, app_id, pushkey))
            return txn.rowcount > 0
        try:
            return await self.db.run("delete_pusher", txn_fn)
        finally:
            self._pushers_changed()

    async def delete_pushers_for_devices(self, user_id: str, device_ids: Iterable[str]) -> int:
        """Remove the pushers created from these devices (logout, device deletion)."""
        ids = list(device_ids)

        def txn_fn(txn: Txn) -> int:
            n = 0
            for chunk in _chunks(ids):
                txn.execute(f"DELETE FROM pushers WHERE user_id = ? AND device_id IN ({','.join('?' * len(chunk))})",
                            [user_id, *chunk])
                n += max(txn.rowcount, 0)
            return n
        if not ids:
            return 0
        try:
            return await self.db.run("delete_pushers_for_devices", txn_fn)
        finally:
            self._pushers_changed()

    # --- profiles -------------------------------------------------------------------------------
    async def get_profile(self, user_id: str) -> dict | None:
        """Every profile field of a local user, or None if the user has no profile row (unknown).
        displayname/avatar_url come from the accounts' ``profiles`` table (absent when NULL)."""
        return (await self.get_profiles([user_id])).get(user_id)

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, dict]:
        """user_id -> profile (a copy: callers may change it) for the users that have a profile row."""
        out: dict[str, dict] = {}
        missing = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._profiles.get(user_id)
            if cached is None:
                missing.append(user_id)
            else:
                out[user_id] = dict(cached)
        if missing:
            generation = self._profiles_generation
            loaded = await self._load_profiles(missing)
            keep = generation == self._profiles_generation
            for user_id, profile in loaded.items():
                if keep:
                    self._profiles.set(user_id, dict(profile))
                out[user_id] = profile
        return out

    def _profile_changed(self, user_id: str) -> None:
        self._profiles_generation += 1
        self._profiles.pop(user_id)

    async def _load_profiles(self, ids: list[str]) -> dict[str, dict]:

        def txn_fn(txn: Txn):
            out: dict[str, dict] = {}
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                txn.execute(f"SELECT user_id, displayname, avatar_url FROM profiles WHERE user_id IN ({marks})", chunk)
                for uid, displayname, avatar_url in txn.fetchall():
                    p: dict[str, Any] = {}
                    if displayname is not None:
                        p["displayname"] = displayname
                    if avatar_url is not None:
                        p["avatar_url"] = avatar_url
                    out[uid] = p
                txn.execute(f"SELECT user_id, field_name, value FROM profile_fields WHERE user_id IN ({marks})"
                            " ORDER BY user_id, field_name", chunk)
                for uid, name, value in txn.fetchall():
                    if uid in out:
                        out[uid][name] = json.loads(value)
            return out
        return await self.db.run("get_profiles", txn_fn, readonly=True) if ids else {}

    async def set_profile_field(self, user_id: str, name: str, value: Any) -> bool:
        """Set one field (displayname/avatar_url None clears them); False if the user has no
        profile row."""
        def txn_fn(txn: Txn) -> bool:
            if txn.scalar("SELECT 1 FROM profiles WHERE user_id = ?", (user_id,)) is None:
                return False
            if name in ("displayname", "avatar_url"):
                txn.execute(f"UPDATE profiles SET {name} = ? WHERE user_id = ?", (value, user_id))
            else:
                txn.execute("INSERT INTO profile_fields (user_id, field_name, value) VALUES (?, ?, ?)"
                            " ON CONFLICT (user_id, field_name) DO UPDATE SET value = excluded.value",
                            (user_id, name, _dumps(value)))
            return True
        try:
            return await self.db.run("set_profile_field", txn_fn)
        finally:
            self._profile_changed(user_id)

    async def delete_profile_field(self, user_id: str, name: str) -> bool:
        """Remove one field; False if the user has no profile row."""
        if name in ("displayname", "avatar_url"):
            return await self.set_profile_field(user_id, name, None)

        def txn_fn(txn: Txn) -> bool:
            if txn.scalar("SELECT 1 FROM profiles WHERE user_id = ?", (user_id,)) is None:
                return False
            txn.execute("DELETE FROM profile_fields WHERE user_id = ? AND field_name = ?", (user_id, name))
            return True
        try:
            return await self.db.run("delete_profile_field", txn_fn)
        finally:
            self._profile_changed(user_id)

    # --- presence -------------------------------------------------------------------------------
    async def set_presence(self, user_id: str, state: str, status_msg: str | None, last_active_ts: int,
                           stream_id: int) -> None:
        def txn_fn(txn: Txn):
            txn.execute("INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
                        " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
                        " stream_id = excluded.stream_id",
                        (user_id, state, status_msg, last_active_ts, stream_id))
        await self.db.run("set_presence", txn_fn)

    async def get_presence(self, user_ids: Iterable[str]) -> dict[str, PresenceRow]:
        ids = list(dict.fromkeys(user_ids))

        def txn_fn(txn: Txn):
            rows = []
            for chunk in _chunks(ids):
                txn.execute("SELECT user_id, state, status_msg, last_active_ts, stream_id FROM presence"
                            f" WHERE user_id IN ({','.join('?' * len(chunk))})", chunk)
                rows.extend(txn.fetchall())
            return rows
        rows = await self.db.run("get_presence", txn_fn, readonly=True) if ids else []
        return {r[0]: PresenceRow(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows}

    async def get_presence_changes(self, from_id: int, to_id: int,
                                   user_ids: Iterable[str] | None = None) -> list[PresenceRow]:
        """Presence rows changed in (from_id, to_id], optionally only of these users."""
        ids = None if user_ids is None else list(dict.fromkeys(user_ids))

        def txn_fn(txn: Txn):
            sql = ("SELECT user_id, state, status_msg, last_active_ts, stream_id FROM presence"
                   " WHERE stream_id > ? AND stream_id <= ?")
            if ids is None:
                txn.execute(sql + " ORDER BY stream_id", (from_id, to_id))
                return txn.fetchall()
            rows = []
            for chunk in _chunks(ids):
                txn.execute(sql + f" AND user_id IN ({','.join('?' * len(chunk))})", [from_id, to_id, *chunk])
                rows.extend(txn.fetchall())
            return sorted(rows, key=lambda r: r[4])
        if ids is not None and not ids:
            return []
        rows = await self.db.run("get_presence_changes", txn_fn, readonly=True)
        return [PresenceRow(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]
