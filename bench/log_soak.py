"""The log soak of issue 15: many invocations through the gateway, each printing a line, leave the functions' log
directory under its cap while it rotates.

    .venv/bin/python -m bench.log_soak [--requests 1000000] [--max-bytes 1048576] [--keep 1]

Prints one JSON line: invocations, errors, seconds, rps, the log directory's size (largest seen, sampled every
0.1 s, and at the end) against the cap (keep + 1) x max-bytes and the 4 MiB the test holds it to, the
rotations seen (inode changes of NAME.log.1), the invocations the kept files still show, and the controller's CPU
per invocation (where the rotator runs; compare with --max-bytes 100000000000, which never rotates).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from fx.log_files import Limit, inode, rotated, segments
from fx.platform import Platform

from bench.measure import load
from bench.run import FX

SAMPLE_S = 0.1
HANDLER_PRINTS = "def handler(event, context):\n    print('soak')\n    return {'statusCode': 200, 'body': 'ok'}\n"


def log_dir_bytes(log_dir: Path) -> int:
    """What the functions' logs hold (the platform's own, in logs/platform/, rotate on their own limit)."""
    total = 0
    for entry in os.scandir(log_dir):
        if entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):  # a rotated file going
                total += entry.stat().st_size
    return total


def soak(state_dir: Path, requests: int, limit: Limit, concurrency: int = 16) -> dict:
    with Platform(state_dir, ports="free", function_logs=limit) as platform:
        project = state_dir.parent / "soak"
        project.mkdir(parents=True, exist_ok=True)
        (project / "handler.py").write_text(HANDLER_PRINTS)
        (project / "fx.yaml").write_text("functions:\n  soak:\n    scale: {min: 1, max: 2, idle_timeout: 3600}\n")
        env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
        subprocess.run([FX, "deploy"], cwd=project, env=env, check=True, capture_output=True, timeout=300)
        log_dir = platform.state_dir / "logs"
        log = log_dir / "soak.log"
        largest, rotations, done = 0, 0, threading.Event()

        def sample() -> None:
            nonlocal largest, rotations
            last = inode(rotated(log, 1))
            while not done.wait(SAMPLE_S):
                largest = max(largest, log_dir_bytes(log_dir))
                if (now := inode(rotated(log, 1))) != last:
                    rotations, last = rotations + 1, now

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            pids = {"controller": platform.pid("controller")}  # the rotator's CPU is the controller's
            result = load(f"{platform.gateway_url}/function/soak/", concurrency, requests, pids)
        finally:
            done.set()
            sampler.join()
        kept = sum(path.read_bytes().count(b"START RequestId: ") for path in segments(log) if path.exists())
        return {
            "invocations": result["requests"],
            "errors": result["errors"],
            "seconds": result["seconds"],
            "rps": result["rps"],
            "controller_cpu_us_per_invocation": result["controller_cpu_us"],
            "log_dir_max_bytes": max(largest, log_dir_bytes(log_dir)),
            "log_dir_end_bytes": log_dir_bytes(log_dir),
            "cap_bytes": (limit.keep + 1) * limit.max_bytes,
            "rotations_seen": rotations,
            "invocations_kept": kept,
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_soak")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--keep", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-soak-") as tmp:
        print(json.dumps(soak(Path(tmp) / "state", args.requests, Limit(args.max_bytes, args.keep), args.concurrency)))


if __name__ == "__main__":
    main()
