"""Cold starts of two (or more) checkouts, side by side: each its own embedded platform (templates, sandbox as the
host allows), the same functions at zero, called cold in turn, the order alternating call by call, so the host's
mood is shared. A change to the cold start's path is judged by this, not by two runs of bench.cold_start minutes
apart (this host's p50 moves 15-35 % between runs).

    .venv/bin/python -m bench.cold_start_ab [--functions 10] [--rounds 4] CHECKOUT CHECKOUT...

Each CHECKOUT is a directory with its own `make install`ed .venv (e.g. `git worktree add ../before main` and
`make install` there); it serves its platform with its own code.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAUSE_S = 0.1  # between calls: what one platform does after a cold start is not the other's cost


def serve(functions: int) -> None:
    """In a checkout's own Python: a platform with `functions` functions; "zero" waits until none runs, "call NAME"
    calls one and prints its latency in ms."""
    import httpx

    from bench.cold_start import IDLE, at_zero, deploy, platform_with

    names = [f"f{i}" for i in range(functions)]
    with tempfile.TemporaryDirectory() as d, platform_with(Path(d) / "state") as platform:
        deploy(Path(d) / "project", platform, "functions:\n" + "".join(f"  {n}: {IDLE}\n" for n in names))
        print("ready", flush=True)
        with httpx.Client(timeout=30) as client:
            for line in sys.stdin:
                command, *args = line.split()
                if command == "zero":
                    at_zero(platform, names)
                    print("ok", flush=True)
                else:
                    started = time.perf_counter()
                    client.get(f"{platform.gateway_url}/function/{args[0]}/").raise_for_status()
                    print(f"{(time.perf_counter() - started) * 1000:.3f}", flush=True)


def compare(checkouts: list[Path], functions: int, rounds: int) -> dict[Path, list[float]]:
    servers = {
        c: subprocess.Popen(
            # this file, run by the checkout's Python with the checkout first on the path: an older checkout
            # without this file is compared all the same (it needs bench.cold_start, there since 2026-12-02)
            [str(c / ".venv/bin/python"), __file__, "--serve", "--functions", str(functions)],
            cwd=c,
            env={"PYTHONPATH": str(c), "PATH": "/usr/local/bin:/usr/bin:/bin"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for c in checkouts
    }

    def ask(server: subprocess.Popen, line: str) -> str:
        server.stdin.write(line + "\n")  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]
        answer = server.stdout.readline().strip()  # type: ignore[union-attr]
        if not answer:
            raise SystemExit(f"a platform stopped answering ({line!r})")
        return answer

    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    try:
        for server in servers.values():
            if server.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise SystemExit("a platform did not start")
        for r in range(rounds):
            for server in servers.values():
                ask(server, "zero")
            for i in range(functions):
                for c in checkouts if (i + r) % 2 else checkouts[::-1]:
                    time.sleep(PAUSE_S)
                    times[c].append(float(ask(servers[c], f"call f{i}")))
    finally:
        for server in servers.values():
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(60)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="*", type=Path)
    parser.add_argument("--functions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.functions)
    if len(args.checkouts) < 2:
        parser.error("name two checkouts or more, each with its own .venv")
    for checkout, values in compare([c.resolve() for c in args.checkouts], args.functions, args.rounds).items():
        ordered = sorted(values)
        p90 = ordered[round(0.9 * (len(ordered) - 1))]
        p50 = statistics.median(ordered)
        print(f"{checkout}: p50 {p50:.2f} ms  p90 {p90:.2f}  max {ordered[-1]:.2f}  n={len(ordered)}")


if __name__ == "__main__":
    main()
