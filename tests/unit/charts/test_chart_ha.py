"""The chart's HA defaults: two controllers (a leader and a Ready standby) and two gateways, spread over nodes,
with PDBs that protect, and the controller Services reaching the leader alone."""

from __future__ import annotations

from tests.unit.charts.test_chart import named, of_kind, render


def test_two_controllers_and_two_gateways_spread_over_nodes_by_default() -> None:
    docs = render()
    for component in ("controller", "gateway"):
        deployment = named(docs, "Deployment", f"-{component}")
        assert deployment["spec"]["replicas"] == 2
        [term] = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component


def test_pdbs_keep_one_pod_and_are_left_out_for_a_single_replica() -> None:
    pdbs = of_kind(render(), "PodDisruptionBudget")
    assert sorted(p["metadata"]["name"] for p in pdbs) == ["fx-controller", "fx-gateway"]
    assert all(p["spec"] == {**p["spec"], "minAvailable": 1} and "maxUnavailable" not in p["spec"] for p in pdbs)
    single = render("controller.replicas=1", "gateway.replicas=1")
    assert of_kind(single, "PodDisruptionBudget") == []
    only_gateway = render("controller.replicas=1")
    assert [p["metadata"]["name"] for p in of_kind(only_gateway, "PodDisruptionBudget")] == ["fx-gateway"]


def test_the_controller_service_reaches_the_leader_only_and_the_lease_is_tuned_for_fast_failover() -> None:
    docs = render()
    service = named(docs, "Service", "-controller")
    assert service["spec"]["selector"]["fx.dev/leader"] == "true"
    controller = named(docs, "Deployment", "-controller")
    assert controller["spec"]["strategy"]["type"] == "RollingUpdate"  # a new pod is Ready as a standby
    env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["FX_K8S_LEASE_DURATION"], env["FX_K8S_LEASE_RENEW"], env["FX_K8S_LEASE_RETRY"]) == ("3", "1", "0.5")
    assert env["FX_K8S_CONTROLLER_DEPLOYMENT"] == controller["metadata"]["name"]  # the Lease's owner
