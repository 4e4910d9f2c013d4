"""High availability as an operator meets it with the chart's defaults: two controllers (a leader and a Ready
standby, the Services reaching the leader alone) and two gateways; a forced delete of the leader moves the
leadership in seconds with nothing lost (a held request and a steady loop answered, the functions intact,
`fx deploy` working); `helm uninstall` removes the Lease and no pod ends in Error."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from datetime import UTC, datetime

from tests.e2e.conftest import FIGURES, RELEASE
from tests.e2e.kube import Kube, http
from tests.e2e.test_fx_kubernetes import _call, _pods, _project, _ready_pods
from tests.waiting import wait_for

LEADER = "fx.dev/leader"


def _controllers(kube: Kube) -> list[dict]:
    pods = kube.get("pods", "-l", "app.kubernetes.io/component=controller")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _leaders(kube: Kube) -> list[str]:
    return [p["metadata"]["name"] for p in _controllers(kube) if p["metadata"].get("labels", {}).get(LEADER) == "true"]


def _admin(kube: Kube) -> dict[str, str]:
    token = base64.b64decode(kube.get("secret", f"{RELEASE}-admin-token")["data"]["token"]).decode()
    return {"Authorization": f"Bearer {token}"}


def test_one_leader_serves_and_the_standby_is_ready(kube: Kube, fx) -> None:
    wait_for(lambda: len(_leaders(kube)) == 1, 30, "one controller labelled leader")
    controllers = _controllers(kube)
    assert len(controllers) == 2 and all(_ready(p) for p in controllers)  # `helm --wait` saw both Ready
    [leader] = _leaders(kube)
    ip = next(p["status"]["podIP"] for p in controllers if p["metadata"]["name"] == leader)
    endpoints = kube.get("endpoints", f"{RELEASE}-controller")
    assert [a["ip"] for s in endpoints["subsets"] for a in s.get("addresses", [])] == [ip]
    assert len(kube.get("pods", "-l", "app.kubernetes.io/component=gateway")["items"]) == 2
    assert {p["spec"]["minAvailable"] for p in kube.get("pdb")["items"]} == {1}


def test_a_forced_delete_of_the_leader_fails_over_in_seconds_and_loses_nothing(kube: Kube, fx) -> None:
    fx("deploy", cwd=_project(fx.home, "steady-ha", min_replicas=1))
    fx("deploy", cwd=_project(fx.home, "zero-ha"))
    assert _call(fx.gateway, "zero-ha", "warm-up")[0] == 200
    wait_for(lambda: not _pods(kube, "zero-ha"), 60, "zero-ha scaled to zero")
    wait_for(lambda: _ready_pods(kube, "steady-ha") == 1, 60, "steady-ha warm")
    headers = _admin(kube)
    [leader] = _leaders(kube)

    statuses: list[int] = []
    failures: list[dict] = []
    stop = threading.Event()

    def steady() -> None:  # a bounded loop of sync calls through the failover
        for _ in range(2000):
            if stop.is_set():
                return
            status, _, answer = _call(fx.gateway, "steady-ha", "loop")
            statuses.append(status)
            if status != 200:
                failures.append(answer)
            time.sleep(0.05)

    held: list[int] = []
    loop = threading.Thread(target=steady)
    loop.start()
    deleted_at, deleted_wall = time.monotonic(), datetime.now(UTC)
    kube.kubectl("delete", "pod", leader, "--force", "--grace-period=0")
    caller = threading.Thread(target=lambda: held.append(_call(fx.gateway, "zero-ha", "held")[0]))
    caller.start()  # a function at zero while no controller leads: held until one does

    def serving() -> bool:
        try:
            status, body = http("GET", f"{fx.gateway}/system/functions", headers=headers, timeout=1)
        except OSError:
            return False
        return status == 200 and b"steady-ha" in body

    wait_for(serving, 60, "a new leader serving the admin API", interval=0.05)
    failover = time.monotonic() - deleted_at
    caller.join(90)
    wait_for(lambda: len(statuses) > 20, 30, "the loop going on after the failover")
    stop.set()
    loop.join(60)
    lease = kube.get("lease", f"{RELEASE}-controller")["spec"]
    moved = (datetime.fromisoformat(lease["acquireTime"].replace("Z", "+00:00")) - deleted_wall).total_seconds()
    FIGURES["controller failover (forced delete of the leader)"] = (
        f"Lease taken by the standby after {moved:.1f} s, admin API served through the gateway after"
        f" {failover:.1f} s (Lease 3 s; before: 17-18.5 s with a 15 s Lease and no standby)"
    )
    assert held == [200]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} calls, {len(failures)} failed: {failures[:5]}"
    [new] = _leaders(kube)
    assert new != leader
    listed = fx("ls").stdout
    assert "steady-ha" in listed and "zero-ha" in listed
    folder = _project(fx.home, "steady-ha", min_replicas=1)
    (folder / "handler.py").write_text((folder / "handler.py").read_text() + "\n# v2\n")
    fx("deploy", cwd=folder)
    assert len(json.loads(fx("versions", "steady-ha", "-o", "json").stdout)) == 2
    fx("rm", "steady-ha")
    fx("rm", "zero-ha")


def _watched(output: str) -> list[dict]:
    """The pods of a `kubectl get pods -w -o json` stream (one JSON document per event; the last one may be cut
    short by stopping the watch)."""
    decoder, pods, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(output, at)) < len(output):
        try:
            pod, at = decoder.raw_decode(output, at)
        except json.JSONDecodeError:
            break
        pods.append(pod)
    return pods


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _failed(pod: dict) -> list[str]:
    """How `pod` ended badly, if it did: phase Failed, or a container that terminated with an error."""
    name, status = pod["metadata"]["name"], pod.get("status", {})
    bad = [f"{name}: phase Failed"] if status.get("phase") == "Failed" else []
    for container in status.get("containerStatuses", []):
        ended = container.get("state", {}).get("terminated")
        if ended and ended.get("exitCode"):
            bad.append(f"{name}/{container['name']}: {ended.get('reason')} (exit {ended['exitCode']})")
    return bad


def test_helm_uninstall_removes_the_lease_and_no_pod_ends_in_error(kube: Kube, fx) -> None:
    fx("deploy", cwd=_project(fx.home, "bye-ha", min_replicas=1))
    wait_for(lambda: _ready_pods(kube, "bye-ha") == 1, 60, "bye-ha warm")
    assert kube.get("lease", f"{RELEASE}-controller")["spec"]["holderIdentity"]
    # The release's pods only: the session's namespace also holds other tests' own pods.
    ours = f"app.kubernetes.io/instance={RELEASE}"
    argv = [kube.kubectl_bin, "--kubeconfig", kube.kubeconfig, "-n", kube.namespace, "get", "pods", "-l", ours]
    argv += ["-w", "-o", "json"]
    events = fx.home / "uninstall-watch.json"  # files, not pipes: a full pipe would stall the watch
    said = fx.home / "uninstall-controllers.log"  # what the controllers log while they stop, for a failure
    logs = [kube.kubectl_bin, "--kubeconfig", kube.kubeconfig, "-n", kube.namespace, "logs", "-f", "--prefix"]
    logs += ["--timestamps", "--tail=0", "-l", f"{ours},app.kubernetes.io/component=controller"]
    with events.open("w") as out, said.open("w") as log_out:
        followers = [subprocess.Popen(argv, stdout=out), subprocess.Popen(logs, stdout=log_out, stderr=log_out)]
        try:
            kube.helm("uninstall", RELEASE, "--wait", "--timeout", "180s", timeout=240)
            wait_for(lambda: not kube.get("pods", "-l", ours)["items"], 90, "every pod of the release gone")
        finally:
            for follower in followers:
                follower.terminate()
                follower.wait(10)
    seen = _watched(events.read_text())
    names = {p["metadata"]["name"] for p in seen}
    functions = {p["metadata"].get("labels", {}).get("fx.dev/function") for p in seen}
    assert any(n.startswith(f"{RELEASE}-gateway-") for n in names) and "bye-ha" in functions, names
    bad = sorted({line for pod in seen for line in _failed(pod)})
    assert not bad, "\n".join(bad) + "\nthe controllers logged:\n" + "\n".join(said.read_text().splitlines()[-60:])
    # The Lease is owned by the controller Deployment: the garbage collector removes it with it.
    wait_for(lambda: not kube.get("leases")["items"], 60, "the Lease gone")
