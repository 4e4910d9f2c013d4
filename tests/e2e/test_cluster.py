"""The cluster itself: a Ready node, service names resolved by CoreDNS from inside a pod, and NetworkPolicies
enforced (on the harness by kube-router's firewall), so the chart's policies are proven, not only rendered."""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.conftest import RUNTIME_IMAGE
from tests.e2e.kube import Kube
from tests.e2e.manifests import handler_configmap, pod, runtime_pod_spec, service

RESOLVE = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"
ROUTES = "print(open('/proc/net/route').read())"
# Connects to argv[1]:8080 until it gets through or argv[2] seconds pass; prints what happened last.
CONNECT = """import socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        socket.create_connection((sys.argv[1], 8080), timeout=2).close()
        print("connected")
        break
    except OSError as e:
        if time.monotonic() > deadline:
            print(f"blocked: {e!r}")
            break
        time.sleep(0.2)
"""


def run_to_completion(
    kube: Kube, name: str, configmap: str, command: list[str], labels: dict[str, str] | None = None
) -> str:
    """Run `command` in a pod of the runtime image and return what it printed."""
    spec = runtime_pod_spec(RUNTIME_IMAGE, configmap, name)
    container = spec["containers"][0]
    container.pop("readinessProbe")
    container["command"] = command
    spec["restartPolicy"] = "Never"
    kube.apply(pod(name, spec, labels))
    kube.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "--timeout=90s", timeout=100)
    return kube.kubectl("logs", name)


def test_every_node_is_ready(kube: Kube) -> None:
    nodes = kube.get("nodes")["items"]
    assert nodes
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", f"node {node['metadata']['name']} is not Ready"


def test_a_pod_resolves_a_service_name(kube: Kube) -> None:
    kube.apply(handler_configmap("dns-code"))
    kube.apply(service("dns-target"))
    cluster_ip = kube.get("service", "dns-target")["spec"]["clusterIP"]
    # The short name goes through the pod's search path, as an application would use it.
    printed = run_to_completion(kube, "resolver", "dns-code", ["python3", "-c", RESOLVE, "dns-target"])
    assert printed.strip() == cluster_ip


@pytest.mark.skipif(bool(os.environ.get("FX_E2E_KUBECONFIG")), reason="a property of the harness's own network")
def test_pods_have_no_route_off_the_node(kube: Kube) -> None:
    kube.apply(handler_configmap("route-code"))
    table = run_to_completion(kube, "routes", "route-code", ["python3", "-c", ROUTES]).split("\n")[1:]
    destinations = {line.split()[1] for line in table if line.strip()}
    assert destinations, "no routes at all"
    assert "00000000" not in destinations, "the pod has a default route"


def test_network_policies_are_enforced(kube: Kube) -> None:
    """A pod selected by a policy admits only the sources it names: one client is let through, the other refused."""
    kube.apply(handler_configmap("guarded-code"))
    kube.apply(pod("guarded", runtime_pod_spec(RUNTIME_IMAGE, "guarded-code", "guarded")))
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "guarded"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "guarded"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "allowed"}}}], "ports": [{"port": 8080}]}],
        },
    }
    kube.apply(json.dumps(policy))
    ip = kube.wait_ready("guarded")["status"]["podIP"]  # the kubelet's probes still get through: node traffic
    # The admitted client may start before the engine has its address: it tries for a while. Once it got
    # through, the policy is in force, so the other client gets a single short chance.
    allowed = run_to_completion(
        kube, "allowed-client", "guarded-code", ["python3", "-c", CONNECT, ip, "30"], {"role": "allowed"}
    )
    other = run_to_completion(kube, "other-client", "guarded-code", ["python3", "-c", CONNECT, ip, "0"], {"role": "x"})
    assert allowed.strip() == "connected"
    assert other.startswith("blocked"), other
