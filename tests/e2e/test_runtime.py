"""fx's runtime image on the cluster: a pod answers on its pod IP, and a Deployment scales from zero."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.e2e.conftest import FIGURES, RUNTIME_IMAGE
from tests.e2e.kube import Kube, first_answer, http
from tests.e2e.manifests import deployment, handler_configmap, pod, runtime_pod_spec


def test_a_runtime_pod_answers_health_and_invoke_on_its_pod_ip(kube: Kube, pod_url: Callable[..., str]) -> None:
    kube.apply(handler_configmap("echo-code"))
    kube.apply(pod("echo", runtime_pod_spec(RUNTIME_IMAGE, "echo-code", "echo")))
    ip = kube.wait_ready("echo")["status"]["podIP"]

    status, body = http("GET", pod_url(ip, "/_fx/health"))
    assert (status, json.loads(body)) == (200, {"status": "ready"})

    status, body = http("POST", pod_url(ip, "/_fx/invoke"), json.dumps({"n": 1}).encode())
    result = json.loads(body)
    assert status == 200
    assert result["echo"] == {"n": 1}
    assert result["function"] == "echo"
    assert result["pod"] == "echo"


def test_a_deployment_scales_from_zero_to_an_answer(kube: Kube, pod_url: Callable[..., str]) -> None:
    kube.apply(handler_configmap("scale-code"))
    kube.apply(deployment("scaler", runtime_pod_spec(RUNTIME_IMAGE, "scale-code", "scaler"), replicas=0))
    assert kube.get("pods", "-l", "app=scaler")["items"] == []

    began = time.monotonic()
    deadline = began + 60
    kube.kubectl("scale", "deployment/scaler", "--replicas=1")
    ip = ""
    while not ip:
        assert time.monotonic() < deadline, "no pod IP within 60 s"
        pods = kube.get("pods", "-l", "app=scaler")["items"]
        ip = pods[0]["status"].get("podIP", "") if pods else ""
        if not ip:
            time.sleep(0.05)
    status, _ = first_answer(pod_url(ip, "/_fx/health"), deadline)
    latency = time.monotonic() - began
    FIGURES["Deployment 0->1 to first HTTP answer"] = f"{latency:.2f} s"
    print(f"0->1 latency: {latency:.2f} s")
    assert status == 200
    assert latency < 30


def test_a_runtime_pod_stops_at_once_on_sigterm(kube: Kube) -> None:
    """python is PID 1 in the image: unless the runtime handles SIGTERM, every delete waits the full grace."""
    kube.apply(handler_configmap("stop-code"))
    spec = runtime_pod_spec(RUNTIME_IMAGE, "stop-code", "stopper")
    spec["terminationGracePeriodSeconds"] = 30
    kube.apply(pod("stopper", spec))
    kube.wait_ready("stopper")
    began = time.monotonic()
    kube.kubectl("delete", "pod", "stopper", "--wait=true", "--timeout=60s", timeout=70)
    took = time.monotonic() - began
    FIGURES["runtime pod delete (grace 30 s)"] = f"{took:.2f} s"
    assert took < 10
