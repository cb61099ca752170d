"""Push rules: the server-default rule set, merging with a user's rules, validation of rule
bodies, and the evaluator (pure, no I/O).

Source: client-server-api/modules/push.md "Push Rules", "Conditions", "Predefined Rules"
(v1.17: the legacy body-mention rules are gone), appendices "Glob-style matching" and
"Dot-separated property paths". The notification pipeline compiles each user's ruleset once
(:class:`CompiledRuleset`) and evaluates an event for all its local recipients with one shared
:class:`EventFacts`; :func:`evaluate` is the one-off form. The push-rules endpoints use
:func:`merge_ruleset` and :func:`validate_rule`.

A ruleset here is the client-format object of push_ruleset.yaml: ``{"override": [...],
"content": [...], "room": [...], "sender": [...], "underride": [...]}``, each list in priority
order, each rule ``{"rule_id", "default", "enabled", "actions", ["conditions" | "pattern"]}``.
"""
from __future__ import annotations

import copy
import operator
import re
from collections.abc import Mapping as _AbcMapping
from functools import lru_cache
from typing import Any, Iterable, Mapping

from .filtering import split_dotted_path

#: Rule kinds in the order they are checked (push.md "Push Rules").
KINDS = ("override", "content", "room", "sender", "underride")

#: push.md "Historical Actions": ignored wherever they appear.
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})

#: Condition kinds the evaluator knows; any other kind never matches (push.md "Conditions").
KNOWN_CONDITIONS = frozenset({
    "event_match", "event_property_is", "event_property_contains", "contains_display_name",
    "room_member_count", "sender_notification_permission",
})

_ME = "[the user's Matrix ID]"
_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _rule(rule_id: str, conditions: list, actions: list, enabled: bool = True) -> dict:
    return {"rule_id": rule_id, "default": True, "enabled": enabled, "conditions": conditions,
            "actions": actions}


def _match(key: str, pattern: str) -> dict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


