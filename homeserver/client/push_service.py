"""Push rules and pushers of a user: the services behind /pushrules and /pushers.

Sources: client-server-api/modules/push.md ("Push Rules", "Push Rules: API", "Push Rules:
Events", "Client behaviour"), data/api/client-server/pushrules.yaml and pusher.yaml. The pure
parts (default rules, merging, validation, evaluation) are in :mod:`homeserver.client.push_rules`.

Push rule changes are written on the account-data stream (clients receive ``m.push_rules``
global account data). Pushers are stored here; delivery to push gateways
(push-gateway-api ``/_matrix/push/v1/notify``) is homeserver/push/pusher_pool.py and
http_pusher.py, which read :meth:`UserDataStore.get_pushers`.
"""
from __future__ import annotations

from collections import OrderedDict
from urllib.parse import urlsplit

from homeserver.http.errors import MatrixError, invalid_param, missing_param, not_found, bad_json
from homeserver.storage.user_data_store import PushRuleNotFound, UserDataStore

from . import push_rules
from .account_data import AccountDataService
from .push_rules import PushRuleError

_RULESET_CACHE_SIZE = 10_000
PUSH_GATEWAY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS = 64  # pusher.yaml
MAX_PUSHKEY_BYTES = 512  # pusher.yaml


def _rule_error(e: PushRuleError) -> MatrixError:
    return MatrixError(400, e.errcode, e.message)


class PushRulesService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(UserDataStore)
        self.account_data = hs.get(AccountDataService)
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._generation = 0  # bumped by every write, so a read that raced one is not cached
        #: user -> (the cached ruleset it was compiled from, the compiled form)
        self._compiled: dict[str, tuple[dict, push_rules.CompiledRuleset]] = {}
        #: Users who have (or had) push rules of their own or changed a default one; everyone
        #: else is evaluated with the shared template push_rules.default_ruleset().
        self.customised_users: set[str] = set(self.store.db.run_sync(
            "push_rules_customised_users", self._customised_users_txn))

    @staticmethod
    def _customised_users_txn(txn) -> list[str]:
        txn.execute("SELECT user_id FROM push_rules UNION SELECT user_id FROM push_rule_default_changes")
        return [r[0] for r in txn.fetchall()]

    async def get_ruleset(self, user_id: str) -> dict:
        """The user's whole ruleset in client format and priority order (push_ruleset.yaml);
        what :func:`push_rules.evaluate` takes. Cached; do not mutate the result."""
        cached = self._cache.get(user_id)
        if cached is not None:
            self._cache.move_to_end(user_id)
            return cached
        generation = self._generation
        own, defaults = await self.store.get_push_rules(user_id)
        ruleset = push_rules.merge_ruleset(user_id, own, defaults)
        if generation != self._generation:
            return ruleset
        self._cache[user_id] = ruleset
        if len(self._cache) > _RULESET_CACHE_SIZE:
            self._cache.popitem(last=False)
        return ruleset

    async def get_compiled_ruleset(self, user_id: str) -> push_rules.CompiledRuleset:
        """The user's ruleset compiled for evaluation (:class:`push_rules.CompiledRuleset`),
        recompiled only when the ruleset changes."""
        ruleset = await self.get_ruleset(user_id)
        cached = self._compiled.get(user_id)
        if cached is not None and cached[0] is ruleset:
            return cached[1]
        compiled = push_rules.CompiledRuleset(ruleset)
        if len(self._compiled) >= _RULESET_CACHE_SIZE:
            self._compiled.pop(next(iter(self._compiled)))
        self._compiled[user_id] = (ruleset, compiled)
        return compiled

    async def _write(self, user_id: str, fn):
        self.customised_users.add(user_id)  # before the write: never evaluated with stale defaults
        try:
            return await self.account_data.write(user_id, fn)
        finally:
            self._generation += 1
            self._cache.pop(user_id, None)

    @staticmethod
    def check_kind(kind: str) -> None:
        if kind not in push_rules.KINDS:
            raise invalid_param(f"Unknown push rule kind {kind!r}")

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict:
        """One rule (server-default or the user's); 404 M_NOT_FOUND if there is none."""
        self.check_kind(kind)
        rule = push_rules.find_rule(await self.get_ruleset(user_id), kind, rule_id)
        if rule is None:
            raise not_found("The push rule was not found.")
        return rule

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: dict, *,
                       before: str | None = None, after: str | None = None) -> None:
        """pushrules.yaml PUT: create or replace one of the user's rules (new rules are enabled);
        before/after must name one of the user's rules of that kind (400 M_UNKNOWN otherwise)."""
        self.check_kind(kind)
        try:
            rule = push_rules.validate_rule(kind, rule_id, body)
        except PushRuleError as e:
            raise _rule_error(e) from None
        for anchor in (before, after):
            if anchor is not None and push_rules.is_server_default(anchor):
                raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {anchor}")
        try:
            await self._write(user_id, lambda sid: self.store.add_push_rule(user_id, kind, rule, sid,
                                                                             before=before, after=after))
        except PushRuleNotFound as e:
            raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {e.args[0]}") from None

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """404 M_NOT_FOUND if the user has no such rule; server-default rules cannot be deleted."""
        self.check_kind(kind)
        if push_rules.is_server_default(rule_id):
            if push_rules.find_default_rule(kind, rule_id, user_id) is not None:
                raise MatrixError(400, "M_INVALID_PARAM", "Server-default push rules cannot be deleted")
            raise not_found("The push rule was not found.")
        if not await self._write(user_id, lambda sid: self.store.delete_push_rule(user_id, kind, rule_id, sid)):
            raise not_found("The push rule was not found.")

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        await self._update(user_id, kind, rule_id, enabled=enabled)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: list) -> None:
        try:
            actions = push_rules.validate_actions(actions)
        except PushRuleError as e:
            raise _rule_error(e) from None
        await self._update(user_id, kind, rule_id, actions=actions)

    async def _update(self, user_id: str, kind: str, rule_id: str, **changes) -> None:
        self.check_kind(kind)
        is_default = push_rules.is_server_default(rule_id)
        if is_default and push_rules.find_default_rule(kind, rule_id, user_id) is None:
            raise not_found("The push rule was not found.")
        found = await self._write(user_id, lambda sid: self.store.update_push_rule(
            user_id, kind, rule_id, sid, is_default=is_default, **changes))
        if not found:
            raise not_found("The push rule was not found.")


