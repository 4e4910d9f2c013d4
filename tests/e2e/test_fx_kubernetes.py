"""fx on Kubernetes as an operator and a developer meet it: `helm install` of charts/fx with the locally built
images, `fx deploy` through the gateway's Service, invoke, scale to zero and back with every concurrent
request answered, a controller killed mid-deploy converging, and `fx rm` leaving nothing behind."""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import report
from tests.cluster import layout
from tests.e2e.conftest import OWN_IMAGE, RELEASE, TARGETS, Chart, leader
from tests.e2e.kube import Kube, http
from tests.waiting import wait_for

IDLE_S = 2  # the function's scale.idle_timeout: short, so scale-to-zero is seen within the test
COLD_STARTS = int(os.environ.get("FX_E2E_COLD_STARTS", "10"))  # more for steadier figures
CONCURRENT = 8
HANDLER = """import json
import os


def handler(event, context):  # the HTTP trigger's event: API Gateway HTTP API 2.0
    who = json.loads(event.get("body") or "{}").get("who", "world")
    return {"hello": who, "pod": os.uname().nodename}
"""


def _project(
    root: Path, name: str, min_replicas: int = 0, memory: int = 128, init_s: int = 0, timeout: int = 3
) -> Path:
    """`init_s`: how long importing the handler takes (a replica is not ready before)."""
    folder = root / name
    folder.mkdir(exist_ok=True)
    (folder / "handler.py").write_text(HANDLER + (f"\n\nimport time\n\ntime.sleep({init_s})\n" if init_s else ""))
    (folder / "fx.yaml").write_text(
        f"functions:\n  {name}:\n    handler: handler.handler\n    runtime: python3.11\n    memory: {memory}\n"
        f"    timeout: {timeout}\n"
        f"    scale: {{min: {min_replicas}, max: 4, idle_timeout: {IDLE_S}, concurrency: 1}}\n"
    )
    return folder


def _cold_starts(kube: Kube, gateway: str, function: str, rounds: int, callers: int) -> tuple[list[float], set[str]]:
    """From zero `rounds` times, `callers` at once each time, every one answered: the first answer's latency
    per round, and the pods that answered first."""
    cold, pods = [], set()
    for round_ in range(rounds):
        wait_for(lambda: not _pods(kube, function), IDLE_S + 60, "scale to zero")
        wait_for(lambda: _pool_full(kube), 60, "the warm pool refilled")
        with ThreadPoolExecutor(callers) as pool:
            whos = [f"r{round_}-{i}" for i in range(callers)]
            results = list(pool.map(lambda who: _call(gateway, function, who), whos))
        assert [s for s, _, _ in results] == [200] * callers, results
        assert sorted(a["hello"] for _, _, a in results) == sorted(whos)
        first = min(results, key=lambda r: r[1])
        cold.append(first[1])
        pods.add(first[2]["pod"])
    return sorted(cold), pods


def _figure(name: str, cold: list[float], p50_at_most: float | None = None, p90_at_most: float | None = None) -> None:
    """The issue's targets (issue 20) as bench.report lines; the test asserts what a user sees, not timings."""
    p90 = cold[min(len(cold) - 1, round(0.9 * (len(cold) - 1)))]
    TARGETS.append(
        report.figure(f"{name} p50 (n={len(cold)})", statistics.median(cold) * 1000, "ms", at_most=p50_at_most)
    )
    TARGETS.append(report.figure(f"{name} p90 (n={len(cold)})", p90 * 1000, "ms", at_most=p90_at_most))


def _pods(kube: Kube, function: str) -> list[dict]:
    return kube.get("pods", "-l", f"fx.dev/function={function}")["items"]


def _pool_full(kube: Kube) -> bool:
    """Every pod of the warm pool ready: a pod taken from it leaves its Deployment, which then makes a new one."""
    pool = kube.get("deployment", f"{RELEASE}-pool")
    return pool["status"].get("readyReplicas", 0) == pool["spec"]["replicas"]


def _ready_pods(kube: Kube, function: str) -> int:
    """Ready replicas of a function: pods of its Deployments and pods it took from the warm pool."""
    return sum(
        1
        for p in _pods(kube, function)
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    )


def _call(gateway: str, function: str, who: str) -> tuple[int, float, dict]:
    started = time.perf_counter()
    status, body = http("POST", f"{gateway}/function/{function}", json.dumps({"who": who}).encode(), timeout=90)
    took = time.perf_counter() - started
    return status, took, json.loads(body) if status == 200 else {"raw": body[:300]}


