"""Least privilege on Kubernetes, tried from inside a function as an attacker would (issue 11): a function pod
reaches DNS, its own code on the controller's artifact port and the gateway, and nothing else: not the API
server (by its Service or the node's address), not the kubelet, not the controller's admin port, not NATS
without a grant, not another function's code or pod, not an idle pool pod; it has no API token. A pool pod
rung by anyone but the controller stays in the pool. An fx secret reaches the functions that name it (on a
pool pod and on a Deployment pod) and no other.

The probe is a function deployed with `fx deploy`, once on a warm-pool pod and once on a Deployment pod (too
big for the pool); the test gives it the addresses to try and asserts on what it reports."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.cluster import layout
from tests.e2e.conftest import RELEASE
from tests.e2e.kube import Kube, http

PROBE = """import concurrent.futures
import os
import socket
import urllib.error
import urllib.request


def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as e:
        return f"blocked: {e!r}"


def fetch(method, url):
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return f"blocked: {e!r}"


def handler(event, context):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        tcps = {name: pool.submit(tcp, host, port) for name, (host, port) in event.get("tcp", {}).items()}
        https = {name: pool.submit(fetch, method, url) for name, (method, url) in event.get("http", {}).items()}
        return {
            "tcp": {name: f.result() for name, f in tcps.items()},
            "http": {name: f.result() for name, f in https.items()},
            "files": {path: os.path.exists(path) for path in event.get("files", [])},
            "env": sorted(os.environ),
        }
"""
VICTIM = "def handler(event, context):\n    return {'victim': True}\n"
READS_SECRET = "import os\n\n\ndef handler(event, context):\n    return {'password': os.environ.get('DB_PASSWORD')}\n"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# tests/security/nats_attacks.py with the function's own NATS user, plus the same NATS without any user.
NATS_ATTACKER = """import asyncio
import os

import nats
import nats_attacks


async def anonymous():
    try:
        nc = await nats.connect(os.environ["FX_NATS_URL"], connect_timeout=2, allow_reconnect=False)
    except Exception as e:
        return f"refused: {e!r}"
    await nc.close()
    return "connected"


def handler(event, context):
    return {**asyncio.run(nats_attacks.attack()), "anonymous": asyncio.run(anonymous())}
