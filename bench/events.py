"""Events per second through the gateway's event engines, each against what NATS itself does in the same run.

Starts the real embedded platform on free ports, deploys a trivial handler, then in one run:

0. core NATS triggers: raw references first (this process publishes N messages and a second connection's
   subscription takes them; N requests, 256 outstanding, to a second connection's echo subscription), then the
   same through a function triggered by the subject: fire-and-forget timed from the first publish until the
   gateway's trigger metric counts all N invoked, request-reply (window 256) until the last result is in;
   the gateway's CPU per event from /proc;
1. baseline: this Python process pulls and acks N messages of a scratch work-queue stream, through one pull
   request kept open (as the gateway pulls); for reference also with nats-py's fetch() in batches of 256;
2. async calls run by the gateway: N raw-invoke calls (as the Invoke API's Event type stores them) stored
   straight into FX_ASYNC by this process, 256 unacknowledged at a time, timed from the first store until
   the shared consumer has acked them all, with the gateway's and the replicas' CPU per call;
3. the accept path: `POST /async-function/NAME` (an HTTP event) and the Invoke API's Event type (a raw invoke)
   by the load generator (16 connections): 202s per second, with the gateway's CPU per accepted call over the
   load, and until every accepted call has run too;
4. durable triggers: N messages stored in a stream first, then a function deployed with a JetStream trigger
   on it, single (batch 1, 64 in flight) and batched (batch 100, 4 in flight); timed from the consumer's
   creation (seen while the deploy runs) until it has acked everything.

Trigger events that wait for a replica reach it several per request (the gateway's --trigger-batch-max, 64);
`FX_TRIGGER_BATCH_MAX=1` in the environment measures the gateway sending one request per event instead.

    .venv/bin/python -m bench.events [--events 20000] [--replicas 2] [--only core|async|durable ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fx.client import Client
from fx.platform import Platform
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_FUNCTION,
    ASYNC_METHOD,
    ASYNC_TARGET,
    CONSUMER_ASYNC,
    KV_ROUTES,
    REPLICA_INVOKE_PATH,
    STREAM_ASYNC,
    RouteTable,
    async_subject,
)
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from bench import report
from bench.measure import cpu_seconds, load, pid_listening_on, replica_target
from bench.run import deploy

WINDOW = 256  # requests outstanding in the request-reply runs
PARTS = ("core", "async", "durable")
JET = "raw JetStream pull+ack (one open pull)"
INVOKE = "/2015-03-31/functions/bench/invocations"
TRIGGER_EVENTS = re.compile(r'^fx_gateway_trigger_events_total\{function="(\w+)".*\}\s+(\S+)$', re.M)


async def raw_pub_sub(p: Platform, count: int) -> float:
    """Messages per second from this process's publisher to a second connection's subscription."""
    pub, sub = await p.admin_nats(), await p.admin_nats()
    taken, finished = 0, asyncio.Event()

    async def take(msg) -> None:
        nonlocal taken
        taken += 1
        if taken == count:
            finished.set()

    await sub.subscribe("bench.raw.core", cb=take, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await sub.flush()
    started = time.perf_counter()
    for _ in range(count):
        await pub.publish("bench.raw.core", b"{}")
    await asyncio.wait_for(finished.wait(), 60)
    rate = count / (time.perf_counter() - started)
    await pub.close()
    await sub.close()
    return rate


async def requests(nc, subject: str, count: int, headers: Callable[[], dict[str, str]] | None = None) -> float:
    """Requests per second on `subject`, WINDOW outstanding: each answer, taken on one wildcard inbox, sends the
    next (nats-py's request() costs a future and a timer each, more than the echo it measures). `headers`: each
    request's. A publish to a stream's subject is stored so, JetStream's acknowledgement being the answer."""
    inbox = nc.new_inbox()
    sent = answered = 0
    refused: list[bytes] = []
    finished = asyncio.Event()

    async def send() -> None:
        nonlocal sent
        sent += 1
        await nc.publish(subject, b"{}", reply=f"{inbox}.{sent}", headers=headers() if headers else None)

    async def answer(msg) -> None:
        nonlocal answered
        answered += 1
        if msg.data.startswith(b'{"error"') or (msg.headers or {}).get("Status") == "503":
            refused.append(msg.data)
        if answered == count:
            finished.set()
        elif sent < count:
            await send()

    sub = await nc.subscribe(f"{inbox}.*", cb=answer)
    started = time.perf_counter()
    for _ in range(min(WINDOW, count)):
        await send()
    await asyncio.wait_for(finished.wait(), 120)
    rate = count / (time.perf_counter() - started)
    await sub.unsubscribe()
    if refused:
        raise SystemExit(f"{len(refused)} of {count} requests on {subject} refused, e.g. {refused[0][:200]!r}")
    return rate


async def raw_echo(p: Platform, count: int) -> float:
    """Requests per second to an echo subscription on a second connection."""
    nc, echo = await p.admin_nats(), await p.admin_nats()

    async def answer(msg) -> None:
        await echo.publish(msg.reply, msg.data)

    await echo.subscribe("bench.raw.echo", cb=answer)
    await echo.flush()
    rate = await requests(nc, "bench.raw.echo", count)
    await nc.close()
    await echo.close()
    return rate


def trigger_events(fx: Client, function: str) -> int:
    """Events the gateway's NATS triggers have run for `function` (its metric, whatever their result)."""
    return sum(int(float(n)) for name, n in TRIGGER_EVENTS.findall(fx.gateway_metrics()) if name == function)


async def fire_and_forget(p: Platform, fx: Client, function: str, count: int, pid: int) -> dict:
    """Events per second a NATS trigger runs, from the first publish until the gateway counts all `count`."""
    nc = await p.admin_nats()
    already = trigger_events(fx, function)
    before = cpu_seconds(pid)
    started = time.perf_counter()
    for _ in range(count):
        await nc.publish(f"bench.{function}", b"{}")
    await nc.flush()
    deadline = time.monotonic() + 60
    while (done := trigger_events(fx, function) - already) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway ran {done} of {count} events of {function} in 60 s")
        await asyncio.sleep(0.025)  # a scrape of /metrics costs the gateway ~1 ms of CPU
    seconds = time.perf_counter() - started
    await nc.close()
    return {"rate": count / seconds, "gateway_cpu_us": (cpu_seconds(pid) - before) * 1e6 / count}


async def request_reply(p: Platform, function: str, count: int, pid: int) -> dict:
    nc = await p.admin_nats()
    before = cpu_seconds(pid)
    rate = await requests(nc, f"bench.{function}", count)
    await nc.close()
    return {"rate": rate, "gateway_cpu_us": (cpu_seconds(pid) - before) * 1e6 / count}


async def raw_pull_and_ack(p: Platform, count: int) -> float:
    """Messages per second this process pulls and acks from a work queue (publishing not timed)."""
    nc = await p.admin_nats()
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw"], retention=RetentionPolicy.WORK_QUEUE))
    await store(nc, "bench.raw", count)
    sub = await js.pull_subscribe("bench.raw", durable="bench", stream="BENCH_RAW")
    started, done = time.perf_counter(), 0
    while done < count:
        for msg in await sub.fetch(256, timeout=5):
            await msg.ack()
            done += 1
    rate = count / (time.perf_counter() - started)
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return rate


async def raw_open_pull_and_ack(p: Platform, count: int) -> float:
    """The same with one pull request kept open for all of them (up to 1024 unacked at a time), messages
    taken in a subscription callback: how the gateway pulls, without the function."""
    nc = await p.admin_nats()
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_OPEN", subjects=["bench.open"], retention=RetentionPolicy.WORK_QUEUE))
    await store(nc, "bench.open", count)
    config = ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1024)
    await js.add_consumer("BENCH_OPEN", config)
    acked, finished = 0, asyncio.Event()

    async def take(msg) -> None:
        nonlocal acked
        if msg.reply:  # not the pull request's closing status
            await msg.ack()
            acked += 1
            if acked == count:
                finished.set()

    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=take)
    started = time.perf_counter()
    request = json.dumps({"batch": count, "expires": 60_000_000_000}).encode()
    await nc.publish(f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.BENCH_OPEN.bench", request, reply=inbox)
    await asyncio.wait_for(finished.wait(), 60)
    rate = count / (time.perf_counter() - started)
    await js.delete_stream("BENCH_OPEN")
    await nc.close()
    return rate


async def store(nc, subject: str, count: int, headers: dict[str, str] | None = None) -> None:
    """Store `count` messages `{}` on a stream's `subject`, WINDOW unacknowledged at a time; with `headers`,
    each with its own call id too (as the gateway stores an async call)."""
    make = (lambda: {**headers, ASYNC_CALL_ID: str(uuid.uuid4())}) if headers else None
    await requests(nc, subject, count, make)


async def through_gateway(p: Platform, function: str, count: int, pids: dict[str, int]) -> dict:
    """Async calls per second run by the gateway, from the first store until all are acked."""
    nc = await p.admin_nats()
    js = nc.jetstream()
    headers = {ASYNC_FUNCTION: function, ASYNC_METHOD: "POST", ASYNC_TARGET: REPLICA_INVOKE_PATH}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await store(nc, async_subject(function), count, headers)
    stored = time.perf_counter() - started
    await drained(js)
    seconds = time.perf_counter() - started
    await nc.close()
    cpu = {f"{name}_cpu_us": (cpu_seconds(pid) - before[name]) * 1e6 / count for name, pid in pids.items()}
    return {"rate": count / seconds, "seconds": seconds, "stored_s": stored, **cpu}


async def drained(js) -> None:
    """Until the shared consumer of async calls has acked every stored call."""
    while True:
        info = await js.consumer_info(STREAM_ASYNC, CONSUMER_ASYNC)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.01)


