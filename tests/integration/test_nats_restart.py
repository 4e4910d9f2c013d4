"""The platform's nats-server stopped and started again on the same port and store: the gateway keeps serving a
warm function from the route tables it holds meanwhile, and a durable trigger reconnects and gets the events
published after the restart."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
from fx_controller.backends.local_sandbox import run_dir

from tests.integration.conftest import RunningPlatform
from tests.integration.nats_control import start_nats, stop_nats
from tests.waiting import wait_for

SINK = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        for record in event["Records"]:
            out.write(record["data"] + "\\n")
    return {}
"""

HELLO = """\
def handler(event, context):
    return {"statusCode": 200, "body": "hello"}
"""


def deploy(platform: RunningPlatform, folder: Path, handler: str, spec: dict) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "handler.py").write_text(handler)
    (folder / "fx.yaml").write_text(json.dumps({"functions": {folder.name: {"handler": "handler.handler", **spec}}}))
    deployed = platform.fx("deploy", cwd=folder)
    assert deployed.returncode == 0, deployed.stderr


def publish(platform: RunningPlatform, *data: str) -> None:
    async def send() -> None:
        nc = await platform.nats()
        for item in data:
            await nc.jetstream().publish("orders.new", item.encode())  # returns once stored
        await nc.close()

    asyncio.run(send())


def restart_nats(platform: RunningPlatform, while_down) -> None:
    """SIGTERM the platform's nats-server, run `while_down()`, then start it again: same port, same store."""
    argv = stop_nats(platform, signal.SIGTERM)
    while_down()
    start_nats(platform, argv)


def test_a_durable_trigger_reconnects_and_warm_calls_go_on_through_a_nats_restart(platform, tmp_path):
    async def create_stream() -> None:
        nc = await platform.nats()
        await nc.jetstream().add_stream(name="ORDERS", subjects=["orders.>"])
        await nc.close()

    asyncio.run(create_stream())
    out = run_dir(platform.state_dir) / "sink" / "out"
    deploy(
        platform, tmp_path / "sink", SINK, {"env": {"OUT": str(out)}, "triggers": [{"jetstream": {"stream": "ORDERS"}}]}
    )
    deploy(platform, tmp_path / "hello", HELLO, {"scale": {"min": 1}})
    hello = f"{platform.gateway_url}/function/hello"
    wait_for(lambda: httpx.get(hello).status_code == 200, 30, "hello to be warm")
    received = lambda: out.read_text().split() if out.exists() else []  # noqa: E731
    publish(platform, "before")
    wait_for(lambda: received() == ["before"], 30, "the event published before the restart")

    def while_down() -> None:
        answers = [httpx.get(hello, timeout=10) for _ in range(5)]
        assert [(r.status_code, r.text) for r in answers] == [(200, "hello")] * 5

    restart_nats(platform, while_down)
    publish(platform, "after-1", "after-2", "after-3")
    wait_for(lambda: received() == ["before", "after-1", "after-2", "after-3"], 30, "the events after the restart")
    assert httpx.get(hello).status_code == 200
    health = httpx.get(f"{platform.gateway_url}/healthz")
    assert health.status_code == 200, health.text  # connected again, route tables loaded
