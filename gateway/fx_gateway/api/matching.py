"""Which route answers a request: API Gateway's rules, compiled into tries so a match costs O(path segments).

Hosts first: an API with the request's exact host, then one whose "*.domain" covers it (one label), then the
APIs on any host; the first of these groups with a matching route takes the request. Within a group (its APIs'
routes together: the controller refuses two routes of one shape there), API Gateway's precedence:

1. a full match of the path (no greedy variable): literal segments before `{name}` ones, left to right;
2. a route ending in a greedy `{name+}` (it takes one segment or more): the longest template before the greedy
   segment, then literal before `{name}` as above;
3. `$default`.

At each of the first two steps the request's own method is tried before ANY. So for GET /pets/dog/2 with
`GET /pets/dog/1`, `GET /pets/dog/{id}`, `GET /pets/{proxy+}`, `ANY /{proxy+}`: `GET /pets/dog/{id}`.

One trie per method (ANY's too) per host group, compiled when the APIs change; a lookup walks the path's
segments, trying a literal child before the variable child and going back only when a branch ends without a
route (so at most the nodes on the paths that share the request's prefix; usually one path).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from fx_gateway.api.table import ANY, Api, Route


class Node:
    __slots__ = ("greedy", "literal", "route", "variable")

    def __init__(self) -> None:
        self.literal: dict[str, Node] = {}
        self.variable: Node | None = None  # a `{name}` segment (names live on the routes)
        self.route: Route | None = None  # a template ending here
        self.greedy: Route | None = None  # a template `.../{name+}` whose greedy segment starts here

    def add(self, route: Route) -> Route | None:
        """Add `route`; the route of the same shape already there, if any (it keeps its place)."""
        node = self
        for segment in route.segments[:-1] if route.greedy else route.segments:
            if segment.startswith("{"):
                node.variable = node = node.variable or Node()
            else:
                node = node.literal.setdefault(segment, Node())
        if route.greedy:
            if node.greedy is None:
                node.greedy = route
            return node.greedy if node.greedy is not route else None
        if node.route is None:
            node.route = route
        return node.route if node.route is not route else None

    def full(self, segments: list[str], at: int) -> Route | None:
        """The most specific template matching all of `segments[at:]` without a greedy variable."""
        if at == len(segments):
            return self.route
        child = self.literal.get(segments[at])
        if child is not None:
            found = child.full(segments, at + 1)
            if found is not None:
                return found
        if self.variable is not None and segments[at]:  # a variable takes a non-empty segment
            return self.variable.full(segments, at + 1)
        return None

    def longest_greedy(self, segments: list[str], at: int) -> tuple[int, Route] | None:
        """(prefix length, route) of the greedy template with the longest prefix matching `segments`."""
        best = None
        if at < len(segments):
            child = self.literal.get(segments[at])
            if child is not None:
                best = child.longest_greedy(segments, at + 1)
            if self.variable is not None and segments[at]:
                other = self.variable.longest_greedy(segments, at + 1)
                if other is not None and (best is None or other[0] > best[0]):
                    best = other  # literal first: a variable branch wins only with a longer prefix
            if best is None and self.greedy is not None and (segments[at] or at + 1 < len(segments)):
                best = (at, self.greedy)  # it takes what is left, which must not be empty
        return best


@dataclass(slots=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


class HostGroup:
    """The routes of the APIs served on one host (or one wildcard, or any host)."""

    __slots__ = ("apis", "default", "tries")

    def __init__(self) -> None:
        self.apis: list[Api] = []
        self.tries: dict[str, Node] = {}
        self.default: Route | None = None

    def add(self, api: Api) -> list[tuple[Route, Route]]:
        """Add an API's routes; the pairs (kept, dropped) of routes of the same shape (the controller refuses them;
        a table written by hand could still hold them: the first API by name keeps the route)."""
        self.apis.append(api)
        clashes = []
        for route in api.routes:
            if not route.method:
                if self.default is None:
                    self.default = route
                else:
                    clashes.append((self.default, route))
                continue
            kept = self.tries.setdefault(route.method, Node()).add(route)
            if kept is not None:
                clashes.append((kept, route))
        return clashes

    def match(self, method: str, segments: list[str]) -> Route | None:
        tries = self.tries
        own, any_ = tries.get(method), tries.get(ANY)
        for trie in (own, any_):
            if trie is not None:
                route = trie.full(segments, 0)
                if route is not None:
                    return route
        for trie in (own, any_):
            if trie is not None:
                found = trie.longest_greedy(segments, 0)
                if found is not None:
                    return found[1]
        return self.default


class RouteIndex:
    """Every API's routes by host group, rebuilt as a whole when an API changes (rare: a deploy)."""

    def __init__(self, apis: Iterable[Api] = ()) -> None:
        self.exact: dict[str, HostGroup] = {}
        self.wildcard: dict[str, HostGroup] = {}  # "*.example.com" under "example.com"
        self.any: HostGroup | None = None
        self.clashes: list[tuple[Route, Route]] = []
        for api in sorted(apis, key=lambda a: a.name):
            for group in self._groups(api):
                self.clashes += group.add(api)

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcard or self.any)

    def _groups(self, api: Api) -> list[HostGroup]:
        if not api.hosts:
            self.any = self.any or HostGroup()
            return [self.any]
        groups = []
        for host in api.hosts:
            if host.startswith("*."):
                groups.append(self.wildcard.setdefault(host[2:], HostGroup()))
            else:
                groups.append(self.exact.setdefault(host, HostGroup()))
        return groups

    def groups(self, host: str) -> list[HostGroup]:
        """The host groups a request for `host` (the Host header, any port and case) may land in, in order."""
        host = (host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]).lower()
        found = []
        group = self.exact.get(host)
        if group is not None:
            found.append(group)
        group = self.wildcard.get(host.partition(".")[2]) if "." in host else None
        if group is not None:
            found.append(group)
        if self.any is not None:
            found.append(self.any)
        return found

    def match(self, groups: list[HostGroup], method: str, path: str) -> Match | None:
        """The route answering `method path` among `groups` (from `groups(host)`), with its path parameters."""
        segments = path[1:].split("/") if path != "/" else []
        if "%" in path:  # decoded, as API Gateway passes path parameters; most paths have nothing to decode
            segments = [unquote(segment) for segment in segments]
        for group in groups:
            route = group.match(method, segments)
            if route is not None:
                return Match(route, parameters(route, segments))
        return None


def parameters(route: Route, segments: list[str]) -> dict[str, str]:
    """The path parameters of `segments` under `route`'s template (a greedy one takes the rest, joined by "/")."""
    values = {name: segments[index] for index, name in route.params}
    if route.greedy:
        values[route.greedy] = "/".join(segments[len(route.segments) - 1 :])
    return values
