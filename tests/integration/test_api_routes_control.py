"""API routes' control plane on the real platform: fx.yaml `apis:` deployed after its functions, listed by
`fx routes`, refusals (a route conflict across APIs, a function that does not exist) with nothing of the refused
project applied, dry runs that store nothing, functions a route invokes kept, and `fx apis rm`."""

import json
from pathlib import Path

import httpx
from fx.api_models import ApiSpec
from fx.client import Client

from tests.waiting import wait_for

SHOP = """\
functions:
  users:
    handler: handler.handler
  authz:
    handler: handler.handler
apis:
  shop:
    hosts: [shop.example.com]
    authorizers:
      mine: {lambda: {function: authz, simple_responses: true, identity_source: [$request.header.Authorization]}}
    routes:
      get /users/{id}: {function: users, auth: mine}
      POST /users: {function: users@1, throttle: {rate: 10, burst: 20}}
      GET /health: {mock: {status: 200, body: {ok: true}}}
      ANY /{proxy+}: {upstream: "http://127.0.0.1:9"}
"""

# Another team's project: its API answers on every host, so its GET /users/{uid} is shop's GET /users/{id}.
ADMIN = """\
functions:
  reports:
    handler: handler.handler
apis:
  admin:
    routes:
      GET /reports: {function: reports}
      GET /users/{uid}: {function: reports}
"""


def project(tmp_path: Path, name: str, manifest: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "handler.py").write_text("def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n")
    (folder / "fx.yaml").write_text(manifest)
    return folder


def test_apis_are_deployed_listed_refused_and_removed(platform, tmp_path):
    shop = project(tmp_path, "shop", SHOP)
    deployed = platform.fx("deploy", cwd=shop)
    assert deployed.returncode == 0, deployed.stderr
    assert "API shop: 4 routes on shop.example.com" in deployed.stderr
    shop_host = {"Host": "shop.example.com"}
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as http:
        # What fx deploy stored reaches the gateways: its routes answer under its host.
        health = wait_for(lambda: (r := http.get("/health", headers=shop_host)).status_code == 200 and r, 30, "/health")
        assert health.json() == {"ok": True}
        created = http.post("/users", headers=shop_host, content=b"{}")
        assert (created.status_code, created.text) == (200, "ok")
        assert http.get("/health").status_code == 404  # another host: not this API's

    table = platform.fx("routes").stdout.splitlines()
    assert table[0].split() == ["API", "HOSTS", "ROUTE", "INTEGRATION", "AUTH", "LIMITS"]
    rows = [" ".join(line.split()) for line in table[1:]]
    assert rows == [
        "shop shop.example.com GET /users/{id} function users lambda:mine -",
        "shop shop.example.com POST /users function users@1 - route 10/s burst 20",
        "shop shop.example.com GET /health mock 200 - -",
        "shop shop.example.com ANY /{proxy+} upstream http://127.0.0.1:9 - -",
    ]
    [stored] = json.loads(platform.fx("routes", "shop", "-o", "json").stdout)
    assert stored["routes"]["GET /users/{id}"] == {
        "function": "users",
        "auth": "mine",
        "scopes": [],
        "api_key": False,
        "throttle": None,
        "payload": None,
    }

    # A conflicting API is refused before anything of its project is deployed, naming both routes and APIs.
    admin = project(tmp_path, "admin", ADMIN)
    refused = platform.fx("deploy", cwd=admin)
    assert refused.returncode == 2, refused.stderr
    problem, summary = refused.stderr.splitlines()[-2:]
    assert problem.startswith('fx: fx.yaml:8: apis.admin.routes."GET /users/{uid}": RouteConflict: route')
    assert "'GET /users/{uid}' of API 'admin' (any host)" in problem
    assert "'GET /users/{id}' of API 'shop' (shop.example.com)" in problem
    assert summary == "nothing was deployed: the server refused 1 API(s)"
    assert [a["name"] for a in json.loads(platform.fx("routes", "-o", "json").stdout)] == ["shop"]
    assert [f["name"] for f in json.loads(platform.fx("ls", "-o", "json").stdout)] == ["authz", "users"]

    # A route to a function neither deployed nor in the project: refused at its line, nothing deployed.
    (admin / "fx.yaml").write_text(ADMIN.replace("GET /users/{uid}: {function: reports}", "GET /x: {function: nope}"))
    refused = platform.fx("deploy", cwd=admin)
    assert refused.returncode == 2, refused.stderr
    assert 'fx.yaml:8: apis.admin.routes."GET /x".function: FunctionNotFound' in refused.stderr
    assert "route 'GET /x' invokes 'nope', but function 'nope' does not exist" in refused.stderr
    assert "reports" not in platform.fx("ls").stdout

    # A dry run checks and stores nothing.
    with Client(platform.gateway_url, platform.token) as fx:
        extra = ApiSpec.model_validate(
            {"name": "extra", "hosts": ["x.example.com"], "routes": {"GET /": {"function": "users"}}}
        )
        assert fx.put_api(extra, dry_run=True).routes["GET /"].function == "users"
        assert [a.name for a in fx.apis()] == ["shop"]

    # A function a route or the authorizer invokes stays until the API no longer does.
    kept = platform.fx("rm", "authz")
    assert kept.returncode == 2
    assert kept.stderr.startswith("fx: authz: FunctionInUse: function 'authz' is invoked by authorizer 'mine' of API")
    assert "fx apis rm shop" in kept.stderr and "authz" in platform.fx("ls").stdout
    removed = platform.fx("apis", "rm", "shop")
    assert removed.returncode == 0 and removed.stdout == "shop: removed; the gateways stop serving its routes\n"
    assert platform.fx("rm", "authz").returncode == 0
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as http:
        wait_for(lambda: http.get("/health", headers=shop_host).status_code == 404, 30, "/health gone with its API")
    assert platform.fx("routes").stdout == "no APIs: declare them in fx.yaml `apis:` and run `fx deploy`\n"
    gone = platform.fx("apis", "rm", "shop")
    assert gone.returncode == 2 and "API 'shop' not found" in gone.stderr
