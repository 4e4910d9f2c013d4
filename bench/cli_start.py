"""How long the `fx` CLI takes to start: `fx --version`, `fx --help`, `fx deploy --help`, `fx ls` and the other
read commands (`fx describe`, `fx versions`, `fx secret ls`..., READS), in one run.

Each command is run --runs times as a fresh process (the console script pip installed, as a user types it, its
package byte-compiled first as pip does) with its output thrown away; the figure is the median wall time, beside
the median of `python -I -c pass` (the interpreter's start, the floor) measured in the same run. `fx ls` and the
read commands ask a platform started here (fx.platform.Platform on free ports, one function deployed) so that they
parse and print a real answer; their connection comes from FX_GATEWAY/FX_TOKEN and a config file of its own. The
read commands are one line: the slowest of their medians, named. The CPU time of each (user + system, from wait4)
is printed as INFO: it is what other load on the host disturbs least. `python -I -c "import httpx"` is printed
too, as the floor of any command that makes an HTTP call. With --baseline FX (another build's fx, e.g. main's
.venv/bin/fx) the same commands are measured with it in the same run, as INFO lines: before and after.

    .venv/bin/python -m bench.cli_start [--runs 15] [--baseline /work/main/.venv/bin/fx]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import figure

TARGET_MS = 80.0
ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (["--version"], ["--help"], ["deploy", "--help"], ["ls"])
# The commands that show one GET's answer (fx.reads), besides `fx ls`: measured alike, reported by the slowest.
READS = (
    ["describe", "hello"],
    ["versions", "hello"],
    ["secret", "ls"],
    ["stream", "ls"],
    ["kv", "ls"],
    ["apikey", "ls"],
    ["credentials", "ls"],
    ["dlq", "ls"],
    ["apis", "ls"],
    ["routes"],
    ["status"],
    ["version"],
    ["usage"],
    ["logs", "hello"],
)


def byte_compile(fx: str) -> None:
    """Compile the fx package of the build `fx` belongs to, as pip does at install: with PYTHONDONTWRITEBYTECODE set
    (or a cache older than the sources) each run would compile every changed module again, and count it."""
    python = str(Path(fx).with_name("python"))
    # fx.protocol's folder too: in an editable install fx-core's half of the package is not on fx.__path__
    code = (
        "import compileall, fx, fx.protocol, os;"
        "paths = {*fx.__path__, os.path.dirname(fx.protocol.__file__)};"
        "all(compileall.compile_dir(p, quiet=1) for p in paths) or exit(1)"
    )
    subprocess.run([python, "-c", code], check=True)


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) milliseconds of `runs` fresh runs of argv; fails if one fails."""
    walls, cpus = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        cpus.append(usage.ru_utime + usage.ru_stime)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (median; default 15)")
    parser.add_argument("--fx", default=str(Path(sys.executable).with_name("fx")), help="the fx measured")
    parser.add_argument("--baseline", metavar="FX", help="another build's fx, measured alike in the same run")
    args = parser.parse_args()

    from fx import deploy
    from fx.client import Client
    from fx.platform import Platform

    with tempfile.TemporaryDirectory(prefix="fx-cli-start-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        env = {**os.environ, "FX_GATEWAY": p.gateway_url, "FX_TOKEN": p.token, "FX_CONFIG": f"{tmp}/config.json"}
        env.pop("FX_CONTEXT", None)
        with Client(p.gateway_url, p.token) as client:
            deploy.deploy(client, ROOT / "examples" / "hello" / "fx.yaml", progress=lambda _: None)

        python = [sys.executable, "-I", "-c"]
        ref_wall, ref_cpu = timed([*python, "pass"], env, args.runs)
        httpx_wall, _ = timed([*python, "import httpx"], env, args.runs)
        reference = {"reference": ref_wall, "reference_name": "python -I -c pass"}
        figure("python -I -c 'import httpx' start (wall)", httpx_wall, "ms", **reference)
        builds = [("", args.fx)] + ([(" [baseline]", args.baseline)] if args.baseline else [])
        for label, fx in builds:
            byte_compile(fx)
            timings = [(command, *timed([fx, *command], env, args.runs)) for command in COMMANDS]
            reads = [(command, *timed([fx, *command], env, args.runs)) for command in READS]
            slowest = max(reads, key=lambda timing: timing[1])
            for command, wall, cpu in [*timings, slowest]:
                name = f"fx {' '.join(command)}{label}"
                if command is slowest[0]:
                    name = f"slowest other read command of {len(READS)}: {name}"
                if label:  # the build compared against: context, no target
                    figure(f"{name} (wall)", wall, "ms", **reference)
                else:
                    figure(f"{name} (wall)", wall, "ms", at_most=TARGET_MS, **reference)
                figure(f"{name} (CPU)", cpu, "ms", reference=ref_cpu, reference_name="python -I -c pass CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
