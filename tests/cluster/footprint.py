"""`python -m tests.cluster.footprint`: print what the harness could leave behind on this machine (links,
addresses, routes, iptables rules, ipsets, mounts, netns, watched paths, sysctls, top-level cgroups, processes it
would start), sorted, so a diff of two prints taken around cluster-up + cluster-down shows any leftover."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.cluster import state
from tests.cluster.shell import ensure_apt_packages

# As /proc/PID/comm shows them (15 characters).
DAEMONS = ("etcd", "containerd", "containerd-shim", "kube-apiserver", "kube-controller", "kube-scheduler")
DAEMONS += ("kubelet", "kube-proxy", "kube-router", "coredns", "pause", "docker-registry")
COUNTERS = re.compile(r"\[\d+:\d+\]")


def _lines(*cmd: str) -> list[str]:
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def _counts(line: str) -> bool:
    """Rules, user chains and changed policies; an empty built-in table (iptables-nft makes them) is no trace."""
    return line.startswith("-A") or (line.startswith(":") and line.split()[1] != "ACCEPT")


def footprint() -> list[str]:
    items = [f"link {line.split()[0]}" for line in _lines("ip", "-br", "link")]
    items += [f"addr {line}" for line in _lines("ip", "-br", "addr")]
    items += [f"route {line}" for line in _lines("ip", "route")]
    for cmd in state.IPTABLES:
        # Counters change on their own; rules and chains are what matters.
        items += [f"{cmd} {COUNTERS.sub('', line)}" for line in _lines(f"{cmd}-save") if _counts(line)]
    items += [f"ipset {name}" for name in state.ipsets()]
    items += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for path in (*state.WATCHED_PATHS, "/var/run/netns"):
        if os.path.isdir(path):
            items += [f"path {path}/{name}" for name in os.listdir(path)]
        elif os.path.lexists(path):
            items.append(f"path {path}")
    items += [f"sysctl {key}={Path('/proc/sys', key).read_text().strip()}" for key in state.SYSCTLS]
    for root in state.hierarchies():
        items += [f"cgroup {root / name}" for name in os.listdir(root) if (root / name).is_dir()]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm in DAEMONS:
            items.append(f"process {comm} {pid}")
    return sorted(set(items))


if __name__ == "__main__":
    ensure_apt_packages()  # iptables, ipset, ...: a fresh machine has the tools to look with before cluster-up
    print("\n".join(footprint()))
