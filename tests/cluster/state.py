"""What a running cluster owns, recorded in STATE/state.json as it is created, and its removal.

Teardown removes exactly what the record names: processes in the harness's cgroup (everything it started,
and every container, lives below it), mounts under the state dir and the pods' netns, iptables chains and
ipsets (kube-router's) that were not there before, the bridge, host paths that did not exist before, the
sysctls the kubelet and kube-proxy touch (restored), and the cgroups. Each step goes on when an earlier one fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.cluster import layout
from tests.cluster.shell import log, run

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Paths outside STATE that containerd, CNI or the kubelet create with no option to move them.
WATCHED_PATHS = [
    "/run/containerd",
    "/var/run/netns",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/var/run/kubernetes",
    "/etc/kubernetes",
    "/opt/containerd",
    "/opt/cni",
    "/usr/libexec/kubernetes",
]
# Kernel settings the kubelet (setupNode) and kube-proxy may change; put back as found.
SYSCTLS = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
]
# containerd's CRI bind-mounts each pod's network namespace here (no option to move it).
NETNS_DIRS = ("/var/run/netns/", "/run/netns/")
CHAIN_PREFIXES = ("KUBE-", "CNI-", "FX-")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")


@dataclass
class Record:
    processes: dict[str, int] = field(default_factory=dict)
    bridge: str = ""
    absent_paths: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    chains_before: dict[str, list[str]] = field(default_factory=dict)
    ipsets_before: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)

    @classmethod
    def load(cls) -> Record | None:
        path = layout.STATE / "state.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self) -> None:
        layout.STATE.mkdir(parents=True, exist_ok=True)
        tmp = layout.STATE / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.rename(layout.STATE / "state.json")


def snapshot() -> Record:
    """What the machine looks like before the cluster: the baseline teardown restores."""
    record = Record(
        absent_paths=[p for p in WATCHED_PATHS if not os.path.lexists(p)],
        sysctls={k: v for k in SYSCTLS if (v := _read_sysctl(k)) is not None},
        chains_before={f"{cmd}/{t}": sorted(_chains(cmd, t)) for cmd in IPTABLES for t in TABLES},
        ipsets_before=sorted(ipsets()),
    )
    record.save()
    return record


def _read_sysctl(key: str) -> str | None:
    try:
        return Path("/proc/sys", key).read_text().strip()
    except OSError:
        return None


def _chains(cmd: str, table: str) -> set[str]:
    done = subprocess.run([f"{cmd}-save", "-t", table], capture_output=True, text=True)
    return {line[1:].split()[0] for line in done.stdout.splitlines() if line.startswith(":")}


def ipsets() -> set[str]:
    """The names of the kernel's ipsets (none when the ipset tool is not installed yet)."""
    try:
        done = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True)
    except FileNotFoundError:
        return set()
    return set(done.stdout.split())


def _remove_ipsets(record: Record) -> None:
    """After the iptables rules that reference them are gone: kube-router's sets (KUBE-*, inet6:KUBE-*)."""
    for name in sorted(ipsets() - set(record.ipsets_before)):
        if name.removeprefix("inet6:").startswith(CHAIN_PREFIXES):
            run(["ipset", "destroy", name], check=False, quiet=True)


def hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, the named systemd one, and v2 if mounted)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mountpoint, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(mountpoint))
    return found


def make_cgroup(record: Record, name: str, delegate: bool = False) -> None:
    """Create `name` in every hierarchy (a v1 cpuset needs its cpus and mems filled in before it takes tasks).

    `delegate`: on a cgroup v2 host (not v1's hybrid "unified" mount), hand the controllers down to the
    children (the kubelet's pods); such a cgroup may then hold no process, so the daemons run in a child."""
    for root in hierarchies():
        path = root / name
        if not path.exists():
            path.mkdir()
            record.cgroups.append(str(path))
        if (path / "cpuset.cpus").exists() and not (path / "cpuset.cpus").read_text().strip():
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((path.parent / knob).read_text())
        if delegate and root == CGROUP_ROOT and (controllers := _read(path / "cgroup.controllers").split()):
            (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in controllers))
    record.save()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def join_cgroup(name: str) -> None:
    """Move the calling process into `name` in every hierarchy (used as a preexec_fn)."""
    pid = str(os.getpid())
    for root in hierarchies():
        (root / name / "cgroup.procs").write_text(pid)