def accepted(p: Platform, path: str, headers: tuple[str, ...], count: int, pid: int) -> dict:
    """The load generator's 202s per second on `path` (16 connections), and the gateway's CPU per call until
    every accepted call has also run."""
    before = cpu_seconds(pid)
    result = load(f"{p.gateway_url}{path}", 16, count, {"gateway": pid}, "POST", headers=headers)

    async def settle() -> None:
        nc = await p.admin_nats()
        await drained(nc.jetstream())
        await nc.close()

    asyncio.run(settle())
    return {**result, "with_run_cpu_us": (cpu_seconds(pid) - before) * 1e6 / count}


async def durable(p: Platform, tmp: Path, name: str, count: int, batch: int, in_flight: int, pid: int) -> dict:
    """Events per second through a durable trigger from a stored backlog of `count` messages."""
    stream = f"BENCH_{name.upper()}"
    nc = await p.admin_nats()
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"bench.{name}"]))
    await store(nc, f"bench.{name}", count)
    trigger = f"{{stream: {stream}, batch: {batch}, max_in_flight: {in_flight}, window_ms: 5}}"
    manifest = (
        f"functions:\n  {name}:\n    scale: {{min: 2, max: 2, concurrency: 0, idle_timeout: 3600}}\n"
        f"    triggers: [{{jetstream: {trigger}}}]\n"
    )
    before = cpu_seconds(pid)
    # The trivial handler's answer has no batchItemFailures, so every batch is acked whole.
    # Timed from the consumer's creation, which the gateway makes as soon as the route table names the trigger,
    # while `fx deploy` is still waiting: timing from its return missed the events run meanwhile (~3,000 of
    # 20,000, more or fewer with the machine's load), and the rate moved by half.
    deploying = asyncio.create_task(asyncio.to_thread(deploy, tmp / name, p, manifest))
    while not await js.consumers_info(stream) and not deploying.done():
        await asyncio.sleep(0.002)
    started = time.perf_counter()
    try:
        await deploying
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"fx deploy of {name} failed: {exc.stderr.decode(errors='replace')}") from None
    while True:
        [info] = await js.consumers_info(stream)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    await nc.close()
    return {"rate": count / seconds, "seconds": seconds, "gateway_cpu_us": (cpu_seconds(pid) - before) * 1e6 / count}


