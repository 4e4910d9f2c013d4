"""Deploy → routable at scale: how soon the gateway routes a new function, and how soon it answers its first
200, with 1,000 functions deployed, against the same with one.

The embedded platform (fx.platform.Platform on free ports) is started here. One code zip (a trivial handler) is
uploaded once and every function deploys it (the spec differs by name alone, defaults otherwise: the replica the
readiness gate starts for each stays up for its 300 s idle timeout, so 1,000 functions run 1,000 replicas). For
each of --samples new functions, from the deploy call's return, GET /function/NAME/ through the gateway is polled
back to back on one keep-alive connection: a call the gateway cannot route yet is answered 404 at once; one it
routes waits on the activation path for the readiness gate's replica to start and initialise (a cold start,
bench.cold_start's), then answers 200. The reference: the same with one function deployed, measured first in this
run. Then --functions functions are deployed through the API, and once every one of them runs (none Pending: the
deploy calls return before their replicas have started) the samples are taken again. Each sampled function is
deleted again before the next, at both scales alike: back to back, a deploy's replica would find no spare
sandboxed process ready (the zygote forks the next one 25 ms after a replica's ready) and wait for one to be
forked and set up, a deploy storm's cost rather than the function count's (bench/README). The figures, p50 at
--functions against p50 at one function:

- deploy → routable: to the sending of the first call the gateway routed (not answered 404), found within one
  404's round trip; the issue's target, p50 ≤ 10 ms at 1,000 functions;
- deploy → first 200: to that call's 200; at --functions as at one function (ratio ≤ 1.25); its max for context.

    .venv/bin/python -m bench.deploy_scale [--functions 1000] [--samples 30]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from fx.client import Client
from fx.models import FunctionSpec
from fx.platform import Platform

from bench.report import figure

TARGET_MS = 10.0  # deploy → routable, p50 at 1,000 functions (issue 20)
LIKE_AT_ONE = 1.25  # deploy → first 200: p50 at 1,000 functions over the p50 at one
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
POLL_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 120.0


def code_zip() -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("handler.py", HANDLER)
    data = buffer.getvalue()
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def spec(name: str, digest: str) -> FunctionSpec:
    return FunctionSpec(name=name, artifact=digest)


def routable_ms(client: Client, http: httpx.Client, name: str, digest: str) -> tuple[float, float]:
    """Milliseconds from the deploy call's return to the first 200 of the function through the gateway, and to
    the sending of the first call the gateway routed (until it has the route, a call is answered 404 at once)."""
    client.deploy(spec(name, digest))
    start = time.perf_counter()
    deadline = start + POLL_TIMEOUT_S
    while True:
        sent = time.perf_counter()
        if http.get(f"/function/{name}/").status_code == 200:
            return (time.perf_counter() - start) * 1000, (sent - start) * 1000
        if sent > deadline:
            sys.exit(f"{name} did not answer 200 within {POLL_TIMEOUT_S:g} s of its deploy")


def samples(client: Client, http: httpx.Client, prefix: str, digest: str, count: int) -> list[tuple[float, float]]:
    """routable_ms() of `count` new functions, each deleted again before the next: the count of functions stays
    as it was, and each deploy finds the host as the last one's left it (a delete takes its drain delay, ~1 s)."""
    taken = []
    for i in range(count):
        taken.append(routable_ms(client, http, f"{prefix}-{i}", digest))
        client.delete(f"{prefix}-{i}")
    return taken


def settled_s(client: Client, names: set[str]) -> float:
    """Seconds until no version of `names` is Pending (each has its replica up, or failed): the samples at scale
    are then taken with every function running, not while the bulk's replicas still start."""
    start = time.perf_counter()
    while True:
        pending = [v for f in client.list_functions() if f.name in names for v in f.versions if v.state == "Pending"]
        if not pending:
            return time.perf_counter() - start
        if time.perf_counter() - start > SETTLE_TIMEOUT_S:
            sys.exit(f"{len(pending)} functions still Pending {SETTLE_TIMEOUT_S:g} s after the bulk deploy")
        time.sleep(0.5)


def p50(samples: list[tuple[float, float]], which: int) -> float:
    return statistics.median(sample[which] for sample in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", type=int, default=1000, help="functions deployed before the samples")
    parser.add_argument("--samples", type=int, default=30, help="deploys timed at each scale (default 30)")
    args = parser.parse_args()
    digest, data = code_zip()
    with (
        tempfile.TemporaryDirectory(prefix="fx-deploy-scale-") as tmp,
        Platform(Path(tmp) / "state", ports="free") as p,
        Client(p.gateway_url, p.token) as client,
        httpx.Client(base_url=p.gateway_url, timeout=30) as http,
    ):
        client.upload_artifact(digest, data)
        client.deploy(spec("base", digest))  # the one function of the reference
        alone = samples(client, http, "alone", digest, args.samples)
        started = time.perf_counter()
        bulk = {f"fn-{i:04d}" for i in range(args.functions - 1)}
        for name in sorted(bulk):
            client.deploy(spec(name, digest))
        bulk_s = time.perf_counter() - started
        print(f"deployed {args.functions} functions in {bulk_s:.1f} s ({bulk_s / args.functions * 1000:.1f} ms each),"
              f" all running {settled_s(client, bulk):.1f} s later")  # fmt: skip
        many = samples(client, http, "late", digest, args.samples)
    one = "at 1 function"
    at = f"at {args.functions:,} functions"
    figure(f"deploy → routable p50 {at}", p50(many, 1), "ms", reference=p50(alone, 1), reference_name=f"p50 {one}",
           at_most=TARGET_MS)  # fmt: skip
    figure(f"deploy → first 200 p50 {at}", p50(many, 0), "ms", reference=p50(alone, 0),
           reference_name=f"p50 {one}", ratio_at_most=LIKE_AT_ONE)  # fmt: skip
    figure(
        f"deploy → first 200 max {at}",
        max(t for t, _ in many),
        "ms",
        reference=max(t for t, _ in alone),
        reference_name=f"max {one}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
