"""Bad-input cases generated from the spec's OpenAPI definitions of the client-server API.

``load_operations(spec_dir)`` reads ``data/api/client-server/*.yaml`` (``$ref`` resolved within and
across the files, ``allOf`` merged) into :class:`Operation` records; ``bad_input_cases(op, values,
rng)`` turns one operation into :class:`Case` requests that a homeserver must refuse cleanly
(client-server-api "Standard error response"):

* ``not_json``      a body that is not JSON                    → 400 ``M_NOT_JSON``
* ``array``         a JSON array instead of an object          → 400 ``M_BAD_JSON``
* ``missing:F``     required body field F left out              → 4xx with an errcode
* ``type:F:T``      body field F sent as JSON type T            → never 5xx
* ``value:F:V``     body field F out of range (10**40, < -2**63), with U+0000 or a lone surrogate, or 70 kB long → never 5xx
* ``query:P:V``     query parameter P with a malformed value    → never 5xx
* ``path:P:L``      path parameter P replaced by a bad ID       → never 5xx
* ``too_large``     a 2 MB JSON body                            → 413 ``M_TOO_LARGE``
* ``no_token``      no access token where one is required       → 401 ``M_MISSING_TOKEN``

``values`` maps path-parameter names and ID kinds to values that exist on the server under test
(its user, room, event, media, …) so that a case differs from a valid request by one thing only.
No I/O here: the test module sends the cases.
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import yaml

from tests.spec_paths import SPEC_DIR

CS_API_DIR = str(SPEC_DIR / "data/api/client-server")
TWO_MB = 2 * 1024 * 1024

# JSON types, and one value of each for wrong-type cases.
WRONG_TYPE_VALUES: dict[str, Any] = {
    "string": "not-the-right-type",
    "integer": 12345,
    "object": {"unexpected": "object"},
    "array": ["unexpected", 1],
    "null": None,
    "boolean": True,
}

# Path-parameter replacements: (label, already-percent-encoded path segment).
BAD_PATH_SEGMENTS: list[tuple[str, str]] = [
    ("no_sigil", "nosigil"),
    ("unicode", quote("!ünï©ødé☃:test.local", safe="")),
    ("long_300", quote("!" + "a" * 300 + ":test.local", safe="")),
    ("pct_garbage", "%ZZ%C3%28%FF%00"),
    ("pct_nul", "%00"),
    ("dotdot", quote("../..", safe="")),
    ("raw_dotdot", "../.."),
]

# Malformed query values (sent in place of a parameter's valid value).
BAD_QUERY_VALUES: list[tuple[str, str]] = [
    ("word", "not-a-number-or-token"),
    ("negative", "-1"),
    ("huge", "9" * 40),
    ("json", '{"a":'),
    ("unicode", "ünï☃"),
]


# --- loading -----------------------------------------------------------------------------------

class _Resolver:
    """Loads YAML files once and resolves ``$ref`` (``file.yaml#/json/pointer`` or ``#/pointer``)."""

    def __init__(self) -> None:
        self._docs: dict[str, Any] = {}

    def doc(self, path: str) -> Any:
        path = os.path.normpath(path)
        if path not in self._docs:
            with open(path, encoding="utf-8") as f:
                self._docs[path] = yaml.safe_load(f)
        return self._docs[path]

    def resolve(self, node: Any, path: str, stack: tuple = ()) -> Any:
        if isinstance(node, list):
            return [self.resolve(v, path, stack) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            file_part, _, pointer = ref.partition("#")
            target_path = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            key = (target_path, pointer)
            if key in stack or len(stack) > 40:
                return {}  # recursive schema: stop here
            target = self.doc(target_path)
            for part in [p for p in pointer.split("/") if p]:
                target = target[part.replace("~1", "/").replace("~0", "~")]
            resolved = self.resolve(target, target_path, stack + (key,))
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings and isinstance(resolved, dict):
                resolved = {**resolved, **self.resolve(siblings, path, stack)}
            return resolved
        return {k: self.resolve(v, path, stack) for k, v in node.items()}


def merge_all_of(schema: Any) -> Any:
    """Flatten ``allOf`` into one schema (properties and required lists united)."""
    if not isinstance(schema, dict):
        return schema
    if "allOf" not in schema:
        return schema
    out: dict = {k: v for k, v in schema.items() if k != "allOf"}
    props: dict = dict(out.get("properties") or {})
    required: list = list(out.get("required") or [])
    for part in schema["allOf"]:
        part = merge_all_of(part)
        if not isinstance(part, dict):
            continue
        for k, v in part.items():
            if k == "properties":
                props.update(v or {})
            elif k == "required":
                required.extend(r for r in v or [] if r not in required)
            else:
                out.setdefault(k, v)
    if props:
        out["properties"] = props
    if required:
        out["required"] = required
    return out


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # path | query | header
    required: bool
    schema: dict


@dataclass
class Operation:
    method: str                 # GET, PUT, …
    base_path: str              # /_matrix/client/v3
    template: str               # /rooms/{roomId}/send/{eventType}/{txnId}
    operation_id: str
    source: str                 # the YAML file name
    requires_auth: bool         # an access token is required (no anonymous or signed-request alternative)
    params: list[Param] = field(default_factory=list)
    body_schema: dict | None = None   # JSON request body schema, if the body is JSON
    body_required: bool = False
    raw_body: bool = False      # the body is bytes (media upload), not JSON
    appservice_only: bool = False  # only an application service's as_token is accepted

    @property
    def full_template(self) -> str:
        return self.base_path + self.template

    @property
    def takes_json_body(self) -> bool:
        return self.body_schema is not None

    def path_params(self) -> list[Param]:
        return [p for p in self.params if p.location == "path"]

    def query_params(self) -> list[Param]:
        return [p for p in self.params if p.location == "query"]

    def __str__(self) -> str:
        return f"{self.method} {self.full_template} ({self.operation_id})"


def _base_path(doc: dict) -> str:
    for server in doc.get("servers") or []:
        var = (server.get("variables") or {}).get("basePath") or {}
        if "default" in var:
            return var["default"]
    return "/_matrix/client/v3"


def load_operations(spec_dir: str = CS_API_DIR) -> list[Operation]:
    """Every operation of every client-server YAML file, with references resolved."""
    resolver = _Resolver()
    ops: list[Operation] = []
    for name in sorted(os.listdir(spec_dir)):
        if not name.endswith(".yaml"):
            continue
        path = os.path.join(spec_dir, name)
        doc = resolver.doc(path)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        base = _base_path(doc)
        for template, item in (doc.get("paths") or {}).items():
            item = resolver.resolve(item, path)
            common = item.get("parameters") or []
            for method, spec in item.items():
                if method not in ("get", "put", "post", "delete", "patch"):
                    continue
                ops.append(_operation(name, base, template, method, spec, common, resolver, path))
    return ops


def _operation(source, base, template, method, spec, common, resolver, path) -> Operation:
    security = spec.get("security") or []
    schemes = [set(s) for s in security]
    tokens = {"accessTokenBearer", "appserviceAccessTokenBearer"}
    requires_auth = bool(schemes) and all(s & tokens for s in schemes)
    appservice_only = bool(schemes) and all(s == {"appserviceAccessTokenBearer"} for s in schemes)
    params = []
    for p in list(common) + list(spec.get("parameters") or []):
        p = resolver.resolve(p, path)
        params.append(Param(p["name"], p["in"], bool(p.get("required")), p.get("schema") or {}))
    body_schema, raw_body, body_required = None, False, False
    rb = spec.get("requestBody")
    if rb:
        rb = resolver.resolve(rb, path)
        body_required = bool(rb.get("required"))
        content = rb.get("content") or {}
        if "application/json" in content:
            body_schema = merge_all_of(content["application/json"].get("schema") or {"type": "object"})
        else:
            raw_body = True
    return Operation(method.upper(), base, template.strip(), spec.get("operationId", ""), source, requires_auth,
                     params, body_schema, body_required, raw_body, appservice_only)


# --- valid values ------------------------------------------------------------------------------

_FOREIGN = re.compile(r"(matrix\.org|example\.(org|com)|localhost(:\d+)?|elsewhere\.com|remote\.example|"
                      r"other\.server|somewhere\.org|server\.name)")


def _types(schema: dict) -> list[str]:
    t = schema.get("type")
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    if isinstance(t, str):
        return [t]
    if "properties" in schema or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def valid_value(schema: dict, name: str, values: dict, depth: int = 0) -> Any:
    """A plausible valid value for ``schema``: IDs from ``values`` (objects on the server under
    test), else the schema's enum or example (foreign server names replaced), else a default."""
    schema = merge_all_of(schema) or {}
    for alt in ("oneOf", "anyOf"):
        if alt in schema and not _types(schema):
            return valid_value(schema[alt][0], name, values, depth)
    fmt = schema.get("format", "")
    for key in (fmt, name):
        if key in values:
            return values[key]
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    types = _types(schema) or ["string"]
    t = types[0]
    if t == "object":
        if depth > 3:
            return {}
        props = schema.get("properties") or {}
        return {k: valid_value(props.get(k) or {}, k, values, depth + 1) for k in schema.get("required") or []
                if k in props}
    if t == "array":
        n = schema.get("minItems", 0)
        return [valid_value(schema.get("items") or {}, name, values, depth + 1) for _ in range(n)]
    if "example" in schema:
        ex = schema["example"]
        if isinstance(ex, str):
            return _FOREIGN.sub(values.get("mx-server-name", "test.local"), ex)
        if _json_type(ex) == t:
            return ex
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "null": None}.get(t, "x")


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def valid_body(op: Operation, values: dict) -> dict:
    """The operation's minimal valid JSON body: every required field, plus any per-operation
    fields given in ``values["bodies"][operation_id]``."""
    schema = op.body_schema or {}
    body = valid_value(schema, "", values) if _types(schema) in ([], ["object"]) else {}
    if not isinstance(body, dict):
        body = {}
    body.update((values.get("bodies") or {}).get(op.operation_id, {}))
    return body


def fill_path(op: Operation, values: dict, override: dict[str, str] | None = None) -> str:
    """The request path with every ``{param}`` filled (values percent-encoded; overrides are
    inserted as given, already encoded)."""
    override = override or {}
    path = op.full_template
    for p in op.path_params():
        if p.name in override:
            seg = override[p.name]
        else:
            v = values.get(f"{op.operation_id}.{p.name}", values.get(p.name, "x"))
            seg = quote(str(v), safe="")
        path = path.replace("{" + p.name + "}", seg)
    return path


def base_query(op: Operation, values: dict) -> dict[str, str]:
    """Required query parameters with valid values, and ``timeout=0`` where there is a timeout."""
    q: dict[str, str] = {}
    for p in op.query_params():
        if p.name == "timeout":
            q["timeout"] = "0"
        elif p.required:
            v = valid_value(p.schema, p.name, values)
            q[p.name] = json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) \
                else str(v)
    return q


