"""Events per second: async calls through a trivial function, against JetStream's raw pull-and-ack rate.

Starts the real embedded platform on free ports, deploys a trivial handler, then in one run:

1. baseline: this Python process pulls and acks N messages of a scratch work-queue stream, through one pull
   request kept open (as the gateway pulls); for reference also with nats-py's fetch() in batches of 256;
2. async calls run by the gateway: N calls stored straight into FX_ASYNC (as the gateway's accept path
   stores them), timed from the first store until the shared consumer has acked them all, with the
   gateway's and the replicas' CPU per call;
3. the accept path: `POST /async-function/NAME` by the load generator (16 connections): 202s per second,
   with the gateway's CPU per accepted call (which includes running it);
4. durable triggers: N messages stored in a stream first, then a function deployed with a JetStream trigger
   on it, single (batch 1, 64 in flight) and batched (batch 100, 4 in flight); timed from the consumer's
   creation until it has acked everything.

    .venv/bin/python -m bench.events [--events 20000] [--replicas 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

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

from bench.measure import cpu_seconds, load, pid_listening_on, replica_target
from bench.run import deploy

STORE_CONCURRENCY = 512


async def raw_pull_and_ack(p: Platform, count: int) -> float:
    """Messages per second this process pulls and acks from a work queue (publishing not timed)."""
    nc = await p.admin_nats()
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw"], retention=RetentionPolicy.WORK_QUEUE))
    await store(js, "bench.raw", count, {})
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
    await store(js, "bench.open", count, {})
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


async def store(js, subject: str, count: int, headers: dict[str, str]) -> None:
    sem = asyncio.Semaphore(STORE_CONCURRENCY)

    async def one() -> None:
        async with sem:
            await js.publish(subject, b"{}", headers={**headers, ASYNC_CALL_ID: str(uuid.uuid4())} if headers else None)

    await asyncio.gather(*(one() for _ in range(count)))


async def through_gateway(p: Platform, function: str, count: int, pids: dict[str, int]) -> dict:
    """Async calls per second run by the gateway, from the first store until all are acked."""
    nc = await p.admin_nats()
    js = nc.jetstream()
    headers = {ASYNC_FUNCTION: function, ASYNC_METHOD: "POST", ASYNC_TARGET: REPLICA_INVOKE_PATH}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await store(js, async_subject(function), count, headers)
    stored = time.perf_counter() - started
    while True:
        info = await js.consumer_info(STREAM_ASYNC, CONSUMER_ASYNC)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    await nc.close()
    cpu = {f"{name}_cpu_us": (cpu_seconds(pid) - before[name]) * 1e6 / count for name, pid in pids.items()}
    return {"rate": count / seconds, "seconds": seconds, "stored_s": stored, **cpu}


async def durable(p: Platform, tmp: Path, name: str, count: int, batch: int, in_flight: int, pid: int) -> dict:
    """Events per second through a durable trigger from a stored backlog of `count` messages."""
    stream = f"BENCH_{name.upper()}"
    nc = await p.admin_nats()
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"bench.{name}"]))
    await store(js, f"bench.{name}", count, {})
    trigger = f"{{stream: {stream}, batch: {batch}, max_in_flight: {in_flight}, window_ms: 5}}"
    manifest = (
        f"functions:\n  {name}:\n    scale: {{min: 2, max: 2, concurrency: 0, idle_timeout: 3600}}\n"
        f"    triggers: [{{jetstream: {trigger}}}]\n"
    )
    before = cpu_seconds(pid)
    # The trivial handler's answer has no batchItemFailures, so every batch is acked whole.
    try:
        await asyncio.to_thread(deploy, tmp / name, p, manifest)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"fx deploy of {name} failed: {exc.stderr.decode(errors='replace')}") from None
    while not await js.consumers_info(stream):
        await asyncio.sleep(0.005)
    started = time.perf_counter()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per measured run")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of the trivial function")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-bench-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        n = args.replicas
        manifest = f"functions:\n  bench:\n    scale: {{min: {n}, max: {n}, concurrency: 0, idle_timeout: 3600}}\n"
        deploy(Path(tmp) / "bench", p, manifest)
        deadline = time.monotonic() + 60
        while len(endpoints := asyncio.run(replica_endpoints(p, "bench"))) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(endpoints)} of {n} replicas became ready")
            time.sleep(0.2)
        pids = {"gateway": pid_listening_on(urlsplit(p.gateway_url).port)}
        for i, endpoint in enumerate(endpoints):
            pids[f"replica{i}"] = replica_target(endpoint)[2]

        asyncio.run(through_gateway(p, "bench", 2000, pids))  # warm-up: connections, pools
        fetched = asyncio.run(raw_pull_and_ack(p, args.events))
        raw = asyncio.run(raw_open_pull_and_ack(p, args.events))
        run = asyncio.run(through_gateway(p, "bench", args.events, pids))
        accept = load(f"{p.gateway_url}/async-function/bench", 16, args.events, {"gateway": pids["gateway"]}, "POST")
        gateway_pid, tmp_path = pids["gateway"], Path(tmp)
        single = asyncio.run(durable(p, tmp_path, "single", args.events, 1, 64, gateway_pid))
        batched = asyncio.run(durable(p, tmp_path, "batched", args.events * 5, 100, 4, gateway_pid))

        replicas_cpu = sum(v for k, v in run.items() if k.startswith("replica"))
        print(f"events: {args.events} per run, trivial handler on {n} replicas (concurrency 0), 2-core host")
        print(f"  JetStream raw pull+ack, one open pull request        {raw:9.0f} msgs/s   (baseline)")
        print(
            f"  JetStream raw pull+ack, nats-py fetch() of 256       {fetched:9.0f} msgs/s"
            f"   {fetched / raw:5.2f} of baseline"
        )
        print(
            f"  async calls run by the gateway                       {run['rate']:9.0f} calls/s"
            f"  ({run['seconds']:.2f} s; storing took {run['stored_s']:.2f} s)"
            f"  CPU/call: gateway {run['gateway_cpu_us']:.0f} µs, replicas {replicas_cpu:.0f} µs"
        )
        print(
            f"  POST /async-function accepted (16 connections)       {accept['rps']:9.0f} calls/s"
            f"  p50 {accept['p50_ms']:.2f} ms p99 {accept['p99_ms']:.2f} ms  errors {accept['errors']}"
            f"  gateway CPU/call (accept + run) {accept['gateway_cpu_us']:.0f} µs"
        )
        runs = (("single (batch 1, 64 in flight)", single), ("batched (batch 100, 4 in flight)", batched))
        for label, result in runs:
            print(
                f"  durable trigger, {label:<33}{result['rate']:9.0f} events/s  {result['rate'] / raw:5.2f} of baseline"
                f"  ({result['seconds']:.2f} s)  gateway CPU/event {result['gateway_cpu_us']:.1f} µs"
            )


if __name__ == "__main__":
    main()