"""


# A timeout the warm pool's pods cannot take (timeout + preStop + 5 s is more than their 60 s grace period, which no
# pod can change): such a function gets pods of its Deployment. (Memory would not do: a pool pod is resized to it.)
DEPLOYMENT_TIMEOUT = 120


def _deploy(fx, name: str, source: str, memory: int, min_replicas: int = 0, extra: str = "", timeout: int = 30) -> None:
    folder: Path = fx.home / name
    folder.mkdir(exist_ok=True)
    (folder / "handler.py").write_text(source)
    (folder / "fx.yaml").write_text(
        f"functions:\n  {name}:\n    handler: handler.handler\n    runtime: python3.11\n    memory: {memory}\n"
        f"    timeout: {timeout}\n    scale: {{min: {min_replicas}, max: 1}}\n{extra}"
    )
    fx("deploy", cwd=folder)


def _invoke(fx, name: str, event: dict) -> dict:
    status, body = http("POST", f"{fx.gateway}/2015-03-31/functions/{name}/invocations", json.dumps(event).encode(), 90)
    assert status == 200, body
    return json.loads(body)


def _digest(kube: Kube, function: str) -> str:
    return kube.get("function", function)["spec"]["artifact"].split(":", 1)[1]


def _pods(kube: Kube, selector: str) -> list[dict]:
    return [p for p in kube.get("pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]


def _running(kube: Kube, selector: str) -> list[dict]:
    """The pods with an address (a pool pod just made to replace a taken one may not have one yet)."""
    deadline = time.monotonic() + 60
    while not (found := [p for p in _pods(kube, selector) if p["status"].get("podIP")]):
        assert time.monotonic() < deadline, f"no pod with an address for {selector}"
        time.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def victim(kube: Kube, fx) -> str:
    """Another function, kept running (scale.min 1) so its pod is there to be aimed at."""
    _deploy(fx, "victim", VICTIM, 128, min_replicas=1)
    assert _invoke(fx, "victim", {}) == {"victim": True}
    return "victim"


def _targets(kube: Kube, victim: str) -> dict:
    """What an attacker would aim at, as the cluster names it."""
    api = Kube(kube.kubeconfig, "default")
    service = api.get("service", "kubernetes")["spec"]
    (subset,) = api.get("endpoints", "kubernetes")["subsets"]
    node = kube.get("nodes")["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    controller = f"{RELEASE}-controller"
    return {
        "tcp": {
            "kubernetes Service": [service["clusterIP"], service["ports"][0]["port"]],
            "API server on its own address": [subset["addresses"][0]["ip"], subset["ports"][0]["port"]],
            "kubelet": [node_ip, 10250],
            "controller admin port": [controller, 8081],
            "NATS without a grant": [f"{RELEASE}-nats", 4222],
            "another function's pod": [_running(kube, f"fx.dev/function={victim}")[0]["status"]["podIP"], 8080],
            "an idle pool pod": [_running(kube, "fx.dev/pool=true")[0]["status"]["podIP"], 8080],
        },
        "http": {
            "another function's code": [
                "GET",
                f"http://{controller}:8082/artifacts/sha256-{_digest(kube, victim)}.zip",
            ],
            "another function through the gateway": ["POST", f"http://{RELEASE}-gateway:8080/function/{victim}"],
        },
        "files": [f"{TOKEN_DIR}/token"],
    }


@pytest.mark.parametrize(
    ("probe", "timeout", "pod_prefix"),
    [("probe-pool", 30, "fx-pool-"), ("probe-pod", DEPLOYMENT_TIMEOUT, "fx-probe-pod-v1-")],
)
def test_a_function_pod_reaches_only_what_it_needs(kube: Kube, fx, victim, probe, timeout, pod_prefix) -> None:
    _deploy(fx, probe, PROBE, 128, timeout=timeout)
    _invoke(fx, probe, {})  # its pod taken (or made) first, so an idle pool pod aimed at is not itself
    (pod,) = _pods(kube, f"fx.dev/function={probe}")
    assert pod["metadata"]["name"].startswith(pod_prefix)
    targets = _targets(kube, victim)
    own = ["GET", f"http://{RELEASE}-controller:8082/artifacts/sha256-{_digest(kube, probe)}.zip"]
    report = _invoke(fx, probe, {**targets, "http": {**targets["http"], "its own code": own}})

    reached = {name: result for name, result in report["tcp"].items() if result == "connected"}
    assert reached == {}, f"a function pod reached {reached}"
    assert report["http"]["another function's code"] == 403  # the port is open to it, that zip is not
    assert report["http"]["its own code"] == 200
    assert report["http"]["another function through the gateway"] == 200  # functions call functions over HTTP
    assert report["files"] == {f"{TOKEN_DIR}/token": False}  # no service-account token: no API identity at all
    fx("rm", probe)


def test_an_idle_pool_pod_rung_by_anyone_but_the_controller_stays_in_the_pool(kube: Kube, fx) -> None:
    """The node can reach a pool pod (the kubelet probes it); its doorbell still makes nothing of the pod."""
    pool_pod = _running(kube, "fx.dev/pool=true")[0]
    ip, name = pool_pod["status"]["podIP"], pool_pod["metadata"]["name"]
    forged = {"env": {"_HANDLER": "handler.handler", "FX_ARTIFACT_URL": "http://attacker/code.zip"}}
    status, body = http("POST", f"http://{ip}:8080/_fx/specialize", json.dumps(forged).encode(), timeout=15)
    assert status == 403, body
    status, body = http("GET", f"http://{ip}:8080/_fx/health")
    assert (status, json.loads(body)) == (200, {"status": "pool"})
    assert kube.get("pod", name)["metadata"]["labels"].get("fx.dev/pool") == "true"


def test_a_replica_reached_past_the_network_policy_still_serves_only_the_gateway(kube: Kube, fx, victim) -> None:
    """The NetworkPolicy is not the only lock on a replica: the node reaches every pod (NetworkPolicy always lets
    it), and without its version's token (which only the gateways hold, from fx_routes) a replica refuses."""
    ip = _running(kube, f"fx.dev/function={victim}")[0]["status"]["podIP"]
    for path in ("/_fx/invoke", "/_fx/http/"):
        for headers in ({}, {"X-Fx-Replica-Token": "0" * 64}):
            status, body = http("POST", f"http://{ip}:8080{path}", b"{}", 15, headers=headers)
            assert status == 403, (path, headers, body)
    assert http("GET", f"http://{ip}:8080/_fx/health")[0] == 200  # the kubelet's probe stays open
    assert _invoke(fx, victim, {}) == {"victim": True}  # the gateway's calls carry the token