# --- cases -------------------------------------------------------------------------------------

@dataclass
class Case:
    op: Operation
    kind: str                      # see the module docstring
    path: str                      # already encoded
    query: dict[str, str]
    body: bytes | None
    content_type: str | None
    with_token: bool = True

    @property
    def label(self) -> str:
        return f"{self.op.method} {self.path} [{self.kind}]"


def _encode(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def bad_input_cases(op: Operation, values: dict, rng: random.Random, max_type_cases: int = 40,
                    max_query_cases: int = 12) -> list[Case]:
    """The bad-input cases for one operation (wrong-type and query cases sampled with ``rng``)."""
    path = fill_path(op, values)
    query = base_query(op, values)
    ctype = "application/json"
    body = valid_body(op, values) if op.takes_json_body else None
    body_bytes = _encode(body) if body is not None else None
    if op.raw_body:
        ctype, body_bytes = "text/plain", b"sweep bytes"
    cases: list[Case] = []

    def add(kind, *, path_=path, query_=query, body_=body_bytes, ctype_=ctype, token=True):
        cases.append(Case(op, kind, path_, dict(query_), body_, ctype_ if body_ is not None else None, token))

    if op.requires_auth:
        add("no_token", token=False)
    if op.takes_json_body:
        add("not_json", body_=b"{this is not json")
        add("array", body_=b'["a", 1]')
        add("too_large", body_=_encode({"padding": "x" * TWO_MB}))
        schema = op.body_schema or {}
        props = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name in body:
                add(f"missing:{name}", body_=_encode({k: v for k, v in body.items() if k != name}))
        type_cases, value_cases = [], []
        for name, prop in props.items():
            prop = merge_all_of(prop) or {}
            ok = set(_types(prop))
            if "number" in ok:
                ok.add("integer")
            if not ok:
                continue  # any type allowed
            for t, wrong in WRONG_TYPE_VALUES.items():
                if t not in ok:
                    type_cases.append((name, t, wrong))
            if "integer" in ok:
                value_cases.append((name, "huge", 10**40))
                value_cases.append((name, "negative", -(2**63) - 1))
            if "string" in ok:
                value_cases.append((name, "nul", "a\u0000b"))
                value_cases.append((name, "surrogate", "a\ud800b"))
                value_cases.append((name, "long", "x" * 70_000))
        if len(type_cases) > max_type_cases:
            type_cases = rng.sample(type_cases, max_type_cases)
        for name, t, wrong in type_cases:
            add(f"type:{name}:{t}", body_=_encode({**body, name: wrong}))
        for name, label, bad in value_cases:
            add(f"value:{name}:{label}", body_=_encode({**body, name: bad}))
    query_cases = []
    for p in op.query_params():
        types = set(_types(p.schema))
        for label, bad in BAD_QUERY_VALUES:
            if label in ("word", "json") and types <= {"string"} and not p.schema.get("enum"):
                continue  # any string is a valid value
            query_cases.append((p.name, label, bad))
    if len(query_cases) > max_query_cases:
        query_cases = rng.sample(query_cases, max_query_cases)
    for name, label, bad in query_cases:
        add(f"query:{name}:{label}", query_={**query, name: bad})
    for p in op.path_params():
        for label, seg in BAD_PATH_SEGMENTS:
            add(f"path:{p.name}:{label}", path_=fill_path(op, values, {p.name: seg}))
    return cases
