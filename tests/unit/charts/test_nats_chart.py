"""NATS in the chart: a persistent single server by default, an emptyDir only when asked (with a warning), and a
password-routed JetStream cluster whose streams and buckets the controller makes with 3 copies."""

from __future__ import annotations

from .test_chart import CHART, _run, named, render


def _nats(docs: list[dict]) -> dict:
    return named(docs, "StatefulSet", "-nats")["spec"]


def _controller_env(docs: list[dict]) -> dict[str, str]:
    container = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_jetstream_store_is_persistent_by_default_and_goes_with_the_release() -> None:
    nats = _nats(render())
    (claim,) = nats["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert nats["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}
    assert not [v for v in nats["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert nats["replicas"] == 1 and nats["serviceName"] == "fx-nats"
    assert _controller_env(render())["FX_NATS_REPLICAS"] == "1"


def test_an_emptydir_is_opt_in_and_the_notes_warn() -> None:
    nats = _nats(render("nats.persistence.enabled=false"))
    assert "volumeClaimTemplates" not in nats and "persistentVolumeClaimRetentionPolicy" not in nats
    assert {"name": "data", "emptyDir": {}} in nats["template"]["spec"]["volumes"]
    # helm template does not render NOTES.txt (the chaos e2e tier sees it from helm install): its condition here.
    text = (CHART / "templates" / "NOTES.txt").read_text()
    assert "if not .Values.nats.persistence.enabled" in text and "WARNING: nats.persistence.enabled=false" in text


def test_cluster_mode_runs_three_routed_servers_and_three_copies() -> None:
    docs = render("nats.cluster.enabled=true")
    nats = _nats(docs)
    assert nats["replicas"] == 3 and nats["podManagementPolicy"] == "Parallel"
    assert nats["serviceName"] == "fx-nats-cluster"
    headless = named(docs, "Service", "-nats-cluster")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    container = nats["template"]["spec"]["containers"][0]
    assert container["command"][container["command"].index("--server_name") + 1] == "$(POD_NAME)"
    env = _controller_env(docs)
    assert env["FX_NATS_REPLICAS"] == "3"
    assert env["FX_K8S_NATS_ROUTES"].split(",") == [f"fx-nats-{i}.fx-nats-cluster.fx.svc:6222" for i in range(3)]
    policy = named(docs, "NetworkPolicy", "fx-nats")["spec"]["ingress"]
    assert policy[1]["ports"] == [{"protocol": "TCP", "port": 6222}]
    assert policy[1]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nats"


def test_a_cluster_of_an_even_size_is_refused() -> None:
    done = _run("template", "fx", str(CHART), "--set", "nats.cluster.enabled=true", "--set", "nats.cluster.replicas=2")
    assert done.returncode != 0 and "/nats/cluster/replicas" in done.stderr