def cgroup_pids() -> set[int]:
    """Every process below the harness's cgroup (the pids hierarchy, or the first one mounted)."""
    roots = [r for r in hierarchies() if r.name == "pids"] or hierarchies()
    pids: set[int] = set()
    top = roots[0] / layout.CGROUP_PARENT if roots else None
    if top is None or not top.exists():
        return pids
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _netns_of(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    inodes.discard(os.stat("/proc/self/ns/net").st_ino)
    return inodes


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4].replace("\\040", " "))
    return points


def _stop_processes(record: Record) -> set[int]:
    """SIGTERM the daemons, a short grace, then SIGKILL whatever is left in the cgroup; return the pods' netns.

    The cluster's data is thrown away, so nothing needs a clean shutdown: the grace only lets the kubelet
    and containerd stop starting new containers."""
    pods_netns = _netns_of(cgroup_pids())
    daemons = set(record.processes.values()) & cgroup_pids()  # still ours, not reused numbers
    for pid in daemons:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _wait_gone(daemons, 3)
    deadline = time.monotonic() + 15
    while (left := cgroup_pids()) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if left:
        log(f"still running after SIGKILL: {sorted(left)}")
    return pods_netns


def _wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)


def _unmount(pods_netns: set[int]) -> None:
    state = str(layout.STATE)
    for point in reversed(_mounts()):
        netns = point.startswith(NETNS_DIRS)
        ours = point == state or point.startswith(state + "/")
        if netns and not ours:
            with contextlib.suppress(OSError):
                ours = os.stat(point).st_ino in pods_netns
        if ours:
            if run(["umount", point], check=False, quiet=True).returncode != 0:
                run(["umount", "-l", point], check=False, quiet=True)
            if netns:
                with contextlib.suppress(OSError):
                    os.unlink(point)


def _remove_chains(record: Record) -> None:
    for cmd in IPTABLES:
        for table in TABLES:
            before = set(record.chains_before.get(f"{cmd}/{table}", []))
            ours = {c for c in _chains(cmd, table) - before if c.startswith(CHAIN_PREFIXES)}
            if not ours:
                continue
            rules = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            for rule in rules:
                parts = shlex.split(rule)  # comments are quoted: "-m comment --comment \"kubernetes ...\""
                if parts[:1] == ["-A"] and parts[1] not in ours and _jumps_to(parts, ours):
                    run([cmd, "-t", table, "-D", *parts[1:]], check=False, quiet=True)
            for chain in ours:
                run([cmd, "-t", table, "-F", chain], check=False, quiet=True)
            for chain in ours:
                run([cmd, "-t", table, "-X", chain], check=False, quiet=True)


def _jumps_to(parts: list[str], chains: set[str]) -> bool:
    return any(flag in ("-j", "-g") and target in chains for flag, target in itertools.pairwise(parts))


def teardown() -> None:
    """Remove everything the record names; safe to run again, and on a half-made cluster."""
    record = Record.load()
    if record is None:
        log(f"nothing to tear down ({layout.STATE / 'state.json'} is absent)")
        return
    steps = [
        ("processes", lambda: pods_netns.update(_stop_processes(record))),
        ("mounts", lambda: _unmount(pods_netns)),
        ("iptables", lambda: _remove_chains(record)),
        ("ipsets", lambda: _remove_ipsets(record)),
        ("bridge", lambda: record.bridge and run(["ip", "link", "del", record.bridge], check=False, quiet=True)),
        ("sysctls", lambda: _restore_sysctls(record)),
        ("paths", lambda: _remove_paths(record)),
        ("cgroups", lambda: _remove_cgroups(record)),
        ("state dir", lambda: shutil.rmtree(layout.STATE)),
    ]
    pods_netns: set[int] = set()
    for name, action in steps:
        began = time.monotonic()
        try:
            action()
            log(f"teardown: {name} ({time.monotonic() - began:.1f} s)")
        except Exception as exc:  # one failed step must not leave the rest in place
            log(f"teardown step {name} failed: {exc!r}")


def _restore_sysctls(record: Record) -> None:
    for key, value in record.sysctls.items():
        if _read_sysctl(key) != value:
            Path("/proc/sys", key).write_text(value)


def _remove_paths(record: Record) -> None:
    for path in record.absent_paths:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)


def _remove_cgroups(record: Record) -> None:
    for top in map(Path, record.cgroups):
        if top.exists():
            for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
