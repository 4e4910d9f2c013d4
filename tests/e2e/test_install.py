"""fx installed from the air-gapped bundle as docs/install.md tells an operator: the bundle's load.sh fills a registry
path nothing else pushes to, helm installs the bundle's chart into a fresh namespace, the CLI comes from its wheels
offline; then `helm upgrade` of that install to a new version (new image tags, a changed value, CRDs applied first)
while a steady request loop calls its functions: no request fails, and every function, version, alias and split
is as it was."""

from __future__ import annotations

import json
import re
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    FIGURES,
    REGISTRY,
    RELEASE,
    TLS,
    VERSION,
    Chart,
    admin_kube,
    forget_pulled_images,
    release,
    run,
    tool,
)
from tests.e2e.kube import Kube, http
from tests.waiting import wait_for
from tools import images

AIRGAP = f"{REGISTRY.split('/')[0]}/airgap"  # only load.sh pushes here: what the node runs came from the bundle
# The upgrade's version: the same images under this tag and the chart packaged as this version, as a release
# would be (appVersion, hence the default image tag, moves with it).
NEXT = "0.2.1"
FX_COMPONENTS = {"controller", "gateway", "nats"}
HANDLER = """import os


def handler(event, context):
    return {{"version": {version}, "pod": os.uname().nodename}}
"""


def _timed(name: str, began: float) -> None:
    FIGURES[name] = f"{time.monotonic() - began:.1f} s"