async def replica_endpoints(p: Platform, function: str) -> list[str]:
    nc = await p.admin_nats()
    kv = await nc.jetstream().key_value(KV_ROUTES)
    table = RouteTable.from_json((await kv.get(function)).value)
    await nc.close()
    return [ep for v in table.versions.values() for ep in v.endpoints]


def core_triggers(p: Platform, events: int, gateway_pid: int) -> None:
    with Client(p.gateway_url, p.token) as fx:
        asyncio.run(fire_and_forget(p, fx, "ff", 2000, gateway_pid))  # warm-up: connections, pools
        asyncio.run(request_reply(p, "rr", 2000, gateway_pid))
        raw_core = asyncio.run(raw_pub_sub(p, events))
        echo = asyncio.run(raw_echo(p, events))
        ff = asyncio.run(fire_and_forget(p, fx, "ff", events, gateway_pid))
        rr = asyncio.run(request_reply(p, "rr", events, gateway_pid))
    report.figure(
        "core NATS trigger, fire-and-forget",
        ff["rate"],
        "ev/s",
        reference=raw_core,
        reference_name="raw nats-py pub→sub",
        at_least=60_000,
    )
    report.figure("core NATS trigger, gateway CPU per event", ff["gateway_cpu_us"], "µs")
    report.figure(
        f"core NATS trigger, request-reply (window {WINDOW})",
        rr["rate"],
        "ev/s",
        reference=echo,
        reference_name=f"raw nats-py echo (window {WINDOW})",
        at_least=50_000,
    )
    report.figure("core NATS trigger request-reply, gateway CPU per event", rr["gateway_cpu_us"], "µs")


