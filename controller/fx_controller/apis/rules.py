"""APIs: what the admin API does with them, and the rules that tie them to each other and to functions.

Checked under the controller's lock (deploys and deletes never interleave with an API change), all before
anything is stored, so a refused PUT leaves the store as it was:

- the spec itself (fx.api_models.ApiSpec: route keys, one integration per route, authorizers named, ...);
- the limits: routes per API (--max-routes-per-api), APIs (--max-apis);
- no route of another API on an overlapping host is the same route (409 RouteConflict naming both);
- every function a route or a Lambda authorizer invokes exists, with the version or alias it names
  (400 FunctionNotFound naming the route);
- a function deleted while a route or authorizer invokes it: 409 FunctionInUse (`check_unused`), because a
  route to nothing is a silent outage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fx.api_models import ApiSpec, RouteProblem, hosts_overlap, route_shape, split_function_ref
from pydantic import ValidationError

from ..api.errors import ApiError
from ..state.store import FunctionStore
from .store import ApiStore

log = logging.getLogger("fx_controller.apis")


def not_found(name: str) -> ApiError:
    return ApiError(404, "ApiNotFound", f"API {name!r} not found; `fx routes` lists the APIs", field="name")


def parsed(name: str, body: Any) -> ApiSpec:
    """The body of PUT /system/apis/NAME as an ApiSpec named `name`; its first problem a 400 naming the field."""
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidSpec", "the body is not a JSON object (the API: hosts, routes, ...)")
    if body.get("name", name) != name:
        raise ApiError(
            400, "InvalidSpec", f"name: the body names API {body['name']!r}, the path {name!r}", field="name"
        )
    try:
        return ApiSpec.model_validate({**body, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = first.get("ctx", {}).get("error")
        loc = problem.loc if isinstance(problem, RouteProblem) else first["loc"]
        field = ".".join(str(p) for p in loc)
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ApiError(400, "InvalidSpec", f"{field}: {message}" if field else message, field=field or None) from None


def _hosts(spec: ApiSpec) -> str:
    return ", ".join(spec.hosts) if spec.hosts else "any host"


class Apis:
    def __init__(
        self, store: ApiStore, functions: FunctionStore, lock: asyncio.Lock, max_apis: int, max_routes: int
    ) -> None:
        self._store = store
        self._functions = functions
        self._lock = lock  # the controller's: API changes and function deletes never interleave
        self._max_apis = max_apis
        self._max_routes = max_routes

    def list(self) -> list[ApiSpec]:
        return self._store.all()

    def get(self, name: str) -> ApiSpec:
        spec = self._store.get(name)
        if spec is None:
            raise not_found(name)
        return spec

    async def put(self, spec: ApiSpec, dry_run: bool = False, deploying: frozenset[str] = frozenset()) -> ApiSpec:
        """Create or replace an API after every check; `dry_run`: the checks alone, nothing stored, and the functions
        `deploying` (a deploy is about to create them) not refused as missing."""
        async with self._lock:
            self._check(spec, deploying)
            if dry_run:
                return spec
            await self._store.put(spec)
        log.info("API %s set: %d routes on %s", spec.name, len(spec.routes), _hosts(spec))
        return spec

    async def delete(self, name: str) -> None:
        async with self._lock:
            if self._store.get(name) is None:
                raise not_found(name)
            await self._store.delete(name)
        log.info("API %s removed", name)

    def check_unused(self, function: str) -> None:
        """409 FunctionInUse when a route or authorizer invokes `function`. Called under the controller's lock."""
        for api in self._store.all():
            for ref, users in api.functions().items():
                if split_function_ref(ref)[0] == function:
                    raise ApiError(
                        409,
                        "FunctionInUse",
                        f"function {function!r} is invoked by {users[0]} of API {api.name!r}: remove that from the"
                        f" API first (fx.yaml `apis:` then `fx deploy`, or `fx apis rm {api.name}`)",
                        function=function,
                    )

    # --- checks ------------------------------------------------------------------------------

    def _check(self, spec: ApiSpec, deploying: frozenset[str]) -> None:
        if len(spec.routes) > self._max_routes:
            raise ApiError(
                400,
                "InvalidSpec",
                f"routes: API {spec.name!r} has {len(spec.routes)} routes; at most {self._max_routes} (the"
                " controller's --max-routes-per-api)",
                field="routes",
            )
        if self._store.get(spec.name) is None and len(self._store.all()) >= self._max_apis:
            raise ApiError(
                400,
                "TooManyApis",
                f"there are {self._max_apis} APIs already, the controller's --max-apis; remove one (`fx apis rm"
                " NAME`) or raise the limit",
                field="name",
            )
        self._check_conflicts(spec)
        self._check_functions(spec, deploying)

    def _check_conflicts(self, spec: ApiSpec) -> None:
        shapes = {route_shape(key): key for key in spec.routes}
        for other in self._store.all():
            if other.name == spec.name or not hosts_overlap(spec.hosts, other.hosts):
                continue
            for key in other.routes:
                mine = shapes.get(route_shape(key))
                if mine is not None:
                    raise ApiError(
                        409,
                        "RouteConflict",
                        f"route {mine!r} of API {spec.name!r} ({_hosts(spec)}) is the same route as {key!r} of API"
                        f" {other.name!r} ({_hosts(other)}): a request could not tell them apart; change the path,"
                        " or give the APIs hosts apart",
                        field=f"routes.{mine}",
                    )

    def _check_functions(self, spec: ApiSpec, deploying: frozenset[str]) -> None:
        fields = {f"route {key!r}": f"routes.{key}.function" for key in spec.routes}
        fields |= {f"authorizer {name!r}": f"authorizers.{name}.lambda.function" for name in spec.authorizers}
        for ref, users in spec.functions().items():
            function, qualifier = split_function_ref(ref)
            record = self._functions.get(function)
            if function in deploying:
                continue
            if record is None:
                problem = f"function {function!r} does not exist; deploy it first (`fx deploy`)"
            elif qualifier is not None and not (
                qualifier in record.aliases or any(str(v.version) == qualifier for v in record.versions)
            ):
                known = ", ".join(str(v.version) for v in record.versions)
                aliases = ", ".join(sorted(record.aliases)) or "none"
                problem = f"{function!r} has no version or alias {qualifier!r} (versions: {known}; aliases: {aliases})"
            else:
                continue
            field = fields[users[0]]
            raise ApiError(
                400,
                "FunctionNotFound",
                f"{field}: {users[0]} invokes {ref!r}, but {problem}",
                function=function,
                field=field,
            )