class PusherService:
    """pusher.yaml: GET /pushers and POST /pushers/set (delivery: homeserver/push/pusher_pool.py)."""

    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(UserDataStore)

    async def delete_pushers_of_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Hook of ``DeviceService.on_device_deleted``: a pusher set from a device goes with the
        device (logout, DELETE /devices/{deviceId}, /delete_devices), as in Synapse."""
        await self.store.delete_pushers_for_devices(user_id, device_ids)

    async def delete_all_pushers(self, user_id: str) -> None:
        """Every pusher of the user, whichever device (or none) set it; for deactivation."""
        for p in await self.store.get_pushers(user_id):
            await self.store.delete_pusher(user_id, p["app_id"], p["pushkey"])

    async def get_pushers(self, user_id: str) -> list[dict]:
        """The user's pushers in the response shape of GET /pushers."""
        out = []
        for p in await self.store.get_pushers(user_id):
            item = {k: p[k] for k in ("pushkey", "kind", "app_id", "app_display_name", "device_display_name",
                                      "lang", "data")}
            if p.get("profile_tag") is not None:
                item["profile_tag"] = p["profile_tag"]
            out.append(item)
        return out

    async def set_pusher(self, user_id: str, device_id: str | None, body: dict) -> None:
        """POST /pushers/set: create, replace or (``kind: null``) delete a pusher."""
        missing = [k for k in ("kind", "app_id", "pushkey") if k not in body]
        if missing:
            raise missing_param(f"Missing parameters: {', '.join(missing)}")
        app_id, pushkey, kind = body["app_id"], body["pushkey"], body["kind"]
        if not isinstance(app_id, str) or not isinstance(pushkey, str):
            raise bad_json("'app_id' and 'pushkey' must be strings")
        if len(app_id) > MAX_APP_ID_CHARS:
            raise invalid_param(f"'app_id' is at most {MAX_APP_ID_CHARS} characters")
        if len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
            raise invalid_param(f"'pushkey' is at most {MAX_PUSHKEY_BYTES} bytes")
        if kind is None:
            await self.store.delete_pusher(user_id, app_id, pushkey)
            return
        if not isinstance(kind, str):
            raise bad_json("'kind' must be a string or null")
        missing = [k for k in ("app_display_name", "device_display_name", "lang", "data") if k not in body]
        if missing:
            raise missing_param(f"Missing parameters: {', '.join(missing)}")
        for key in ("app_display_name", "device_display_name", "lang"):
            if not isinstance(body[key], str):
                raise bad_json(f"'{key}' must be a string")
        if body.get("profile_tag") is not None and not isinstance(body["profile_tag"], str):
            raise bad_json("'profile_tag' must be a string")
        data = body["data"]
        if not isinstance(data, dict):
            raise bad_json("'data' must be an object")
        if "format" in data and not isinstance(data["format"], str):
            raise bad_json("'data.format' must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise bad_json("'append' must be a boolean")
        if kind == "http":
            self._check_http_url(data)
        elif kind == "email":
            # Email notifications need a mailer and validated 3PIDs, which uzel does not have yet.
            raise invalid_param("Email pushers are not supported by this server")
        else:
            raise invalid_param(f"Unknown pusher kind {kind!r}")
        await self.store.set_pusher({
            "user_id": user_id, "app_id": app_id, "pushkey": pushkey, "kind": kind,
            "app_display_name": body["app_display_name"], "device_display_name": body["device_display_name"],
            "profile_tag": body.get("profile_tag"), "lang": body["lang"], "data": data, "device_id": device_id,
            "created_ts": self.hs.clock_ms(),
        }, append=append)

    @staticmethod
    def _check_http_url(data: dict) -> None:
        """pusher.yaml: ``data.url`` is required for http pushers, with the path
        /_matrix/push/v1/notify (plain http is accepted for local gateways, as Synapse does)."""
        url = data.get("url")
        if url is None:
            raise missing_param("'url' required in data for HTTP pusher")
        if not isinstance(url, str):
            raise bad_json("'data.url' must be a string")
        try:
            parts = urlsplit(url)
        except ValueError:
            raise invalid_param("'data.url' is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid_param("'data.url' must be an http(s) URL")
        if parts.path != PUSH_GATEWAY_PATH:
            raise invalid_param(f"'data.url' must have a path of '{PUSH_GATEWAY_PATH}'")
