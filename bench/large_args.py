"""Large arguments: f.remote() of a few MB sent inline (in the request) against the same passed by reference (a blob
uploaded to the controller, read from NATS by the gateway), bigger arguments by reference only (the gateway refuses
them inline), and the same arguments again (the blob is there: no upload), on one platform in one run. Prints ms
per call and MB/s of arguments.

    .venv/bin/python -m bench.large_args [--calls 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import fx
from fx.client import Client
from fx.platform import Platform
from fx.remote import Function

MB = 2**20


def report(platform: Platform, calls: int) -> None:
    with Client(platform.gateway_url, platform.token, timeout=300) as client:
        settings = {"memory": 1024, "timeout": 120, "client": client}
        inline = fx.function(name="args-inline", by_reference_over=None, **settings)(lambda data: len(data))
        by_ref = fx.function(name="args-by-ref", **settings)(lambda data: len(data))
        print(f"-- f.remote(bytes) returning its length, {calls} calls each, {os.cpu_count()} CPUs")
        for f, size in ((inline, 4), (by_ref, 4), (by_ref, 20), (by_ref, 40)):
            f.deploy()
            assert f.remote(b"warm") == 4  # a replica started
            arguments = [os.urandom(size * MB) for _ in range(calls)]  # new bytes each call: each is uploaded
            how = "inline" if f.by_reference_over is None else "by reference"
            _line(f"{size:4d} MB {how}", f, arguments)
            if f.by_reference_over is not None:
                _line(f"{size:4d} MB again (no upload)", f, arguments[:1] * calls)


def _line(what: str, f: Function, arguments: list[bytes]) -> None:
    started = time.perf_counter()
    for data in arguments:
        assert f.remote(data) == len(data)
    each = (time.perf_counter() - started) / len(arguments)
    print(f"{what:<26} {each * 1000:8.0f} ms/call   {len(arguments[0]) / MB / each:6.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="timed calls per size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-bench-args-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        report(p, args.calls)


if __name__ == "__main__":
    main()