def test_a_secret_reaches_the_functions_that_name_it_and_no_other(kube: Kube, fx, victim) -> None:
    """One Kubernetes Secret per fx secret, taken in by the Deployments of the functions naming it; a pool pod
    gets the values in the assignment it fetches from the controller, never in anything a caller could send."""
    fx("secret", "set", "db", "DB_PASSWORD=s3cret-e2e")
    for name, timeout in (("uses-db-pool", 30), ("uses-db-pod", DEPLOYMENT_TIMEOUT)):
        _deploy(fx, name, READS_SECRET, 128, extra="    secrets: [db]\n", timeout=timeout)
        assert _invoke(fx, name, {}) == {"password": "s3cret-e2e"}, name
    _deploy(fx, "no-db", READS_SECRET, 128)
    assert _invoke(fx, "no-db", {}) == {"password": None}
    # The value is in one Secret, not in the Function, its Deployments or the pod specs.
    for kind in ("functions", "deployments", "pods"):
        assert "s3cret-e2e" not in kube.kubectl("get", kind, "-o", "json"), kind
    for name in ("uses-db-pool", "uses-db-pod", "no-db"):
        fx("rm", name)
    fx("secret", "rm", "db")


@pytest.mark.parametrize(("name", "timeout"), [("nats-attacker-pool", 30), ("nats-attacker-pod", DEPLOYMENT_TIMEOUT)])
def test_a_granted_function_gets_its_subjects_on_nats_and_nothing_of_fx(kube: Kube, fx, name, timeout) -> None:
    """NATS runs with authorization: a function with `nats: {publish: [users.created]}` publishes there with
    its own user (from its Deployment's Secret, or from its pool pod's assignment), and every attack on fx's
    subjects, buckets, streams and other inboxes is a permissions violation; without a user, no connection."""
    folder: Path = fx.home / name
    folder.mkdir(exist_ok=True)
    shutil.copy(layout.REPO / "tests" / "security" / "nats_attacks.py", folder / "nats_attacks.py")
    (folder / "requirements.txt").write_text("nats-py[nkeys]>=2.7\n")
    _deploy(fx, name, NATS_ATTACKER, 128, extra="    nats: {publish: [users.created]}\n", timeout=timeout)
    report = _invoke(fx, name, {})
    assert report.pop("pub users.created") == "ok"
    assert report.pop("anonymous").startswith("refused"), "NATS took a connection without a user"
    assert report and {attack: result for attack, result in report.items() if result != "denied"} == {}
    fx("rm", name)


@pytest.mark.parametrize("timeout", [30, DEPLOYMENT_TIMEOUT])  # a warm-pool pod, and a Deployment pod
def test_the_deployable_probe_finds_every_attack_blocked(kube: Kube, fx, victim, timeout) -> None:
    """tests/security/probe, as anyone would run it against their install, pointed at this cluster's node
    and idle pool pods."""
    folder: Path = fx.home / f"probe-{timeout}"
    shutil.copytree(layout.REPO / "tests" / "security" / "probe", folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = folder / "fx.yaml"
    config.write_text(config.read_text().replace("timeout: 30", f"timeout: {timeout}"))
    fx("deploy", cwd=folder)
    _invoke(fx, "fx-probe", {})  # its pod taken first, so the pool pods named below are others
    node = kube.get("nodes")["items"][0]
    hints = {
        "node_ip": next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"),
        "pool_ips": ",".join(p["status"]["podIP"] for p in _running(kube, "fx.dev/pool=true")),
        "controller": f"{RELEASE}-controller",
    }
    report = _invoke(fx, "fx-probe", hints)
    open_holes = {name: r["detail"] for name, r in report.items() if not name.startswith("_") and not r["blocked"]}
    assert not open_holes, json.dumps(open_holes, indent=2)
    tried = [name for name, r in report.items() if not name.startswith("_") and r.get("tried", True)]
    for attack in ("kubernetes_api", "kubelet", "controller_admin_port", "controller_artifact_port", "pool_specialize"):
        assert attack in tried, f"{attack} was not tried: {report[attack]}"
    fx("rm", "fx-probe")
