"""What every benchmark here needs: a process's CPU time, who listens on a port, a load run.

The load generator runs as its own process so that its CPU is never charged to the
process being measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOADGEN = str(Path(__file__).with_name("loadgen.py"))
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pid_listening_on(port: int) -> int:
    """The PID of the process with a TCP socket listening on 127.0.0.1:`port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A" and int(cols[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{cols[9]}]")
    return _pid_with_socket(inodes, f"port {port}")


def _pid_with_socket(inodes: set[str], what: str) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    raise LookupError(f"no process listens on {what}")


def pid_listening_on_unix(path: str) -> int:
    """The PID of the process with a Unix socket listening at `path`."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) == 8 and cols[7] == path and int(cols[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
            inodes.add(f"socket:[{cols[6]}]")
    return _pid_with_socket(inodes, path)


def replica_target(endpoint: str) -> tuple[str, str | None, int]:
    """A replica endpoint ("host:port" or "unix:/path") → (its base URL, its Unix socket or None, its PID)."""
    if endpoint.startswith("unix:"):
        path = endpoint.removeprefix("unix:")
        return "http://localhost", path, pid_listening_on_unix(path)
    return f"http://{endpoint}", None, pid_listening_on(int(endpoint.rsplit(":", 1)[1]))


def load(
    url: str,
    concurrency: int,
    requests: int,
    pids: dict[str, int],
    method: str = "GET",
    unix: str | None = None,
    headers: tuple[str, ...] = (),
) -> dict:
    """Run bench/loadgen.py against `url` (through the Unix socket `unix` if set, with `headers`, each
    "Name: value"); add the CPU µs per request each of `pids` spent."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out = subprocess.run(
        [
            sys.executable,
            LOADGEN,
            "--url",
            url,
            "--method",
            method,
            "--concurrency",
            str(concurrency),
            "--requests",
            str(requests),
            *(["--unix", unix] if unix else []),
            *(arg for header in headers for arg in ("--header", header)),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    result = json.loads(out)
    for name, pid in pids.items():
        result[f"{name}_cpu_us"] = round((cpu_seconds(pid) - before[name]) * 1e6 / max(result["requests"], 1), 1)
    return result