def test_deploy_invoke_scale_to_zero_and_back_then_delete(kube: Kube, fx) -> None:
    folder = _project(fx.home, "hello")
    out = fx("deploy", cwd=folder).stdout
    assert "hello" in out

    status, _, answer = _call(fx.gateway, "hello", "cluster")
    assert status == 200, answer
    assert answer["hello"] == "cluster"

    # kubectl sees what fx made: the Function with its version and readiness, a Deployment it owns.
    function = kube.get("function", "hello")
    assert function["spec"]["artifact"].startswith("sha256:")
    wait_for(
        lambda: kube.get("function", "hello").get("status", {}).get("latestVersion") == 1, 20, "the Function's status"
    )
    # The pod that answered is the Function's (deleting it removes the pod), restricted, with no API token.
    pod = kube.get("pod", answer["pod"])
    assert pod["metadata"]["ownerReferences"][0]["uid"] == function["metadata"]["uid"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True

    # Idle: scaled to zero, pods gone. Then from zero again, CONCURRENT callers at once, every one answered.
    # The first replica comes from the warm pool (the function fits its pods).
    cold, pods = _cold_starts(kube, fx.gateway, "hello", COLD_STARTS, CONCURRENT)
    assert all(p.startswith(f"{RELEASE}-pool-") for p in pods), pods  # specialised pool pods
    _figure("k8s cold start, warm pool", cold, p50_at_most=80, p90_at_most=150)

    # `fx logs` shows what the pods printed, after they are gone too (the controller copies their logs).
    logs = fx("logs", "hello", "--tail", "1000").stdout
    assert logs.count("START RequestId:") > COLD_STARTS * CONCURRENT and "REPORT RequestId:" in logs, logs[-2000:]

    fx("rm", "hello")
    wait_for(lambda: "hello" not in kube.kubectl("get", "functions", "-o", "name"), 60, "the Function gone")
    wait_for(lambda: not kube.get("deployments", "-l", "fx.dev/function=hello")["items"], 60, "its Deployments gone")
    wait_for(lambda: not _pods(kube, "hello"), 60, "its pods gone")
    status, _ = http("POST", f"{fx.gateway}/function/hello", b"{}", timeout=10)
    assert status == 404


def test_cold_start_of_a_function_bigger_than_the_pool_pods(kube: Kube, fx) -> None:
    """512 MB is more than the pool's 256 MB pods: a pool pod is resized in place to 512 MB and becomes its replica."""
    fx("deploy", cwd=_project(fx.home, "big", memory=512))
    cold, pods = _cold_starts(kube, fx.gateway, "big", COLD_STARTS, 1)
    assert all(p.startswith(f"{RELEASE}-pool-") for p in pods), pods
    _figure("k8s cold start, pool pod resized to 512 MB", cold)  # the target: from the pool, asserted above
    status, _, answer = _call(fx.gateway, "big", "resized")
    assert status == 200, answer
    pod = kube.get("pod", answer["pod"])
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "512Mi"
    wait_for(  # the kubelet's word (its status follows its next look at the container, within seconds)
        lambda: (
            kube.get("pod", answer["pod"])["status"]["containerStatuses"][0]["resources"]["limits"]["memory"] == "512Mi"
        ),
        30,
        "the kubelet to report the 512 MB limit",
    )
    fx("rm", "big")


def test_a_function_smaller_than_the_pool_pods_gets_its_own_memory_limit(kube: Kube, fx) -> None:
    """128 MB in a 256 MB pool pod: the pod is resized to the function's 128 MB, so 160 MB is more than it has,
    as in a pod of its own (and on Lambda), though the pool's pods could hold it."""
    folder = _project(fx.home, "small")
    (folder / "handler.py").write_text(
        "import json\nimport os\n\n\ndef handler(event, context):\n"
        "    held = b'x' * (json.loads(event.get('body') or '{}').get('mb', 0) << 20)\n"
        "    return {'pod': os.uname().nodename, 'held': len(held) >> 20}\n"
    )
    wait_for(lambda: _pool_full(kube), 60, "the warm pool full")
    fx("deploy", cwd=folder)
    status, body = http("POST", f"{fx.gateway}/function/small", b'{"mb": 1}', timeout=90)
    assert status == 200, body
    pod = json.loads(body)["pod"]
    assert pod.startswith(f"{RELEASE}-pool-"), pod
    wait_for(
        lambda: kube.get("pod", pod)["status"]["containerStatuses"][0]["resources"]["limits"]["memory"] == "128Mi",
        30,
        "the kubelet to report the function's 128 MB limit",
    )
    status, body = http("POST", f"{fx.gateway}/function/small", b'{"mb": 160}', timeout=90)
    assert status == 502, body  # out of memory: the kernel killed it
    status, body = http("POST", f"{fx.gateway}/function/small", b'{"mb": 64}', timeout=90)
    assert status == 200 and json.loads(body)["held"] == 64, body  # within its memory: served again
    fx("rm", "small")


def test_cold_start_of_a_function_the_pool_cannot_take(kube: Kube, fx) -> None:
    """A 120 s timeout outlasts the pool pods' grace period (which no pod can change): its replicas are pods of
    its version's Deployment."""
    fx("deploy", cwd=_project(fx.home, "long", timeout=120))
    cold, pods = _cold_starts(kube, fx.gateway, "long", COLD_STARTS, 1)
    assert all(p.startswith("fx-long-v1-") for p in pods), pods
    _figure("k8s cold start, Deployment pod", cold, p50_at_most=1000)
    fx("rm", "long")


def test_a_function_with_its_own_image(kube: Kube, fx) -> None:
    """Code in an image built FROM fx's runtime image (tests/e2e/own-image), named in fx.yaml: no zip at all."""
    folder = fx.home / "own"
    folder.mkdir()
    (folder / "fx.yaml").write_text(
        f"functions:\n  own:\n    image: {OWN_IMAGE}\n    handler: app.handler\n    scale: {{idle_timeout: {IDLE_S}}}\n"
    )
    deployed = fx("deploy", cwd=folder)
    assert f"own: version 1 deployed ({OWN_IMAGE})" in deployed.stdout and "uploading" not in deployed.stderr
    assert kube.get("function", "own")["spec"]["image"] == OWN_IMAGE
    status, body = http("GET", f"{fx.gateway}/function/own?who=kubernetes", timeout=90)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["from"] == "own image" and answer["task_root"] == "/var/task"
    pod = kube.get("pod", answer["pod"])
    assert pod["spec"]["containers"][0]["image"] == OWN_IMAGE and answer["pod"].startswith("fx-own-v1-")

    wait_for(lambda: not _pods(kube, "own"), IDLE_S + 60, "scale to zero")
    logs = fx("logs", "own").stdout
    assert "own image says hello to kubernetes" in logs and "REPORT RequestId:" in logs, logs

    # The same image again is no new version; the API server and fx refuse a spec with both or neither.
    assert "unchanged" in fx("deploy", cwd=folder).stdout
    both = {**kube.get("function", "own"), "metadata": {"name": "own-both"}}
    both["spec"]["artifact"] = "sha256:" + "0" * 64
    with pytest.raises(AssertionError, match="exactly one of 'artifact'"):
        kube.apply(json.dumps(both))
    fx("rm", "own")
    wait_for(lambda: not kube.get("deployments", "-l", "fx.dev/function=own")["items"], 60, "its Deployment gone")


def test_a_custom_runtime_serves_the_lambda_runtime_api_in_a_pod(kube: Kube, fx) -> None:
    """`runtime: provided`: the zip's `bootstrap` (here AWS's runtime interface client from PyPI) polls the
    Runtime API the replica serves, in a warm-pool pod as for any function that fits the pool."""
    folder = layout.REPO / "tests/integration/functions/awslambdaric_bootstrap"
    fx("deploy", cwd=folder)
    status, body = http("POST", f"{fx.gateway}/2015-03-31/functions/ric-app/invocations", b'{"n": 2}', timeout=90)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["event"] == {"n": 2} and answer["function_name"] == "ric-app"
    assert answer["runtime_api"].startswith("127.0.0.1:"), "the replica's own Runtime API, inside the pod"
    rid = answer["request_id"]
    wait_for(lambda: f"REPORT RequestId: {rid}" in fx("logs", "ric-app").stdout, 10, "its REPORT line in fx logs")
    fx("rm", "ric-app")


def test_events_a_chain_and_an_async_call_through_the_charts_nats(kube: Kube, fx) -> None:
    """examples/signup: create-user publishes users.created on the chart's NATS (FX_NATS_URL in its pod);
    welcome-mail, triggered by that subject through the gateway, logs the mail. Then an async call (the Invoke
    API's Event type), stored in the chart's JetStream before the 202, reaches welcome-mail too."""
    fx("deploy", cwd=layout.REPO / "examples" / "signup")
    user = json.dumps({"email": "ada@example.com"}).encode()
    status, body = http("POST", f"{fx.gateway}/function/create-user", user, timeout=90)
    assert status == 201, body

    def mailed(to: str) -> bool:
        return f"welcome mail sent to {to}" in fx("logs", "welcome-mail").stdout

    wait_for(lambda: mailed("ada@example.com"), 60, "the welcome mail in welcome-mail's log")
    event = {"data": json.dumps({"email": "bob@example.com", "id": "u-2"})}
    invoke = f"{fx.gateway}/2015-03-31/functions/welcome-mail/invocations"
    status, _ = http("POST", invoke, json.dumps(event).encode(), timeout=30, headers={"X-Amz-Invocation-Type": "Event"})
    assert status == 202
    wait_for(lambda: mailed("bob@example.com"), 60, "the async call run")
    fx("rm", "create-user")
    fx("rm", "welcome-mail")


def test_a_function_applied_with_kubectl_is_deployed_and_bad_specs_are_refused(kube: Kube, fx) -> None:
    folder = _project(fx.home, "gitops")
    fx("deploy", cwd=folder)
    applied = kube.get("function", "gitops")
    # GitOps: change the spec in Kubernetes; fx makes version 2 of it.
    kube.kubectl("patch", "function", "gitops", "--type=merge", "-p", '{"spec": {"env": {"FROM": "kubectl"}}}')
    wait_for(lambda: kube.get("function", "gitops").get("status", {}).get("latestVersion") == 2, 30, "version 2")
    status, _, answer = _call(fx.gateway, "gitops", "git")
    assert status == 200 and answer["hello"] == "git"
    # The API server refuses a bad spec with the rule's message, and nothing changes.
    bad = {**applied, "spec": {**applied["spec"], "scale": {"min": 5, "max": 1}}}
    bad["metadata"] = {"name": "gitops-bad"}
    with pytest.raises(AssertionError, match=r"scale\.min must not be greater than scale\.max"):
        kube.apply(json.dumps(bad))
    with pytest.raises(AssertionError, match="DNS-1123"):
        kube.apply(json.dumps({**bad, "metadata": {"name": "Bad_Name"}, "spec": applied["spec"]}))
    kube.kubectl("delete", "function", "gitops")
    wait_for(lambda: "gitops" not in fx("ls").stdout, 30, "the function deleted in fx")


def test_a_version_that_cannot_initialise_never_takes_traffic(kube: Kube, fx) -> None:
    """The readiness gate on pods: `fx deploy` of a broken version (a warm-pool pod) and a kubectl patch making
    one the pool cannot take (a Deployment pod that crashes) both leave the traffic on version 1."""
    folder = _project(fx.home, "gated")
    fx("deploy", cwd=folder)
    assert _call(fx.gateway, "gated", "before")[0] == 200
    (folder / "handler.py").write_text("import module_that_is_not_there\n" + HANDLER)
    done = fx("deploy", cwd=folder, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gated: version 2 failed to initialise: Runtime.ImportModuleError" in done.stderr
    assert "traffic stayed on version 1 (100 %)" in done.stderr
    assert _call(fx.gateway, "gated", "after")[0] == 200

    def status() -> dict:
        return kube.get("function", "gated").get("status", {})

    wait_for(lambda: status().get("latestVersionState") == "Failed", 30, "the Function to say Failed")
    ready = status()["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "VersionFailed") and status()["traffic"] == "1:100"
    assert "version 2 failed to initialise (Runtime.ImportModuleError" in ready["message"]

    # kubectl: version 1's code under a handler it does not have, with a timeout longer than the pool pods' grace
    # period (a Deployment pod).
    code = json.loads(fx("versions", "gated", "-o", "json").stdout)[0]["spec"]["artifact"]
    patch = {"spec": {"artifact": code, "handler": "handler.missing", "timeout": 120}}
    kube.kubectl("patch", "function", "gated", "--type=merge", "-p", json.dumps(patch))
    wait_for(
        lambda: status().get("latestVersion") == 3 and status().get("latestVersionState") == "Failed",
        120,
        "version 3 Failed",
    )
    assert "Runtime.HandlerNotFound" in status()["conditions"][0]["message"] and status()["traffic"] == "1:100"
    assert _call(fx.gateway, "gated", "still")[0] == 200
    versions = json.loads(fx("versions", "gated", "-o", "json").stdout)
    assert [(v["state"], v["traffic"]) for v in versions] == [("Ready", 100), ("Failed", 0), ("Failed", 0)]
    fx("rm", "gated")


def test_the_controller_converges_after_being_killed_mid_deploy(kube: Kube, fx) -> None:
    folder = _project(fx.home, "survivor", min_replicas=1, init_s=10)
    controller = leader(kube)
    fx("deploy", cwd=folder)
    # Mid-deploy: its replica's pod exists (made, or taken from the pool) and its handler takes 10 s to import,
    # so the leader dies while bringing the version up, not after.
    wait_for(lambda: _pods(kube, "survivor"), 30, "survivor's replica starting")
    kube.kubectl("delete", "pod", controller, "--grace-period=0", "--force")
    wait_for(lambda: leader(kube) not in (None, controller), 120, "another controller leading")
    # scale.min 1: the new leader brings the version back to one ready replica, and it answers.
    wait_for(lambda: _ready_pods(kube, "survivor") == 1, 90, "one ready replica")
    status, _, answer = _call(fx.gateway, "survivor", "again")
    assert status == 200 and answer["hello"] == "again", (status, answer)
    fx("rm", "survivor")


def test_helm_upgrade_keeps_the_token_and_the_functions(kube: Kube, fx, chart: Chart) -> None:
    token = kube.get("secret", f"{RELEASE}-admin-token")["data"]["token"]
    fx("deploy", cwd=_project(fx.home, "steady"))
    assert _call(fx.gateway, "steady", "before")[0] == 200
    upgrade = ["upgrade", RELEASE, chart.ref, *chart.args, "--reuse-values", "--set", "gateway.holdTimeout=45"]
    kube.helm(*upgrade, "--wait", timeout=240)
    assert kube.get("secret", f"{RELEASE}-admin-token")["data"]["token"] == token  # the CLI's login still works
    status, _, answer = _call(fx.gateway, "steady", "after")
    assert status == 200 and answer["hello"] == "after"
    assert "steady" in fx("ls").stdout
    fx("rm", "steady")


def test_scale_down_under_load_loses_no_request(kube: Kube, fx) -> None:
    """Load at 4 callers scales the version up; at 1 caller it scales down (after the 10 s stable window)
    while requests keep coming: each pod leaves routing before it stops, so every request is answered."""
    fx("deploy", cwd=_project(fx.home, "steady-load"))
    results: list[int] = []

    def caller(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            results.append(_call(fx.gateway, "steady-load", "x")[0])

    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):  # rounds of 4 s until it has scaled up (a busy machine reports load later)
            list(pool.map(caller, [4.0] * 4))
            if (peak := _ready_pods(kube, "steady-load")) > 1:
                break
    assert peak > 1
    # One caller: the autoscaler scales down meanwhile, after its 10 s stable window and the pod's drain (25 s
    # sufficed on a quiet machine, not on a busy one: the load keeps coming until it has, for at most 60 s).
    deadline = time.monotonic() + 60
    while (now := _ready_pods(kube, "steady-load")) >= peak and time.monotonic() < deadline:
        caller(5.0)
    assert now < peak
    assert results and set(results) == {200}, f"{len(results)} requests, statuses {sorted(set(results))}"
    fx("rm", "steady-load")


def test_helm_uninstall_leaves_no_function_behind(kube: Kube, fx) -> None:
    """Helm keeps CRDs, so the chart's pre-delete hook deletes the Functions and waits for what they own."""
    fx("deploy", cwd=_project(fx.home, "leftover"))
    assert _call(fx.gateway, "leftover", "x")[0] == 200
    assert _ready_pods(kube, "leftover") == 1
    kube.helm("uninstall", RELEASE, "--wait", "--timeout", "180s", timeout=240)
    assert kube.get("functions")["items"] == []
    assert not kube.get("deployments", "-l", "app.kubernetes.io/component=function")["items"]
    wait_for(lambda: not _pods(kube, "leftover"), 60, "the function's pods gone")
    assert not kube.get("jobs")["items"], "the hook's Job is removed once it succeeded"
    # The NATS identities the controller made (authority, gateway's and functions' users) go too.
    assert not kube.get("secrets", "-l", "app.kubernetes.io/component=nats-identity")["items"]