def _unpacked_chart(tgz: Path, into: Path) -> Chart:
    """A packaged chart as helm installs it, and unpacked for its crds/ (applied first, as docs/install.md says)."""
    with tarfile.open(tgz) as archive:
        archive.extractall(into, filter="data")
    return Chart(str(tgz), [], into / "fx")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make bundle` on a connected machine, carried to the site and unpacked there."""
    dist, site = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("site")
    began = time.monotonic()
    tool("tools.bundle", "--out", dist, timeout=900)
    _timed("make bundle", began)
    [bundle] = dist.glob("fx-bundle-*.tar")
    FIGURES["bundle size"] = f"{bundle.stat().st_size / 2**20:.0f} MiB"
    with tarfile.open(bundle) as archive:
        archive.extractall(site, filter="tar")  # load.sh keeps its mode
    [loader] = site.rglob("load.sh")
    return loader.parent


@pytest.fixture(scope="module")
def airgap(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The bundle's images loaded into AIRGAP by its load.sh, its chart installed from the file into a fresh
    namespace, and the fx CLI from its wheels in a fresh venv (no index: nothing is fetched)."""
    # Else a node that ran this before runs those copies, and pulls nothing (the upgrade's tag too).
    forget_pulled_images(AIRGAP, (VERSION, NEXT))
    began = time.monotonic()
    loaded = run(site / "load.sh", "--registry", AIRGAP, *TLS, cwd=site)
    _timed("load.sh into the registry", began)
    assert "helm install" in loaded, loaded
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin/pip", "install", "-q", "--no-index", "--find-links", site / "wheels", "fx-sdk")
    tmp = tmp_path_factory.mktemp("airgap")
    bundled = _unpacked_chart(next((site / "chart").glob("fx-*.tgz")), tmp / "chart")
    admin = admin_kube()
    namespace = f"fx-airgap-{uuid.uuid4().hex[:6]}"
    admin.kubectl("create", "namespace", namespace)
    kube = Kube(admin.kubeconfig, namespace)
    try:
        began = time.monotonic()
        with release(kube, tmp, bundled, {"image.registry": AIRGAP}, fx_command=(str(venv / "bin/fx"),)) as fx:
            _timed("helm install from the bundle (--wait)", began)
            fx.kube = kube
            yield fx
    finally:
        admin.kubectl("delete", "namespace", namespace, "--wait=false")


def _project(root: Path, name: str, version: int) -> Path:
    folder = root / name
    folder.mkdir(exist_ok=True)
    (folder / "handler.py").write_text(HANDLER.format(version=version))
    (folder / "fx.yaml").write_text(
        f"functions:\n  {name}:\n    handler: handler.handler\n    runtime: python3.11\n    memory: 128\n"
        "    scale: {min: 1, max: 2}\n"
    )
    return folder


def _platform_pods(kube: Kube) -> list[dict]:
    pods = kube.get("pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") in FX_COMPONENTS]


def _images(pods: list[dict]) -> set[str]:
    return {c["image"] for p in pods for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])}


def _pull_seconds(kube: Kube, prefix: str) -> dict[str, float]:
    """Image -> seconds the kubelet took to pull it, from the pods' events."""
    pulled = {}
    for event in kube.get("events", "--field-selector", "reason=Pulled")["items"]:
        found = re.search(r'Successfully pulled image "([^"]+)" in ([\d.]+)(m?s)', event.get("message", ""))
        if found and found[1].startswith(prefix):
            pulled[found[1]] = float(found[2]) / (1000 if found[3] == "ms" else 1)
    return pulled


def test_the_bundle_installs_and_serves_from_its_own_registry(airgap) -> None:
    kube = airgap.kube
    assert {image.rsplit("/", 1)[0] for image in _images(_platform_pods(kube))} == {AIRGAP}
    airgap("deploy", cwd=_project(airgap.home, "offline", 1))
    answer = json.loads(airgap("invoke", "offline", "--data", "{}", "-o", "json").stdout)
    assert answer["version"] == 1, answer
    [pod] = [p for p in kube.get("pods")["items"] if p["metadata"]["name"] == answer["pod"]]
    assert _images([pod]) == {f"{AIRGAP}/runtime-python:{VERSION}"}
    pulls = _pull_seconds(kube, AIRGAP)
    assert pulls, "no image was pulled from the bundle's registry path"
    FIGURES["image pulls from the registry"] = ", ".join(f"{i.split('/')[-1]} {s:.1f} s" for i, s in pulls.items())
    airgap("rm", "offline")


class SteadyLoad:
    """`rate` requests a second through the gateway Service, each on a new connection, spread over `targets`, until
    stop() or `limit_s`; every outcome is kept (seconds since the start, target, status or error, body, seconds
    it took)."""

    def __init__(self, targets: list[str], rate: float = 20, limit_s: float = 480) -> None:
        self.targets, self.rate, self.limit_s = targets, rate, limit_s
        self.outcomes: list[tuple[float, str, int | str, bytes, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            for n in range(int(self.rate * self.limit_s)):
                if self._stop.wait(max(0.0, began + n / self.rate - time.monotonic())):
                    break
                pool.submit(self._one, self.targets[n % len(self.targets)], began)

    def _one(self, url: str, began: float) -> None:
        at = time.monotonic() - began
        try:
            status, body = http("POST", url, b"{}", timeout=60)
        except OSError as e:
            status, body = repr(e), b""
        self.outcomes.append((at, url, status, body, time.monotonic() - began - at))

    def failed(self) -> list[tuple[float, str, int | str, bytes, float]]:
        return [o for o in self.outcomes if o[2] != 200]


def _retag(registry: str, tag: str, new_tag: str, tmp: Path) -> None:
    """fx's images in `registry` under `new_tag` too: the same images, so no build (their version label stays)."""
    certs = []
    if TLS:  # skopeo trusts the CA files of a directory
        (tmp / "certs").mkdir()
        (tmp / "certs" / "ca.crt").write_bytes(Path(TLS[1]).read_bytes())
        certs = ["--src-cert-dir", str(tmp / "certs"), "--dest-cert-dir", str(tmp / "certs")]
    for image in images.IMAGES:
        source, target = image.ref(registry, tag), image.ref(registry, new_tag)
        run("skopeo", "copy", "-q", *certs, f"docker://{source}", f"docker://{target}")


def _kept(fx, name: str) -> dict:
    """What an upgrade must keep of a function: versions (code and config), split, aliases."""
    info = json.loads(fx("describe", name, "-o", "json").stdout)
    versions = [
        {k: v[k] for k in ("version", "digest", "config_digest", "traffic", "aliases")} for v in info["versions"]
    ]
    return {k: info[k] for k in ("latest", "traffic", "aliases", "alias_traffic", "sticky")} | {"versions": versions}


def _rolled_out(kube: Kube, tag: str) -> bool:
    """Every pod of the release (platform, warm pool, function replicas) runs `tag` and is Ready, and none is
    terminating: the old ones are gone."""
    pods = kube.get("pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return all(
        not p["metadata"].get("deletionTimestamp")
        and all(c["image"].endswith(f":{tag}") for c in p["spec"]["containers"])
        and all(s["ready"] for s in p["status"].get("containerStatuses") or [{"ready": False}])
        for p in pods
    )


@pytest.mark.timeout(900)
def test_helm_upgrade_under_load_keeps_serving_and_keeps_every_function(airgap, tmp_path: Path) -> None:
    kube = airgap.kube
    airgap("deploy", cwd=_project(airgap.home, "steady", 1))
    airgap("deploy", cwd=_project(airgap.home, "steady", 2))
    airgap("traffic", "steady", "1=50", "2=50")
    airgap("alias", "steady", "stable", "1")
    airgap("deploy", cwd=_project(airgap.home, "single", 1))
    before = {name: _kept(airgap, name) for name in ("steady", "single")}

    began = time.monotonic()
    _retag(AIRGAP, VERSION, NEXT, tmp_path)
    _timed(f"the images again as {NEXT} (skopeo copy in the registry)", began)
    tool("tools.chart", "package", "--version", NEXT, "--out", tmp_path)
    upgraded = _unpacked_chart(tmp_path / f"fx-{NEXT}.tgz", tmp_path / "chart")

    gateway = airgap.gateway
    targets = [f"{gateway}/function/steady", f"{gateway}/function/steady@stable", f"{gateway}/function/single"]
    with SteadyLoad(targets) as load:
        time.sleep(3)  # a few seconds of load before, as after
        began = time.monotonic()
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(upgraded.path / "crds"))
        kube.helm(
            "upgrade", RELEASE, upgraded.ref, "--reset-then-reuse-values", "--set", "gateway.limits.maxHeaders=120",
            "--wait", "--timeout", "300s", timeout=360,
        )  # fmt: skip
        wait_for(lambda: _rolled_out(kube, NEXT), 300, f"every pod on {NEXT}, the old ones gone")
        _timed("helm upgrade: rollout until the old pods are gone", began)
        time.sleep(3)
    failed = load.failed()
    slowest = max(o[4] for o in load.outcomes)
    FIGURES["requests during the upgrade"] = f"{len(load.outcomes)} made, {len(failed)} failed, slowest {slowest:.1f} s"
    assert len(load.outcomes) > 100
    assert not failed, [(round(o[0], 1), o[1].rsplit("/", 1)[1], o[2], o[3][:200]) for o in failed[:20]]
    for at, url, _, body, _ in load.outcomes:
        if url.endswith("@stable"):
            assert json.loads(body)["version"] == 1, (at, body)

    [gateway_pod, *_] = kube.get("pods", "-l", "app.kubernetes.io/component=gateway")["items"]
    env = {e["name"]: e.get("value") for e in gateway_pod["spec"]["containers"][0]["env"]}
    assert env["FX_MAX_HEADERS"] == "120"
    assert {name: _kept(airgap, name) for name in before} == before
    assert json.loads(airgap("invoke", "steady", "-q", "stable", "--data", "{}", "-o", "json").stdout)["version"] == 1