def async_calls(p: Platform, events: int, pids: dict[str, int], raw: float) -> None:
    asyncio.run(through_gateway(p, "bench", 2000, pids))  # warm-up: connections, pools
    run = asyncio.run(through_gateway(p, "bench", events, pids))
    gateway = pids["gateway"]
    accepts = (
        ("POST /async-function (HTTP event)", accepted(p, "/async-function/bench", (), events, gateway)),
        ("Invoke API, Event", accepted(p, INVOKE, ("X-Amz-Invocation-Type: Event",), events, gateway)),
    )
    replicas_cpu = sum(v for k, v in run.items() if k.startswith("replica"))
    print(
        f"  async calls run by the gateway                       {run['rate']:9.0f} calls/s"
        f"  ({run['seconds']:.2f} s; storing took {run['stored_s']:.2f} s)"
        f"  CPU/call: gateway {run['gateway_cpu_us']:.0f} µs, replicas {replicas_cpu:.0f} µs"
    )
    for label, accept in accepts:
        print(
            f"  {label + ', accepted (16 connections)':<53}{accept['rps']:9.0f} calls/s"
            f"  p50 {accept['p50_ms']:.2f} ms p99 {accept['p99_ms']:.2f} ms  errors {accept['errors']}"
            f"  gateway CPU/call: over the load {accept['gateway_cpu_us']:.0f} µs,"
            f" until run too {accept['with_run_cpu_us']:.0f} µs"
        )
    report.figure(
        "async calls run, end to end", run["rate"], "ev/s", reference=raw, reference_name=JET, at_least=20_000
    )
    report.figure("async calls run, gateway CPU per call", run["gateway_cpu_us"], "µs")
    report.figure("async calls run, replicas' CPU per call", replicas_cpu, "µs")


def durable_triggers(p: Platform, tmp: Path, events: int, gateway_pid: int, raw: float) -> None:
    single = asyncio.run(durable(p, tmp, "single", events, 1, 64, gateway_pid))
    batched = asyncio.run(durable(p, tmp, "batched", events * 5, 100, 4, gateway_pid))
    runs = (("single (batch 1, 64 in flight)", single), ("batched (batch 100, 4 in flight)", batched))
    for label, result in runs:
        print(
            f"  durable trigger, {label:<33}{result['rate']:9.0f} events/s  {result['rate'] / raw:5.2f} of baseline"
            f"  ({result['seconds']:.2f} s)  gateway CPU/event {result['gateway_cpu_us']:.1f} µs"
        )
    report.figure(
        "durable trigger, batch 1", single["rate"], "ev/s", reference=raw, reference_name=JET, at_least=40_000
    )
    report.figure(
        "durable trigger, batch 100",
        batched["rate"],
        "ev/s",
        reference=raw,
        reference_name=JET,
        at_least=100_000,
        ratio_at_least=0.7,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per measured run")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of the trivial function")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="measure only these parts (repeatable; default: all)"
    )
    args = parser.parse_args()
    parts = args.only or PARTS
    with tempfile.TemporaryDirectory(prefix="fx-bench-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        n = args.replicas
        scale = f"{{min: {n}, max: {n}, concurrency: 0, idle_timeout: 3600}}"
        functions = [("bench", "")]
        if "core" in parts:
            functions += [("ff", "[{nats: bench.ff}]"), ("rr", "[{nats: bench.rr}]")]
        for name, triggers in functions:
            triggers = f"\n    triggers: {triggers}" if triggers else ""
            deploy(Path(tmp) / name, p, f"functions:\n  {name}:\n    scale: {scale}{triggers}\n")
        deadline = time.monotonic() + 60
        while len(endpoints := asyncio.run(replica_endpoints(p, "bench"))) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(endpoints)} of {n} replicas became ready")
            time.sleep(0.2)
        pids = {"gateway": pid_listening_on(urlsplit(p.gateway_url).port)}
        for i, endpoint in enumerate(endpoints):
            pids[f"replica{i}"] = replica_target(endpoint)[2]

        print(f"events: {args.events} per run, trivial handler on {n} replicas (concurrency 0), 2-core host")
        if "core" in parts:
            core_triggers(p, args.events, pids["gateway"])
        fetched = asyncio.run(raw_pull_and_ack(p, args.events))
        raw = asyncio.run(raw_open_pull_and_ack(p, args.events))
        print(f"  JetStream raw pull+ack, one open pull request        {raw:9.0f} msgs/s   (baseline)")
        print(
            f"  JetStream raw pull+ack, nats-py fetch() of 256       {fetched:9.0f} msgs/s"
            f"   {fetched / raw:5.2f} of baseline"
        )
        if "async" in parts:
            async_calls(p, args.events, pids, raw)
        if "durable" in parts:
            durable_triggers(p, Path(tmp), args.events, pids["gateway"], raw)


if __name__ == "__main__":
    main()
