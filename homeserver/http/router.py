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


@dataclass
class Route:
    method: str
    template: str
    segments: tuple[str, ...]
    handler: Handler
    resource: str
    order: int = 0  # registration order: the first matching route wins

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
        allowed: set[str] = set()
        for n in range(min(4, len(segments)), 0, -1):
            prefix = tuple(segments[:n])
            if prefix not in self._by_prefix:
                continue
            for route in self._routes_for(prefix, len(segments)):
                if resources is not None and route.resource not in resources:
                    continue
                params = _match_segments(route.segments, segments)
                if params is None:
                    continue
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return Match(route, params, allowed)
                allowed.add(route.method)
        return Match(None, {}, allowed)


def _match_segments(template: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    n = len(template)
    for i, t in enumerate(template):
        if t.startswith("{") and t.endswith("*}"):
            params[t[1:-2]] = "/".join(unquote(s) for s in segments[i:])
            return params
        if i >= len(segments):
            if t.startswith("{") and t.endswith("?}") and i == n - 1:
                params[t[1:-2]] = ""
                return params
            return None
        seg = segments[i]
        if t.startswith("{"):
            optional = t.endswith("?}")
            name = t[1:-2] if optional else t[1:-1]
            if not seg and not optional:
                return None
            params[name] = unquote(seg, errors="strict")
        elif t != seg:
            return None
    if len(segments) != n:
        return None
    return params
