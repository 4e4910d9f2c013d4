"""The end-to-end tier: fx on a real Kubernetes cluster.

It runs only when asked: FX_E2E=1 (the harness's cluster, `make cluster-up`, kubeconfig in its state dir)
or FX_E2E_KUBECONFIG=<path> (any cluster: kind, k3d, a real one; the fx runtime image must be loaded into
it, see tests/cluster/README.md). `make test` runs this tier on its own, after the other tests (pytest's
testpaths leave it out); run by hand without either variable, every test here is skipped with the reason.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import report
from tests.cluster import images as cluster_images
from tests.cluster import layout
from tests.e2e.kube import Kube, first_answer
from tools import images, version

HERE = Path(__file__).parent
# Where the tier publishes fx as an operator would (docs/install.md): images and the chart as OCI artifacts in a
# registry the cluster pulls from (the harness's own on its bridge; elsewhere FX_E2E_REGISTRY, FX_E2E_REGISTRY_CA).
REGISTRY = os.environ.get("FX_E2E_REGISTRY", f"{layout.REGISTRY}/fx")
REGISTRY_CA = os.environ.get("FX_E2E_REGISTRY_CA", str(layout.REGISTRY_CA))
TLS = ["--ca-file", REGISTRY_CA] if REGISTRY_CA else []  # empty: the registry's certificate is publicly trusted
CHART_REPO = f"oci://{REGISTRY.split('/')[0]}/charts"
VERSION = version.current()
RUNTIME_IMAGE = images.RUNTIME.ref(REGISTRY, VERSION)
OWN_IMAGE = f"{REGISTRY}/{layout.OWN_IMAGE.rsplit('/', 1)[1]}"  # tests/e2e/own-image, built FROM the runtime
FIGURES: dict[str, str] = {}
TARGETS: list[report.Line] = []  # figures with a target (bench.report's lines: figure, target, PASS/MISS)
RELEASE = "fx"


def leader(kube: Kube) -> str | None:
    """The pod holding the controllers' Lease (two controllers run by default: a leader and a standby); None
    while it is released (a leader that stopped gives it up at once)."""
    return kube.get("lease", f"{RELEASE}-controller")["spec"].get("holderIdentity")


def _kubeconfig() -> str | None:
    if os.environ.get("FX_E2E_KUBECONFIG"):
        return os.environ["FX_E2E_KUBECONFIG"]
    if os.environ.get("FX_E2E") == "1":
        return str(layout.KUBECONFIG)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _kubeconfig() is not None:
        return
    skip = pytest.mark.skip(reason="e2e tier: set FX_E2E=1 (after `make cluster-up`) or FX_E2E_KUBECONFIG=<path>")
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES or TARGETS:
        terminalreporter.section("e2e figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
        for line in TARGETS:  # timings are reported, not asserted: a loaded machine misses without a bug
            terminalreporter.write_line(line.text())


@dataclass
class Chart:
    """A chart to install: `ref` and `args` as helm takes them, and its unpacked copy (`path`), whose crds/ are
    applied before an install or upgrade (Helm installs CRDs only when missing and never updates them)."""

    ref: str
    args: list[str]
    path: Path


def admin_kube() -> Kube:
    """The cluster under test, in namespace default (for cluster-wide calls and helm's registry commands)."""
    kubeconfig = _kubeconfig()
    assert kubeconfig and Path(kubeconfig).exists(), f"no kubeconfig at {kubeconfig}: run `make cluster-up`"
    return Kube(kubeconfig, "default")


def run(*argv: str | Path, cwd: Path = layout.REPO, timeout: float = 600) -> str:
    """A command an operator runs (helm and kubectl have Kube's); its output, or a failure with all it said."""
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def tool(*argv: str | Path, timeout: float = 600) -> str:
    """One of the repo's operator tools (`python -m tools.images ...`), as `make` runs them."""
    return run(sys.executable, "-m", *argv, timeout=timeout)


def forget_pulled_images(registry: str = REGISTRY, tags: tuple[str, ...] = (VERSION,)) -> None:
    """The harness's node keeps what it pulled by tag, and the tag is the release's version, which a change to fx
    does not bump: drop the node's copies of fx's images under `registry` so this session's pods (IfNotPresent)
    pull what was just pushed, not the build of a session before (`make e2e` reuses a running cluster)."""
    if os.environ.get("FX_E2E_KUBECONFIG"):
        return  # another cluster's nodes are not ours to touch
    ctr = ["ctr", "-a", str(layout.STATE / "containerd/containerd.sock"), "-n", "k8s.io", "images", "rm"]
    refs = [i.ref(registry, tag) for i in images.IMAGES for tag in tags]
    subprocess.run([*ctr, *refs], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Chart:
    """fx published as an operator publishes it: the images pushed to the registry (and tests/e2e/own-image, as a
    user pushes theirs), the chart packaged for that registry and pushed there as OCI, then pulled back (its CRDs,
    for release())."""
    helm, tmp = admin_kube().helm, tmp_path_factory.mktemp("chart")
    began = time.monotonic()
    tool("tools.images", "push", "--registry", REGISTRY, "--tag", VERSION, *TLS)
    cluster_images.push_own_image(OWN_IMAGE, Path(REGISTRY_CA) if REGISTRY_CA else None)
    forget_pulled_images()
    FIGURES["push fx's images and the own-image to the registry"] = f"{time.monotonic() - began:.1f} s"
    tool("tools.chart", "package", "--registry", REGISTRY, "--out", tmp)
    helm("push", str(tmp / f"fx-{VERSION}.tgz"), CHART_REPO, *TLS)
    ref, args = f"{CHART_REPO}/fx", ["--version", VERSION, *TLS]
    helm("pull", ref, *args, "--untar", "--untardir", str(tmp / "pulled"))
    return Chart(ref, args, tmp / "pulled" / "fx")


@pytest.fixture(scope="session")
def kube(chart: Chart) -> Iterator[Kube]:
    """A fresh namespace for the session, deleted afterwards (fx published first: tests run its images)."""
    admin = admin_kube()
    namespace = f"fx-e2e-{uuid.uuid4().hex[:6]}"
    admin.kubectl("create", "namespace", namespace)
    try:
        yield Kube(admin.kubeconfig, namespace)
    finally:
        admin.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.fixture(scope="session")
def pod_url() -> Callable[..., str]:
    """http://POD_IP:PORT/path, refusing an address outside the harness's pod network when on the harness."""

    def url(ip: str, path: str, port: int = 8080) -> str:
        if not os.environ.get("FX_E2E_KUBECONFIG"):
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(layout.POD_CIDR), f"{ip} is not a pod address"
        return f"http://{ip}:{port}{path}"

    return url


@contextmanager
def release(
    kube: Kube,
    home: Path,
    chart: Chart,
    values: dict[str, str] | None = None,
    fx_command: tuple[str, ...] = (sys.executable, "-m", "fx.cli"),
) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """`chart` installed as its values say (the images: where it was packaged for, with its appVersion), with
    `values` (helm --set keys); yields a function that runs the fx CLI (`fx_command`) against its gateway Service;
    uninstalls it after."""
    sets = {"controller.drainDelay": "1", **(values or {})}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    # On a cluster that ran an older chart the API server would prune the fields the Function gained since.
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(chart.path / "crds"))
    installed = kube.helm("install", RELEASE, chart.ref, *chart.args, "--wait", "--timeout", "180s", *args, timeout=240)
    try:
        service = kube.get("service", f"{RELEASE}-gateway")
        ip = service["spec"]["clusterIP"]
        if not os.environ.get("FX_E2E_KUBECONFIG"):
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(layout.SERVICE_CIDR)
        gateway = f"http://{ip}:{service['spec']['ports'][0]['port']}"
        # Ready pods are not yet a Service: kube-proxy programs the address within its sync period.
        first_answer(f"{gateway}/healthz", time.monotonic() + 30)
        secret = kube.get("secret", f"{RELEASE}-admin-token")
        token = base64.b64decode(secret["data"]["token"]).decode()
        env = {**os.environ, "FX_GATEWAY": gateway, "FX_TOKEN": token, "FX_CONFIG": str(home / "config.json")}

        def cli(*argv: str, cwd: Path = home, check: bool = True) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([*fx_command, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            if check and done.returncode != 0:
                raise AssertionError(f"fx {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
            return done

        cli.gateway = gateway  # type: ignore[attr-defined]
        cli.home = home  # type: ignore[attr-defined]
        cli.token = token  # type: ignore[attr-defined]
        cli.notes = installed  # type: ignore[attr-defined]
        yield cli
    finally:  # the last test uninstalls it when all went well
        kube.helm("uninstall", RELEASE, "--ignore-not-found", "--wait", "--timeout", "180s", timeout=240)


@pytest.fixture(scope="module")
def fx(kube: Kube, chart: Chart, tmp_path_factory: pytest.TempPathFactory):
    """The chart installed; yields a function that runs the fx CLI against its gateway Service."""
    with release(kube, tmp_path_factory.mktemp("fx-cli"), chart) as cli:
        yield cli
