"""A standby controller's admin port: Ready for Kubernetes, NotLeader for everything else, the admin API once
it leads."""

from __future__ import annotations

import httpx
from fx_controller.backends.kubernetes.standby import StandbyGate


async def leader_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"leader"})


async def test_a_standby_is_healthy_refuses_the_rest_and_serves_once_it_leads() -> None:
    gate = StandbyGate()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://c") as client:
        health = await client.get("/system/health")
        assert (health.status_code, health.json()) == (200, {"status": "standby"})
        metrics = await client.get("/metrics")  # up for a pod monitor, and not a leader
        assert metrics.status_code == 200 and "\nfx_controller_is_leader 0.0\n" in metrics.text
        refused = await client.get("/system/functions")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "NotLeader"
        gate.app = leader_app
        assert (await client.get("/system/functions")).text == "leader"
