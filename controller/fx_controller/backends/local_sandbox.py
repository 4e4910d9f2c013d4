"""The local backend's sandbox, controller side: per-function uids, private directories, the instance's
names, and the start-up report of which protections are in force. The confinement itself is the zygote's
(fx_runtime/sandbox/).

Uids are allocated, not derived: `<state>/sandbox-uids.json` (root-only) maps each function to the lowest
uid of the range no other function has, so two functions never share one (a hash would collide and need
this same state to settle it) and a function keeps its uid across restarts. A deleted function's uid is
not reused: a file it left behind can never belong to another function.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fx_runtime.sandbox import cgroups as sandbox_cgroups

UIDS_FILE = "sandbox-uids.json"


@dataclass(frozen=True)
class SandboxSettings:
    uids: tuple[int, int]  # first, last (inclusive)
    tmp_mb: int
    pids_max: int
    hidden: list[str] = field(default_factory=list)  # never visible to a function (state dir, CLI config)


def parse_uid_range(value: str) -> tuple[int, int]:
    first, sep, last = value.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(f"uid range {value!r} is not FIRST-LAST (e.g. 100000-165535)")
    low, high = int(first), int(last)
    if not 0 < low <= high < 2**32 - 1:
        raise ValueError(f"uid range {value!r} must be non-empty, above 0 (root) and below 4294967295")
    return low, high


class UidMap:
    """function -> uid (= gid), persisted so it survives controller restarts."""

    def __init__(self, path: Path, uids: tuple[int, int]) -> None:
        self.path = path
        self.first, self.last = uids
        try:
            self._map: dict[str, int] = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except FileNotFoundError:
            self._map = {}

    def uid(self, function: str) -> int:
        known = self._map.get(function)
        if known is not None and self.first <= known <= self.last:
            return known
        taken = set(self._map.values())
        uid = next((u for u in range(self.first, self.last + 1) if u not in taken), None)
        if uid is None:
            raise RuntimeError(f"no free uid left in {self.first}-{self.last} (--sandbox-uids) for function {function}")
        self._map[function] = uid
        self._save()
        return uid

    def owner(self, function: str) -> tuple[int, int]:
        """(uid, gid) of the function's replicas: who owns the files fx puts in its private directory."""
        uid = self.uid(function)
        return uid, uid

    def _save(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uids-")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self._map, sort_keys=True))  # one shot, the C encoder: it grows with every function
        os.replace(tmp, self.path)  # mkstemp made it 0600


def instance(state_dir: Path) -> str:
    """A short name for this fx instance (its state directory): its cgroups and run directory carry it."""
    return "fx-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]


def run_dir(state_dir: Path) -> Path:
    """Where functions' private directories live: short (a Unix socket path has 107 bytes), per instance."""
    if os.geteuid() == 0:
        return Path("/run") / instance(state_dir)
    return Path(tempfile.gettempdir()) / f"{instance(state_dir)}-{os.geteuid()}"


def clean_cgroups(parent: str) -> bool:
    """Remove a zygote's cgroups (the zygote is gone, and its replicas with it); True once none is left."""
    hierarchies = sandbox_cgroups.detect(parent, create=False)
    sandbox_cgroups.clean(hierarchies)
    sandbox_cgroups.remove_base(hierarchies)
    return not sandbox_cgroups.detect(parent, create=False)


def report(mode: str, settings: SandboxSettings | None, zygote: dict | None) -> list[str]:
    """The protections in force, one line each, for the controller's log and `fx up`."""
    if settings is None or zygote is None:
        why = (
            "--sandbox off"
            if mode == "off"
            else f"fx runs as uid {os.geteuid()}, not root (creating namespaces, cgroups and uids needs root)"
        )
        return [
            f"function sandbox: OFF ({why})",
            "  functions run as this user, see the whole file system (the state dir and its admin token included),",
            "  can signal fx's processes, and have no memory or process limit; code is extracted read-only, but",
            "  a function running as the same user can make it writable again. Run fx as root for the sandbox.",
        ]
    limits = zygote.get("limits", {})
    lines = [f"function sandbox: ON (uids {settings.uids[0]}-{settings.uids[1]}, one per function)"]
    if zygote.get("namespaces"):
        lines.append(
            f"  private file system (own code read-only at /var/task, its dependencies at /opt/fx/python,"
            f" {settings.tmp_mb} MB /tmp, no state dir),"
            " own PID, IPC and UTS namespaces: on"
        )
    else:
        lines.append(f"  private file system and namespaces: OFF ({zygote.get('namespaces_error') or 'unavailable'})")
    if "memory" in limits:
        answer = "Runtime.OutOfMemory answer" if zygote.get("oom_answer") else "killed by the kernel: callers get 502"
        lines.append(f"  memory limit (cgroup v{limits['memory']}; over it: {answer}): on")
    else:
        lines.append("  memory limit: OFF (no writable cgroup memory controller)")
    if "pids" in limits:
        lines.append(f"  process limit ({settings.pids_max} per replica, cgroup v{limits['pids']}): on")
    else:
        lines.append("  process limit: OFF (no writable cgroup pids controller)")
    lines.append("  no_new_privs, no capabilities, no supplementary groups; code root-owned and read-only: on")
    return lines
