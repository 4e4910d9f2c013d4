"""`fx routes [API]` and `fx apis ls|rm`: the APIs in front of the functions (fx.yaml `apis:`)."""

from __future__ import annotations

import argparse
from typing import Any

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, checked, client, fetch, print_json, print_table

Json = dict[str, Any]

HELP = "manage APIs: routes in front of functions, declared in fx.yaml `apis:` (`fx routes` lists them)"


def cmd_routes(args: argparse.Namespace) -> int:
    from fx.names import check_name

    # ApiSpec's JSON (a light read): every field is in the answer, the server's model having made it
    apis = [fetch(args, f"/system/apis/{checked(check_name, args.api)}")] if args.api else fetch(args, "/system/apis")
    if args.output == "json":
        print_json(apis)
        return EXIT_OK
    if not apis:
        print("no APIs: declare them in fx.yaml `apis:` and run `fx deploy`")
        return EXIT_OK
    rows = [["API", "HOSTS", "ROUTE", "INTEGRATION", "AUTH", "LIMITS"]]
    for api in apis:
        hosts = ",".join(api["hosts"]) or "*"
        rows += [
            [api["name"], hosts, key, integration(route), auth(api, route), limits(api, route)]
            for key, route in api["routes"].items()
        ]
    print_table(rows)
    return EXIT_OK


# The helpers below read ApiSpec's JSON: an API, a route (RouteSpec's), a throttle (ThrottleSpec's).


def integration(route: Json) -> str:
    """The route's integration: its JSON holds that one's key alone."""
    if route.get("function") is not None:
        return f"function {route['function']}"
    if route.get("mock") is not None:
        return f"mock {route['mock']['status']}"
    return f"upstream {route['upstream']['url']}"


def auth(api: Json, route: Json) -> str:
    parts = []
    if route["auth"] is not None:
        scopes = f" [{' '.join(route['scopes'])}]" if route["scopes"] else ""
        parts.append(f"{kind(api['authorizers'][route['auth']])}:{route['auth']}{scopes}")
    if route["api_key"]:
        parts.append("api-key")
    return ", ".join(parts) or "-"


def kind(authorizer: Json) -> str:
    """AuthorizerSpec.kind: its JSON holds its kind's key alone."""
    return "jwt" if authorizer.get("jwt") is not None else "lambda"


def limits(api: Json, route: Json) -> str:
    parts = [f"route {rate(route['throttle'])}"] if route["throttle"] else []
    if api["throttle"]:
        parts.append(f"api {rate(api['throttle'])}")
    return ", ".join(parts) or "-"


def rate(throttle: Json) -> str:
    return f"{throttle['rate']:g}/s burst {throttle['burst']}"


def cmd_apis_ls(args: argparse.Namespace) -> int:
    apis = fetch(args, "/system/apis")  # ApiSpec's JSON (a light read)
    if args.output == "json":
        print_json(apis)
        return EXIT_OK
    rows = [["NAME", "HOSTS", "STAGE", "ROUTES", "AUTHORIZERS"]]
    for api in apis:
        authorizers = ",".join(f"{kind(a)}:{name}" for name, a in api["authorizers"].items()) or "-"
        rows.append([api["name"], ",".join(api["hosts"]) or "*", api["stage"], str(len(api["routes"])), authorizers])
    print_table(rows)
    return EXIT_OK


def cmd_apis_rm(args: argparse.Namespace) -> int:
    from fx.names import check_name

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
