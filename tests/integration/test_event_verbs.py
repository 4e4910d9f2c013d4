"""The streams, buckets and status a trigger user needs, with fx alone: no nats CLI, no NATS credentials."""

import asyncio
import json

import nats

from tests.integration.helpers import KV_LISTENER, report_file
from tests.waiting import wait_for

# Records the data of every record of a batch.
RECORDER = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        for record in event["Records"]:
            out.write(record["data"] + "\\n")
"""

# Replies to a NATS request with what it got.
ECHO = """\
def handler(event, context):
    return {"got": event["data"]}
"""


def write_project(tmp_path, name: str, handler: str, spec: dict):
    project = tmp_path / name
    project.mkdir()
    (project / "handler.py").write_text(handler)
    (project / "fx.yaml").write_text(json.dumps({"functions": {name: spec}}))
    return project


def test_fx_stream_create_makes_the_stream_a_jetstream_trigger_reads(platform, tmp_path):
    out = report_file(platform, "orders")
    spec = {"env": {"OUT": str(out)}, "triggers": [{"jetstream": {"stream": "ORDERS", "subject": "orders.new"}}]}
    project = write_project(tmp_path, "orders", RECORDER, spec)
    refused = platform.fx("deploy", cwd=project)
    assert refused.returncode == 2
    assert "stream 'ORDERS' does not exist; create it first: fx stream create ORDERS orders.new" in refused.stderr

    created = platform.fx("stream", "create", "ORDERS", "orders.>")
    assert (created.returncode, created.stdout) == (0, "ORDERS: created, subjects orders.>\n")
    again = platform.fx("stream", "create", "ORDERS", "orders.>")
    assert (again.returncode, again.stdout) == (0, "ORDERS: exists already, subjects orders.>\n")
    other = platform.fx("stream", "create", "ORDERS", "shipments.>")
    assert other.returncode == 2 and "exists with subjects orders.>" in other.stderr  # 409 (COMMON-19: 2)
    for bad in (["FX_ASYNC", "x.>"], ["MINE", "fx.async.orders"], ["MINE", "$KV.fx_secrets.>"], ["A.B", "x"]):
        refused = platform.fx("stream", "create", *bad)
        assert refused.returncode == 2 and ("reserved" in refused.stderr or "invalid" in refused.stderr), bad

    assert platform.fx("deploy", cwd=project).returncode == 0

    for n in range(3):
        published = platform.fx("publish", "orders.new", f"order {n}")
        assert published.stdout == f"published to orders.new: stored in stream ORDERS as message {n + 1}\n"
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 3, 20, "three orders")
    assert out.read_text() == "order 0\norder 1\norder 2\n"
    [listed] = json.loads(platform.fx("stream", "ls", "-o", "json").stdout)  # fx's own streams are not shown
    assert (listed["name"], listed["subjects"], listed["messages"]) == ("ORDERS", ["orders.>"], 3)
    assert listed["consumers"] == 1  # the trigger's
    in_use = platform.fx("stream", "rm", "ORDERS")
    assert in_use.returncode == 2 and "read by the triggers of orders" in in_use.stderr
    assert platform.fx("rm", "orders").returncode == 0
    assert platform.fx("stream", "rm", "ORDERS").stdout == "ORDERS: removed, with its messages\n"
    assert platform.fx("stream", "ls").stdout.splitlines() == ["NAME  SUBJECTS  MESSAGES  BYTES  CONSUMERS"]


def test_fx_kv_create_makes_the_bucket_a_kv_trigger_watches(platform, tmp_path):
    out = report_file(platform, "welcome")
    spec = {"env": {"OUT": str(out)}, "triggers": [{"kv": {"bucket": "users", "keys": "eu.*"}}]}
    project = write_project(tmp_path, "welcome", KV_LISTENER, spec)
    refused = platform.fx("deploy", cwd=project)
    assert refused.returncode == 2 and "create it first: fx kv create users" in refused.stderr
    assert platform.fx("kv", "create", "users").stdout == "users: created\n"
    assert platform.fx("kv", "create", "users").stdout == "users: exists already\n"
    assert platform.fx("kv", "create", "fx_functions").returncode == 2  # fx's own: reserved
    assert platform.fx("deploy", cwd=project).returncode == 0

    async def consumers() -> int:
        nc = await platform.nats()
        found = len(await nc.jetstream().consumers_info("KV_users"))
        await nc.close()
        return found

    wait_for(lambda: asyncio.run(consumers()), 10, "the trigger's consumer")  # changes after it count
    assert platform.fx("kv", "put", "users", "eu.ann", "Ann").stdout == "users: eu.ann set (revision 1)\n"
    assert platform.fx("kv", "put", "users", "us.bob", "Bob").returncode == 0
    assert platform.fx("kv", "put", "nosuch", "a", "b").returncode == 2  # 404 (COMMON-19: 2)
    wait_for(lambda: out.exists() and out.read_text() == "eu.ann PUT Ann\n", 15, "the change")
    assert [b["name"] for b in json.loads(platform.fx("kv", "ls", "-o", "json").stdout)] == ["users"]


def test_fx_status_says_where_the_gateway_controller_and_nats_are(platform, tmp_path):
    project = write_project(tmp_path, "listener", ECHO, {"triggers": [{"nats": "orders.*"}]})
    assert platform.fx("deploy", cwd=project).returncode == 0
    status = platform.fx("status")
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines() if not line.startswith(" "))
    assert lines["gateway"].strip() == f"{platform.gateway_url} (answering)"
    assert lines["controller"].strip().startswith("ok (local backend, version ")
    assert lines["functions"].strip() == "1"
    assert lines["nats"].strip() == platform.nats_url
    creds = platform.state_dir.resolve() / "nats-auth" / "admin.creds"
    assert lines["nats creds"].strip().startswith(str(creds))
    as_json = json.loads(platform.fx("status", "-o", "json").stdout)
    assert as_json["controller"]["nats_creds"] == str(creds) and as_json["controller"]["functions"] == 1

    async def reach() -> bytes | None:  # what status printed is enough to reach NATS and a trigger
        nc = await nats.connect(lines["nats"].strip(), user_credentials=str(creds))
        try:
            return (await nc.request("orders.quote", b"AAPL", timeout=10)).data
        except nats.errors.NoRespondersError:  # the gateway has not subscribed yet
            return None
        finally:
            await nc.close()

    assert json.loads(wait_for(lambda: asyncio.run(reach()), 15, "the trigger's answer"))["got"] == "AAPL"
    # ... and fx alone can ask it too.
    asked = platform.fx("publish", "orders.quote", "MSFT", "--request")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout) == {"got": "MSFT"}, asked.stdout
    told = platform.fx("publish", "orders.new", "x")
    assert told.stdout == "published to orders.new (core NATS: delivered to whoever listens now, not stored)\n"
    for reserved in ("fx.activate", "$KV.fx_routes.x", "_INBOX.x", "orders.*"):
        refused = platform.fx("publish", reserved, "{}")
        assert refused.returncode == 2 and "invalid" in refused.stderr, reserved
    wrong = platform.fx("status", env={"FX_TOKEN": "wrong"})
    assert wrong.returncode == 3 and "token" in wrong.stderr  # 401 (COMMON-19: 3)