#: push.md "Default Override Rules", in the spec's order. ``.m.rule.master`` always comes first
#: of all rules, user-defined ones included; the rest follow the user's override rules.
MASTER_RULE = _rule(".m.rule.master", [], [], enabled=False)
DEFAULT_OVERRIDE_RULES = (
    _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule(".m.rule.invite_for_me",
          [_match("type", "m.room.member"), _match("content.membership", "invite"), _match("state_key", _ME)],
          ["notify", _SOUND_DEFAULT]),
    _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule(".m.rule.is_user_mention",
          [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": _ME}],
          ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
    _rule(".m.rule.is_room_mention",
          [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
           {"kind": "sender_notification_permission", "key": "room"}],
          ["notify", _HIGHLIGHT]),
    _rule(".m.rule.tombstone", [_match("type", "m.room.tombstone"), _match("state_key", "")],
          ["notify", _HIGHLIGHT]),
    _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
    _rule(".m.rule.suppress_edits",
          [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}], []),
)
#: push.md: v1.17 removed the only default content rule (.m.rule.contains_user_name).
DEFAULT_CONTENT_RULES: tuple[dict, ...] = ()
#: push.md "Default Underride Rules", in the spec's order.
DEFAULT_UNDERRIDE_RULES = (
    _rule(".m.rule.call", [_match("type", "m.call.invite")],
          ["notify", {"set_tweak": "sound", "value": "ring"}]),
    _rule(".m.rule.encrypted_room_one_to_one",
          [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
          ["notify", _SOUND_DEFAULT]),
    _rule(".m.rule.room_one_to_one",
          [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
          ["notify", _SOUND_DEFAULT]),
    _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
)


def _personalise(value: Any, user_id: str) -> Any:
    if value == _ME:
        return user_id
    if isinstance(value, dict):
        return {k: _personalise(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_personalise(v, user_id) for v in value]
    return value


def default_rules(user_id: str) -> dict[str, list[dict]]:
    """The server-default rules for ``user_id`` by kind (master first among overrides)."""
    return {
        "override": [_personalise(r, user_id) for r in (MASTER_RULE,) + DEFAULT_OVERRIDE_RULES],
        "content": [_personalise(r, user_id) for r in DEFAULT_CONTENT_RULES],
        "room": [],
        "sender": [],
        "underride": [_personalise(r, user_id) for r in DEFAULT_UNDERRIDE_RULES],
    }


def is_server_default(rule_id: str) -> bool:
    """push.md "Predefined Rules": server-default rule IDs start with a dot."""
    return rule_id.startswith(".")


def find_default_rule(kind: str, rule_id: str, user_id: str) -> dict | None:
    """The server-default rule ``rule_id`` of ``kind`` (personalised), or None."""
    for rule in default_rules(user_id).get(kind, ()):
        if rule["rule_id"] == rule_id:
            return rule
    return None


def merge_ruleset(user_id: str, user_rules: Mapping[str, Iterable[Mapping]],
                  default_overrides: Mapping[tuple[str, str], Mapping] | None = None) -> dict:
    """The user's whole ruleset in client format and priority order.

    ``user_rules``: kind -> the user's own rules of that kind, most important first, each
    ``{"rule_id", "enabled", "actions", and "conditions" (override/underride) or "pattern"
    (content)}``. ``default_overrides``: (kind, rule_id) -> ``{"enabled": bool|None,
    "actions": list|None}`` for server-default rules the user has changed.
    Order (push.md "Predefined Rules"): .m.rule.master, then per kind the user's rules before
    the server-default ones.
    """
    defaults = default_rules(user_id)
    overrides = default_overrides or {}

    def apply(kind: str, rule: dict) -> dict:
        change = overrides.get((kind, rule["rule_id"]))
        if change:
            if change.get("enabled") is not None:
                rule["enabled"] = bool(change["enabled"])
            if change.get("actions") is not None:
                rule["actions"] = list(change["actions"])
        return rule

    out: dict[str, list[dict]] = {}
    for kind in KINDS:
        own = [_client_rule(kind, r) for r in user_rules.get(kind, ())]
        server = [apply(kind, r) for r in defaults[kind]]
        if kind == "override":
            master = [r for r in server if r["rule_id"] == MASTER_RULE["rule_id"]]
            rest = [r for r in server if r["rule_id"] != MASTER_RULE["rule_id"]]
            out[kind] = master + own + rest
        else:
            out[kind] = own + server
    return out


def _client_rule(kind: str, rule: Mapping) -> dict:
    out = {"rule_id": rule["rule_id"], "default": False, "enabled": bool(rule.get("enabled", True)),
           "actions": list(rule.get("actions") or [])}
    if kind in ("override", "underride"):
        out["conditions"] = list(rule.get("conditions") or [])
    elif kind == "content":
        out["pattern"] = rule.get("pattern", "")
    return out


def find_rule(ruleset: Mapping[str, list], kind: str, rule_id: str) -> dict | None:
    for rule in ruleset.get(kind, ()):
        if rule.get("rule_id") == rule_id:
            return rule
    return None


# --- validation of client-supplied rules -------------------------------------------------------

class PushRuleError(ValueError):
    def __init__(self, errcode: str, message: str):
        super().__init__(message)
        self.errcode = errcode
        self.message = message


def validate_rule_id(kind: str, rule_id: str) -> None:
    """pushrules.yaml PUT: IDs starting with "." are reserved; "/" and "\\" are not allowed."""
    if kind not in KINDS:
        raise PushRuleError("M_INVALID_PARAM", f"Unknown push rule kind {kind!r}")
    if not rule_id:
        raise PushRuleError("M_INVALID_PARAM", "Empty push rule ID")
    if is_server_default(rule_id):
        raise PushRuleError("M_INVALID_PARAM", "Rule IDs starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise PushRuleError("M_INVALID_PARAM", "Rule IDs may not contain '/' or '\\'")


def validate_actions(actions: Any) -> list:
    """A list of ``"notify"`` (or the historical strings) and ``{"set_tweak": str, ...}`` objects."""
    if not isinstance(actions, list):
        raise PushRuleError("M_BAD_JSON", "'actions' must be an array")
    for action in actions:
        if isinstance(action, str):
            if action != "notify" and action not in HISTORICAL_ACTIONS:
                raise PushRuleError("M_BAD_JSON", f"Unrecognised action {action!r}")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise PushRuleError("M_BAD_JSON", "An action object must have a string 'set_tweak'")
        else:
            raise PushRuleError("M_BAD_JSON", "Actions must be strings or objects")
    return copy.deepcopy(actions)


def validate_rule(kind: str, rule_id: str, body: Any) -> dict:
    """Check a PUT body and return the rule to store: ``{"rule_id", "actions", "conditions"}``
    for override/underride, ``{"rule_id", "actions", "pattern"}`` for content, ``{"rule_id",
    "actions"}`` for room and sender (their condition is implied by the rule ID)."""
    validate_rule_id(kind, rule_id)
    if not isinstance(body, dict):
        raise PushRuleError("M_BAD_JSON", "Body must be a JSON object")
    if "actions" not in body:
        raise PushRuleError("M_MISSING_PARAM", "Missing 'actions'")
    rule: dict[str, Any] = {"rule_id": rule_id, "actions": validate_actions(body["actions"])}
    if kind in ("override", "underride"):
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list):
            raise PushRuleError("M_BAD_JSON", "'conditions' must be an array")
        for cond in conditions:
            if not isinstance(cond, dict) or not isinstance(cond.get("kind"), str):
                raise PushRuleError("M_BAD_JSON", "Each condition must be an object with a string 'kind'")
        rule["conditions"] = copy.deepcopy(conditions)
    elif kind == "content":
        pattern = body.get("pattern")
        if pattern is None:
            raise PushRuleError("M_MISSING_PARAM", "Content rules need a 'pattern'")
        if not isinstance(pattern, str):
            raise PushRuleError("M_BAD_JSON", "'pattern' must be a string")
        rule["pattern"] = pattern
    return rule


# --- evaluation --------------------------------------------------------------------------------

# push.md "event_match": word boundaries for content.body are the start/end of the value or any
# character outside [A-Za-z0-9_].
_WORD_BEFORE = r"(?<![A-Za-z0-9_])"
_WORD_AFTER = r"(?![A-Za-z0-9_])"
_MAX_SAFE_INT = 2 ** 53 - 1


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str, word_boundary: bool) -> re.Pattern:
    """appendices "Glob-style matching": ``*`` is zero or more characters, ``?`` exactly one."""
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*?")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    if word_boundary:
        return re.compile(_WORD_BEFORE + body + _WORD_AFTER, re.IGNORECASE | re.DOTALL)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    """Case-insensitive glob match of the whole value, or (``word_boundary``) of any substring
    that starts and ends at a word boundary."""
    regex = _glob_regex(pattern, word_boundary)
    if word_boundary:
        return regex.search(value) is not None
    return regex.fullmatch(value) is not None


_MISSING = object()


def _is_simple(value: Any) -> bool:
    """A non-compound canonical-JSON value: str, bool, None, or an int within ±(2**53 - 1)."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def exact_equal(a: Any, b: Any) -> bool:
    """push.md "event_property_is": exact match without casting (``true`` is not ``1``)."""
    if not (_is_simple(a) and _is_simple(b)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return type(a) is type(b) and a == b


_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


def member_count_matches(spec: Any, count: int) -> bool:
    """push.md "room_member_count": ``is`` is a decimal integer with an optional ==, <, >, >=, <=."""
    if not isinstance(spec, str):
        return False
    m = _MEMBER_COUNT.fullmatch(spec)
    if not m:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    return {"==": count == n, "<": count < n, ">": count > n, "<=": count <= n, ">=": count >= n}[op]


def _as_level(value: Any, default: int) -> int | float:
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def sender_power_level(power_levels: Mapping | None, sender: str) -> int | float:
    """The sender's level from m.room.power_levels content (``users``, else ``users_default``)."""
    pl = power_levels if isinstance(power_levels, Mapping) else {}
    users = pl.get("users")
    if isinstance(users, Mapping) and sender in users:
        return _as_level(users[sender], 0)
    return _as_level(pl.get("users_default"), 0)


def notification_level(power_levels: Mapping | None, key: str) -> int | float:
    """The level needed for a notification type (``notifications.<key>``, default 50)."""
    pl = power_levels if isinstance(power_levels, Mapping) else {}
    notifications = pl.get("notifications")
    if isinstance(notifications, Mapping) and key in notifications:
        return _as_level(notifications[key], 50)
    return 50


class EventFacts:
    """One event as the push rules see it, shared by the evaluations of all its recipients.

    Property lookups and condition outcomes are memoised by the condition's *value* (kind, key,
    pattern or value, and the recipient only for conditions that name it): every other input of
    a condition is the same for all recipients, so a room of N members evaluates each distinct
    condition once per event, not N times."""

    __slots__ = ("event", "member_count", "power_levels", "sender_level", "_paths", "memo")

    def __init__(self, event: Mapping, member_count: int, power_levels: Mapping | None,
                 sender_level: int | float | None = None):
        self.event = event
        self.member_count = member_count
        self.power_levels = power_levels
        self.sender_level = sender_level
        self._paths: dict[str, Any] = {}
        self.memo: dict[tuple, bool] = {}

    def lookup(self, key: str) -> Any:
        """The value at a dot-separated path of the event, or ``_MISSING``."""
        try:
            return self._paths[key]
        except KeyError:
            value = self._paths[key] = lookup_path(self.event, key)
            return value


def lookup_path(event: Mapping, key: str) -> Any:
    """The value at a dot-separated path of the event, or ``_MISSING``."""
    value: Any = event
    for part in _split_path(key):
        if not (type(value) is dict or isinstance(value, _AbcMapping)) or part not in value:
            return _MISSING
        value = value[part]
    return value


@lru_cache(maxsize=4096)
def _split_path(key: str) -> tuple[str, ...]:
    return tuple(split_dotted_path(key))


@lru_cache(maxsize=4096)
def _name_regex(name: str) -> re.Pattern:
    return re.compile(_WORD_BEFORE + re.escape(name) + _WORD_AFTER, re.IGNORECASE)


# A predicate is ``predicate(facts, user_id, display_name) -> bool``.
def _never(facts: EventFacts, user_id: str, display_name: str | None) -> bool:
    return False


def _memoised(memo_key: tuple, test):
    """A predicate whose outcome is computed once per event (see EventFacts)."""
    def predicate(facts: EventFacts, user_id: str, display_name: str | None) -> bool:
        result = facts.memo.get(memo_key)
        if result is None:
            result = facts.memo[memo_key] = bool(test(facts))
        return result
    return predicate


def _typed(value: Any) -> tuple:
    """A memo key part that keeps ``true`` apart from ``1`` (exact_equal does not cast)."""
    return (type(value).__name__, value)


def compile_condition(cond: Mapping, template: bool = False):
    """One condition of push.md "Conditions" as ``predicate(facts, user_id, display_name)``;
    unknown kinds and malformed parameters never match. In a template ruleset (see
    :class:`CompiledRuleset`) the pattern or value ``[the user's Matrix ID]`` stands for the
    recipient."""
    kind = cond.get("kind")
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return _never
        word_boundary = key == "content.body"
        if template and pattern == _ME:
            def event_match_me(facts: EventFacts, user_id: str | None, display_name: str | None) -> bool:
                if user_id is None:
                    return False
                value = facts.lookup(key)
                return isinstance(value, str) and glob_matches(user_id, value, word_boundary=word_boundary)
            return event_match_me
        regex = _glob_regex(pattern, word_boundary)
        match = regex.search if word_boundary else regex.fullmatch

        def event_match(facts: EventFacts) -> bool:
            value = facts.lookup(key)
            return isinstance(value, str) and match(value) is not None
        return _memoised(("event_match", key, pattern), event_match)
    if kind in ("event_property_is", "event_property_contains"):
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond or not _is_simple(cond["value"]):
            return _never  # exact_equal never holds for a compound value
        wanted = cond["value"]
        if template and wanted == _ME:
            if kind == "event_property_is":
                def property_is_me(facts: EventFacts, user_id: str | None, display_name: str | None) -> bool:
                    return user_id is not None and facts.lookup(key) == user_id
                return property_is_me

            def property_contains_me(facts: EventFacts, user_id: str | None, display_name: str | None) -> bool:
                if user_id is None:
                    return False
                value = facts.lookup(key)
                return isinstance(value, list) and user_id in value
            return property_contains_me
        if kind == "event_property_is":
            def property_is(facts: EventFacts) -> bool:
                value = facts.lookup(key)
                return value is not _MISSING and exact_equal(value, wanted)
            return _memoised((kind, key, _typed(wanted)), property_is)

        def property_contains(facts: EventFacts) -> bool:
            value = facts.lookup(key)
            return isinstance(value, list) and any(exact_equal(item, wanted) for item in value)
        return _memoised((kind, key, _typed(wanted)), property_contains)
    if kind == "contains_display_name":
        def contains_display_name(facts: EventFacts, user_id: str, display_name: str | None) -> bool:
            if not display_name:
                return False
            memo_key = ("contains_display_name", display_name)
            result = facts.memo.get(memo_key)
            if result is None:
                body = facts.lookup("content.body")
                result = facts.memo[memo_key] = isinstance(body, str) and \
                    _name_regex(display_name).search(body) is not None
            return result
        return contains_display_name
    if kind == "room_member_count":
        spec = cond.get("is")
        m = _MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
        if not m:
            return _never
        op, n = m.group(1) or "==", int(m.group(2))
        compare = {"==": operator.eq, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}[op]
        return lambda facts, user_id, display_name: compare(facts.member_count, n)
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return _never

        def permitted(facts: EventFacts) -> bool:
            level = facts.sender_level
            if level is None:
                level = sender_power_level(facts.power_levels, facts.event.get("sender", ""))
            return level >= notification_level(facts.power_levels, key)
        return _memoised(("sender_notification_permission", key), permitted)
    return _never


def compile_rule(kind: str, rule: Mapping, template: bool = False):
    """Whether an enabled rule matches, as a predicate, or None for a rule that never matches
    (disabled, malformed): explicit conditions for override/underride, the implied ones for
    content (pattern on content.body), room (room_id) and sender (sender)."""
    if not rule.get("enabled", True):
        return None
    if kind in ("override", "underride"):
        conditions = rule.get("conditions") or []
        if not all(type(c) is dict or isinstance(c, _AbcMapping) for c in conditions):
            return None
        predicates = tuple(compile_condition(c, template) for c in conditions)
        if _never in predicates:
            return None
        if not predicates:
            return lambda facts, user_id, display_name: True
        if len(predicates) == 1:
            return predicates[0]

        def all_of(facts: EventFacts, user_id: str, display_name: str | None) -> bool:
            for p in predicates:
                if not p(facts, user_id, display_name):
                    return False
            return True
        return all_of
    if kind == "content":
        pattern = rule.get("pattern")
        if not isinstance(pattern, str):
            return None
        return compile_condition({"kind": "event_match", "key": "content.body", "pattern": pattern}, template)
    if kind in ("room", "sender"):
        field_name, wanted = ("room_id" if kind == "room" else "sender"), rule.get("rule_id")
        if template and wanted == _ME:
            return lambda facts, user_id, display_name: user_id is not None and facts.event.get(field_name) == user_id
        return lambda facts, user_id, display_name: facts.event.get(field_name) == wanted
    return None


def _required_type(kind: str, rule: Mapping) -> str | None:
    """The event type (lower case) a rule can only match, when one of its conditions is an
    ``event_match`` of ``type`` against a pattern without wildcards (globs ignore case)."""
    if kind not in ("override", "underride"):
        return None
    for cond in rule.get("conditions") or ():
        if isinstance(cond, dict) and cond.get("kind") == "event_match" and cond.get("key") == "type":
            pattern = cond.get("pattern")
            if isinstance(pattern, str) and "*" not in pattern and "?" not in pattern:
                return pattern.lower()
    return None


def _personal_conditions(rules: Mapping[str, Iterable[Mapping]]) -> tuple[list[tuple[str, str]], bool]:
    """The ``(kind, key)`` of a template's conditions naming the recipient, and whether any
    rule depends on the recipient otherwise (display names, or the placeholder elsewhere)."""
    personal: list[tuple[str, str]] = []
    other = False
    for kind in KINDS:
        for rule in rules.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            if kind == "content" or (kind in ("room", "sender") and rule.get("rule_id") == _ME):
                other = other or _ME in str(rule)
                continue
            for cond in rule.get("conditions") or ():
                if not isinstance(cond, dict):
                    continue
                c_kind = cond.get("kind")
                if c_kind == "contains_display_name":
                    other = True
                elif cond.get("pattern") == _ME or cond.get("value") == _ME:
                    if c_kind in ("event_match", "event_property_is", "event_property_contains") \
                            and isinstance(cond.get("key"), str) and cond.get("key") != "content.body":
                        personal.append((c_kind, cond["key"]))
                    else:
                        other = True
    return personal, other


def is_plain_user_id(user_id: str) -> bool:
    """A user ID made of lower-case ASCII without glob characters: a case-insensitive glob of it
    matches exactly the ASCII strings that lower-case to it (what :class:`CompiledRuleset`'s
    ``users_to_check`` relies on)."""
    return user_id.isascii() and user_id == user_id.lower() and "*" not in user_id and "?" not in user_id


class CompiledRuleset:
    """A ruleset (:func:`merge_ruleset`'s form) turned into predicates once; evaluating an event
    for a recipient is then a walk over them with the event's shared :class:`EventFacts`. The
    rules are indexed by the event type they require, so an event only meets the rules that can
    match its type.

    A *template* is a ruleset whose personalised parts still hold the placeholder
    ``[the user's Matrix ID]`` (:func:`default_ruleset`, shared by every user without rules of
    their own): evaluated for a recipient, the placeholder is that user. For an event,
    :meth:`users_to_check` names the plain user IDs for whom a placeholder condition can hold;
    every other plain recipient gets the answer for nobody (:meth:`evaluate_for_nobody`)."""

    __slots__ = ("_rules", "_by_type", "_personal", "_personal_other")

    def __init__(self, rules: Mapping[str, Iterable[Mapping]], *, template: bool = False):
        compiled = []
        for kind in KINDS:
            for rule in rules.get(kind, ()):
                predicate = compile_rule(kind, rule, template)
                if predicate is not None:
                    compiled.append((_required_type(kind, rule), predicate,
                                     tuple(strip_historical(rule.get("actions") or []))))
        self._rules = tuple(compiled)
        self._by_type: dict[str, tuple] = {}
        # Only a template can tell whose answer differs from nobody's; a user's own ruleset cannot.
        self._personal, self._personal_other = _personal_conditions(rules) if template else ([], True)

    def _rules_for(self, event_type: Any) -> tuple:
        key = event_type.lower() if isinstance(event_type, str) else ""
        rules = self._by_type.get(key)
        if rules is None:
            rules = tuple((p, a) for t, p, a in self._rules if t is None or t == key)
            if len(self._by_type) < 64:
                self._by_type[key] = rules
        return rules

    def evaluate(self, facts: EventFacts, user_id: str, display_name: str | None) -> list:
        """The actions of the first matching rule, or ``[]``; events the user sent themselves
        never notify (push.md "Push Rules")."""
        event = facts.event
        if event.get("sender") == user_id:
            return []
        for predicate, actions in self._rules_for(event.get("type")):
            if predicate(facts, user_id, display_name):
                return list(actions)
        return []

    def evaluate_for_nobody(self, facts: EventFacts) -> list:
        """The answer of a template for a recipient no placeholder condition names (see
        :meth:`users_to_check`) and without a display name."""
        for predicate, actions in self._rules_for(facts.event.get("type")):
            if predicate(facts, None, None):
                return list(actions)
        return []

    def users_to_check(self, facts: EventFacts) -> set[str] | None:
        """The plain user IDs (:func:`is_plain_user_id`) for whom a placeholder condition of
        this template may hold for the event; None when any recipient may differ (then each
        must be evaluated). A ruleset that is not a template names nobody."""
        if self._personal_other:
            return None
        out: set[str] = set()
        for kind, key in self._personal:
            value = facts.lookup(key)
            if kind == "event_match":
                if isinstance(value, str):
                    if not value.isascii():
                        return None  # case-insensitive matching beyond ASCII: check everyone
                    out.add(value.lower())
            elif kind == "event_property_is":
                if isinstance(value, str):
                    out.add(value)
            elif isinstance(value, list):
                out.update(v for v in value if isinstance(v, str))
        return out


@lru_cache(maxsize=1)
def default_ruleset() -> CompiledRuleset:
    """The server-default rules as a template (see :class:`CompiledRuleset`): what every user
    without push rules of their own is evaluated with."""
    return CompiledRuleset(default_rules(_ME), template=True)


def strip_historical(actions: Iterable) -> list:
    """push.md "Historical Actions": drop ``dont_notify`` and ``coalesce``."""
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


def evaluate(event_dict: Mapping, room_member_count: int, user_id: str, display_name: str | None,
             power_levels: Mapping | None, rules: Mapping[str, Iterable[Mapping]], *,
             sender_power_level: int | float | None = None) -> list:
    """The actions of the first matching rule for ``user_id``, or ``[]`` (no notification).

    ``event_dict``: the event (PDU or client format; ``type``, ``sender``, ``room_id``,
    ``state_key``, ``content`` are read). ``room_member_count``: joined members of the room.
    ``display_name``: the user's display name in the room (for ``contains_display_name``).
    ``power_levels``: m.room.power_levels content, or None if the room has none.
    ``rules``: the user's ruleset in priority order (:func:`merge_ruleset`).
    ``sender_power_level``: overrides the level read from ``power_levels`` (room versions whose
    creators have infinite power pass ``math.inf`` for them).
    Events the user sent themselves never notify (push.md "Push Rules").
    One-off form of :class:`CompiledRuleset` with :class:`EventFacts`, which the notification
    pipeline uses to evaluate an event for many recipients.
    """
    facts = EventFacts(event_dict, room_member_count, power_levels, sender_power_level)
    return CompiledRuleset(rules).evaluate(facts, user_id, display_name)


def should_notify(actions: Iterable) -> bool:
    return any(a == "notify" for a in actions)


def tweaks(actions: Iterable) -> dict:
    """The ``set_tweak`` entries as a dict; ``highlight`` without ``value`` means true."""
    out: dict[str, Any] = {}
    for a in actions:
        if isinstance(a, Mapping) and isinstance(a.get("set_tweak"), str):
            name = a["set_tweak"]
            out[name] = a.get("value", True) if name == "highlight" else a.get("value")
    return out


def is_highlight(actions: Iterable) -> bool:
    return tweaks(actions).get("highlight") is True
