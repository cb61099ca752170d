"""A small router for ``/_matrix/...`` paths.

Routes are path templates (``/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey?}``);
``{name}`` matches one segment, ``{name?}`` an optional last segment (may be empty),
``{name*}`` the rest of the path. Parameters are percent-decoded after matching, so an encoded
``/`` inside a segment stays inside that parameter. Each route belongs to a resource (client,
federation, keys, media, …) and a listener only serves the resources it is configured with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import unquote

Handler = Callable[..., Awaitable]


_LITERAL, _PARAM, _OPTIONAL, _REST = range(4)


def _compile(segments: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """Each template segment as (kind, literal text or parameter name)."""
    out = []
    for t in segments:
        if t.startswith("{") and t.endswith("*}"):
            out.append((_REST, t[1:-2]))
        elif t.startswith("{") and t.endswith("?}"):
            out.append((_OPTIONAL, t[1:-2]))
        elif t.startswith("{"):
            out.append((_PARAM, t[1:-1]))
        else:
            out.append((_LITERAL, t))
    return tuple(out)


@dataclass
class Route:
    method: str
    template: str
    segments: tuple[str, ...]
    handler: Handler
    resource: str
    order: int = 0  # registration order: the first matching route wins

    def __post_init__(self) -> None:
        self.pattern = _compile(self.segments)

    @property
    def fixed_length(self) -> bool:
        """Whether the route matches only paths of exactly its number of segments."""
        return not any(t.startswith("{") and t[-2:] in ("?}", "*}") for t in self.segments)


@dataclass
class Match:
    route: Route | None
    params: dict[str, str]
    allowed_methods: set[str]


class Router:
    def __init__(self) -> None:
        # Routes indexed by their first four literal segments ("", "_matrix", "client", "v3").
        self._by_prefix: dict[tuple[str, ...], list[Route]] = {}
        # The candidates for (prefix, number of path segments), in registration order: the
        # prefix's fixed-length routes of that length and its variable-length ones. Built lazily.
        self._candidates: dict[tuple[tuple[str, ...], int], list[Route]] = {}
        self._count = 0

    def add(self, method: str, template: str, handler: Handler, resource: str = "client") -> None:
        segments = tuple(template.split("/"))
        route = Route(method.upper(), template, segments, handler, resource, self._count)
        self._count += 1
        self._by_prefix.setdefault(self._prefix(segments), []).append(route)
        self._candidates.clear()

    def _routes_for(self, prefix: tuple[str, ...], length: int) -> list[Route]:
        key = (prefix, length)
        routes = self._candidates.get(key)
        if routes is None:
            routes = [r for r in self._by_prefix.get(prefix, ())
                      if not r.fixed_length or len(r.segments) == length]
            if len(self._candidates) < 10_000:
                self._candidates[key] = routes
        return routes

    def add_client(self, method: str, path: str, handler: Handler, versions=("v3", "r0")) -> None:
        """Register ``path`` (after ``/_matrix/client/<version>``) for each version."""
        for v in versions:
            self.add(method, f"/_matrix/client/{v}{path}", handler, "client")

    @staticmethod
    def _prefix(segments) -> tuple[str, ...]:
        out = []
        for s in segments[:4]:
            if s.startswith("{"):
                break
            out.append(s)
        return tuple(out)

    def match(self, method: str, raw_path: str, resources: set[str] | None = None) -> Match:
        segments = raw_path.split("/")
        wanted = ("GET", "HEAD") if method == "HEAD" else (method,)
        other_methods: list[Route] = []
        for n in range(min(4, len(segments)), 0, -1):
            prefix = tuple(segments[:n])
            if prefix not in self._by_prefix:
                continue
            for route in self._routes_for(prefix, len(segments)):
                if resources is not None and route.resource not in resources:
                    continue
                if route.method not in wanted:
                    other_methods.append(route)  # only matched when no route of this method is
                    continue
                params = _match_segments(route.pattern, segments)
                if params is not None:
                    return Match(route, params, set())
        allowed = {r.method for r in other_methods if _match_segments(r.pattern, segments) is not None}
        return Match(None, {}, allowed)


def _match_segments(pattern: tuple[tuple[int, str], ...], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    n = len(pattern)
    for i, (kind, text) in enumerate(pattern):
        if kind == _LITERAL:
            if i >= len(segments) or segments[i] != text:
                return None
        elif kind == _REST:
            params[text] = "/".join(unquote(s) for s in segments[i:])
            return params
        elif i >= len(segments):
            if kind == _OPTIONAL and i == n - 1:
                params[text] = ""
                return params
            return None
        else:
            seg = segments[i]
            if not seg and kind == _PARAM:
                return None
            params[text] = unquote(seg, errors="strict") if "%" in seg else seg
    if len(segments) != n:
        return None
    return params
