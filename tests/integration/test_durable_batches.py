"""A durable trigger's batch whose event would be over the function's request limit (6 MB) is split, so each
record reaches the function: never refused whole, retried whole and dead-lettered though every record fits."""

from __future__ import annotations

import asyncio
import json

from fx_controller.backends.local_sandbox import run_dir

from tests.waiting import wait_for

# Notes the number each record starts with, and how many records its batch had.
SINK = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        for record in event["Records"]:
            out.write(f"{record['data'][:3]} {len(event['Records'])}\\n")
    return {}
"""

RECORDS = 8
RECORD_BYTES = 900_000  # under NATS's 1 MB message limit; 8 of them are over the 6 MB request limit


def test_a_batch_over_the_request_limit_is_split_and_every_record_delivered(platform, tmp_path):
    async def fill_stream() -> None:
        nc = await platform.nats()
        js = nc.jetstream()
        await js.add_stream(name="BIG", subjects=["big.>"])
        for n in range(RECORDS):
            await js.publish("big.new", f"{n:03d}".encode() + b"x" * RECORD_BYTES)
        await nc.close()

    asyncio.run(fill_stream())  # a backlog, so the first batch could take them all
    project = tmp_path / "bulk"
    project.mkdir()
    (project / "handler.py").write_text(SINK)
    out = run_dir(platform.state_dir) / "bulk" / "out"
    trigger = {"stream": "BIG", "batch": 10, "window_ms": 1000, "max_deliver": 2, "backoff": 0.1}
    spec = {"handler": "handler.handler", "env": {"OUT": str(out)}, "triggers": [{"jetstream": trigger}]}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"bulk": spec}}))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr

    def seen() -> list[tuple[int, int]]:
        lines = out.read_text().splitlines() if out.exists() else []
        return [(int(n), int(size)) for n, size in (line.split() for line in lines)]

    def dead() -> list:
        return json.loads(platform.fx("dlq", "ls", "-o", "json").stdout)

    wait_for(lambda: len({n for n, _ in seen()}) == RECORDS or dead(), 60, "every record or a dead letter")
    assert dead() == []
    assert sorted({n for n, _ in seen()}) == list(range(RECORDS))
    assert max(size for _, size in seen()) > 1  # still batched, only smaller
