"""Build the cluster's binaries once into ~/.cache/fx: Kubernetes from the Go module proxy, CoreDNS, helm,
kube-router, pause.

`python -m tests.cluster.build` is idempotent: a binary already in the cache is not rebuilt, and Go's own
module and build caches make an interrupted build resume where it stopped.
"""

from __future__ import annotations

import fcntl
import os
import re
import urllib.request
from pathlib import Path

from tests.cluster import layout
from tests.cluster.shell import ensure_apt_packages, run, step

K8S_COMMANDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"]
GOPROXY = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0]


def go_env() -> dict[str, str]:
    # nice: the build shares two cores with whatever else runs; CGO off gives static binaries for scratch images.
    return {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -trimpath"}


def build_kubernetes() -> None:
    """k8s.io/kubernetes as a module: every staging module it replaces locally is pinned to its published v0.x."""
    out = layout.K8S_BIN
    if all((out / cmd).exists() for cmd in K8S_COMMANDS):
        return
    version = layout.K8S_VERSION
    src = layout.CACHE / "src" / f"k8s-{version}"
    src.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(f"{GOPROXY}/k8s.io/kubernetes/@v/{version}.mod", timeout=60) as resp:
        upstream = resp.read().decode()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", upstream, re.MULTILINE)
    published = "v0." + version.removeprefix("v1.")
    replaces = "".join(f"\t{mod} => {mod} {published}\n" for mod in staging)
    (src / "go.mod").write_text(
        f"module fxbuild/k8s\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes {version}\n\nreplace (\n{replaces})\n"
    )
    packages = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in K8S_COMMANDS]
    major, minor = version.removeprefix("v").split(".")[:2]
    # Without these the binaries call themselves v0.0.0 and version-skew checks refuse them.
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    with step(f"build Kubernetes {version} ({', '.join(K8S_COMMANDS)})"):
        run(["go", "get", *(f"{p}@{version}" for p in packages)], cwd=src, env=go_env(), quiet=True)
        out.mkdir(parents=True, exist_ok=True)
        run(
            ["nice", "-n", "10", "go", "build", "-ldflags", " ".join(ldflags), "-o", f"{out}/", *packages],
            cwd=src,
            env=go_env(),
        )


def go_install(package: str, version: str, name: str) -> Path:
    """`go install pkg@version` into the cache, under a versioned name."""
    target = layout.TOOLS_BIN / f"{name}-{version}"
    if target.exists():
        return target
    gobin = layout.CACHE / "src" / f"{name}-{version}"
    with step(f"build {name} {version}"):
        run(["nice", "-n", "10", "go", "install", f"{package}@{version}"], env={**go_env(), "GOBIN": str(gobin)})
        layout.TOOLS_BIN.mkdir(parents=True, exist_ok=True)
        (gobin / Path(package).name).rename(target)
    return target


def coredns() -> Path:
    return go_install("github.com/coredns/coredns", layout.COREDNS_VERSION, "coredns")


def helm() -> Path:
    return go_install("helm.sh/helm/v3/cmd/helm", layout.HELM_VERSION, "helm")


def kube_router() -> Path:
    return go_install(
        "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router", layout.KUBE_ROUTER_VERSION, "kube-router"
    )


def pause() -> Path:
    target = layout.TOOLS_BIN / "pause"
    source = layout.HERE / "pause.c"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        layout.TOOLS_BIN.mkdir(parents=True, exist_ok=True)
        run(["gcc", "-static", "-O2", "-s", "-o", target, source])
    return target


def kubectl() -> Path:
    return layout.K8S_BIN / "kubectl"


def main() -> None:
    """Build what is missing, one build at a time (tests.cluster.prebuild may be running one already)."""
    ensure_apt_packages()
    layout.CACHE.mkdir(parents=True, exist_ok=True)
    with (layout.CACHE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build_kubernetes()
        coredns()
        helm()
        kube_router()
        pause()


if __name__ == "__main__":
    main()
