"""A replica's endpoint is not enough to call it: the runtime serves /_fx/invoke and /_fx/http only to a
request with its version's replica token, which the gateway sends and no function can read (issue 11, item 7).

As root the test can open any replica's socket, as an attacker who got past the socket directory (or, on
Kubernetes, past an unenforced NetworkPolicy) could: without the token it is refused."""

from __future__ import annotations

import asyncio

import httpx
from fx.protocol import KV_ROUTES, RouteTable


async def route_of(platform, function: str, version: str = "1"):
    nc = await platform.nats()
    try:
        kv = await nc.jetstream().key_value(KV_ROUTES)
        return RouteTable.from_json((await kv.get(function)).value).versions[version]
    finally:
        await nc.close()


def on_endpoint(endpoint: str) -> httpx.Client:
    if endpoint.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=endpoint.removeprefix("unix:"))
        return httpx.Client(transport=transport, base_url="http://replica")
    return httpx.Client(base_url=f"http://{endpoint}")


def test_a_replica_refuses_whoever_reaches_it_without_the_gateways_token(platform, make_function):
    project = make_function("target", "return {'served': True}", scale={"min": 1})
    done = platform.fx("deploy", cwd=project)
    assert done.returncode == 0, done.stderr
    gateway = httpx.post(f"{platform.gateway_url}/2015-03-31/functions/target/invocations", content=b"{}", timeout=30)
    assert gateway.status_code == 200 and gateway.json() == {"served": True}

    route = asyncio.run(route_of(platform, "target"))
    assert len(route.token) == 64 and route.endpoints
    with on_endpoint(route.endpoints[0]) as replica:
        for headers in ({}, {"X-Fx-Replica-Token": "0" * 64}):
            assert replica.post("/_fx/invoke", content=b"{}", headers=headers).status_code == 403
            assert replica.get("/_fx/http/", headers=headers).status_code == 403
        assert replica.get("/_fx/health").status_code == 200
        # The token is the whole difference: with it (read from the route table, as a gateway does) it answers.
        served = replica.post("/_fx/invoke", content=b"{}", headers={"X-Fx-Replica-Token": route.token})
        assert served.status_code == 200 and served.json() == {"served": True}

    forged = {"X-Fx-Replica-Token": "0" * 64}  # a caller's own token header is dropped, not passed on
    through = httpx.post(f"{platform.gateway_url}/function/target", headers=forged, timeout=30)
    assert through.status_code == 200


def test_a_function_cannot_read_its_token_from_its_environment(platform, make_function):
    project = make_function("curious", "return sorted(k for k in os.environ if 'TOKEN' in k)", imports="import os")
    assert platform.fx("deploy", cwd=project).returncode == 0
    answer = httpx.post(f"{platform.gateway_url}/2015-03-31/functions/curious/invocations", content=b"{}", timeout=30)
    assert answer.status_code == 200 and answer.json() == []
