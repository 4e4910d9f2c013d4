"""`fx routes [API]` and `fx apis ls|rm`: the APIs in front of the functions (fx.yaml `apis:`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, checked, client, print_json, print_table

if TYPE_CHECKING:
    from fx.api_models import ApiSpec, RouteSpec, ThrottleSpec

HELP = "manage APIs: routes in front of functions, declared in fx.yaml `apis:` (`fx routes` lists them)"


def cmd_routes(args: argparse.Namespace) -> int:
    from fx.models import check_name

    with client(args) as fx:
        apis = [fx.api(checked(check_name, args.api))] if args.api else fx.apis()
    if args.output == "json":
        print_json(apis)
        return EXIT_OK
    if not apis:
        print("no APIs: declare them in fx.yaml `apis:` and run `fx deploy`")
        return EXIT_OK
    rows = [["API", "HOSTS", "ROUTE", "INTEGRATION", "AUTH", "LIMITS"]]
    for api in apis:
        hosts = ",".join(api.hosts) or "*"
        rows += [
            [api.name, hosts, key, integration(route), auth(api, route), limits(api, route)]
            for key, route in api.routes.items()
        ]
    print_table(rows)
    return EXIT_OK


def integration(route: RouteSpec) -> str:
    if route.function is not None:
        return f"function {route.function}"
    if route.mock is not None:
        return f"mock {route.mock.status}"
    return f"upstream {route.upstream.url}"  # type: ignore[union-attr]


def auth(api: ApiSpec, route: RouteSpec) -> str:
    parts = []
    if route.auth is not None:
        kind = api.authorizers[route.auth].kind
        scopes = f" [{' '.join(route.scopes)}]" if route.scopes else ""
        parts.append(f"{kind}:{route.auth}{scopes}")
    if route.api_key:
        parts.append("api-key")
    return ", ".join(parts) or "-"


def limits(api: ApiSpec, route: RouteSpec) -> str:
    parts = [f"route {rate(route.throttle)}"] if route.throttle else []
    if api.throttle:
        parts.append(f"api {rate(api.throttle)}")
    return ", ".join(parts) or "-"


def rate(throttle: ThrottleSpec) -> str:
    return f"{throttle.rate:g}/s burst {throttle.burst}"


def cmd_apis_ls(args: argparse.Namespace) -> int:
    with client(args) as fx:
        apis = fx.apis()
    if args.output == "json":
        print_json(apis)
        return EXIT_OK
    rows = [["NAME", "HOSTS", "STAGE", "ROUTES", "AUTHORIZERS"]]
    for api in apis:
        authorizers = ",".join(f"{a.kind}:{name}" for name, a in api.authorizers.items()) or "-"
        rows.append([api.name, ",".join(api.hosts) or "*", api.stage, str(len(api.routes)), authorizers])
    print_table(rows)
    return EXIT_OK


def cmd_apis_rm(args: argparse.Namespace) -> int:
    from fx.models import check_name

    name = checked(check_name, args.name)
    with client(args) as fx:
        fx.delete_api(name)
    if args.output == "json":
        print_json({"api": name, "removed": True})
    else:
        print(f"{name}: removed; the gateways stop serving its routes")
    return EXIT_OK


def register_routes(add: AddCommand) -> None:
    routes = add("routes", cmd_routes, "list the routes of the APIs: hosts, integration, auth and limits", OUTPUT)
    routes.add_argument("api", nargs="?", metavar="API", help="only this API's routes")


def register(add: AddCommand) -> None:
    add("ls", cmd_apis_ls, "list the APIs: hosts, stage, routes, authorizers", OUTPUT)
    add("rm", cmd_apis_rm, "remove an API: its routes stop being served", OUTPUT).add_argument("name", metavar="NAME")
