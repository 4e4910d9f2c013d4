"""The Helm chart as an operator meets it: `helm lint` and `helm template` clean, and the rendered manifests
hold the security settings the issue asks for (non-root, read-only root, no capabilities, seccomp, no token
in function pods, namespaced minimal RBAC, NetworkPolicy around function pods)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from fx.models import MAX_SECRET_REFS, FunctionSpec, JetStreamTrigger, KvTrigger, ScaleSpec, TriggerSpec
from fx.protocol import PYTHON_RUNTIMES, RUNTIMES
from fx_controller.backends.kubernetes.config import KubeConfig
from fx_controller.settings import parse

from tools.chart import helm

CHART = Path(__file__).resolve().parents[3] / "charts" / "fx"
CRD = CHART / "crds" / "functions.fx.dev.yaml"


def _helm() -> str:
    found = helm()
    if not found:
        pytest.skip(
            "no helm binary yet: neither ~/.cache/fx/bin/helm-v* nor helm on PATH (the e2e tier of `make test`"
            " builds helm, then runs these tests again)"
        )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_helm(), *args], capture_output=True, text=True, timeout=60)


def render(*sets: str) -> list[dict]:
    flags = [f for s in sets for f in ("--set", s)]
    done = _run("template", "fx", str(CHART), "--namespace", "fx", *flags)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, suffix: str) -> dict:
    return next(d for d in of_kind(docs, kind) if d["metadata"]["name"].endswith(suffix))


def test_lint_is_clean() -> None:
    done = _run("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_workload_runs_restricted() -> None:
    docs = render()
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet") + of_kind(docs, "Job")
    assert {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in workloads} == {
        "controller",
        "gateway",
        "nats",
        "function",  # the warm pool
        "uninstall",  # the pre-delete hook
    }
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert "memory" in c["resources"]["limits"] and c["resources"]["requests"], c["name"]
        # Only the controller (and its uninstall hook) talk to the API server.
        component = w["metadata"]["labels"]["app.kubernetes.io/component"]
        assert pod["automountServiceAccountToken"] is (component in ("controller", "uninstall"))


def test_uninstall_first_deletes_the_functions_with_the_controllers_account() -> None:
    (job,) = of_kind(render(), "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fx-controller" and pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["python3", "-m", "fx_controller.backends.kubernetes.uninstall"]


def test_function_pods_get_an_account_without_a_token() -> None:
    account = named(render(), "ServiceAccount", "-function")
    assert account["automountServiceAccountToken"] is False
    controller = named(render(), "Deployment", "-controller")
    env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FX_K8S_SERVICE_ACCOUNT"] == account["metadata"]["name"]
    assert controller["spec"]["template"]["spec"]["containers"][0]["args"] == ["--backend", "kubernetes"]


def test_rbac_is_namespaced_and_minimal() -> None:
    docs = render()
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    (role,) = of_kind(docs, "Role")
    granted = {
        (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert all("*" not in verbs for verbs in granted.values())
    assert "*" not in {r for _, r in granted}
    assert granted[("", "pods")] == {"get", "list", "watch", "patch", "delete"}  # never create pods directly
    assert granted[("coordination.k8s.io", "leases")] == {"get", "create", "update"}
    assert granted[("", "pods/log")] == {"get"}  # read, for `fx logs`
    assert granted[("", "pods/resize")] == {"patch"}  # a pool pod's memory, for a function bigger than the pool's
    # The copies of fx secrets: written and listed (to remove stale ones), never watched; read one by one:
    # the NATS identities the controller made (the authority, the gateway's and granted versions' users).
    assert granted[("", "secrets")] == {"get", "list", "create", "update", "delete"}
    assert set(granted) == {
        ("apps", "deployments"),
        ("", "pods"),
        ("", "secrets"),
        ("", "pods/log"),
        ("", "pods/resize"),
        ("fx.dev", "functions"),
        ("fx.dev", "functions/status"),
        ("coordination.k8s.io", "leases"),
    }


def test_only_the_gateway_reaches_function_pods() -> None:
    policy = named(render(), "NetworkPolicy", "-function")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "function"
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["spec"]["ingress"]
    (source,) = ingress["from"]
    selected = {e["key"]: e["values"] for e in source["podSelector"]["matchExpressions"]}
    assert selected == {"app.kubernetes.io/instance": ["fx"], "app.kubernetes.io/component": ["gateway", "controller"]}
    assert "namespaceSelector" not in source  # this release's pods only
    assert [p["port"] for p in ingress["ports"]] == [8080]
    egress = {
        (next(iter(rule["to"][0])), p["port"])
        for rule in policy["spec"]["egress"]
        for p in rule["ports"]  # DNS, the artifact port and the gateway, nothing else: no API server, no kubelet
    }
    assert egress == {("namespaceSelector", 53), ("podSelector", 8082), ("podSelector", 8080)}
    targets = [rule["to"][0]["podSelector"]["matchLabels"] for rule in policy["spec"]["egress"][1:]]
    assert [t["app.kubernetes.io/component"] for t in targets] == ["controller", "gateway"]


def test_only_function_pods_with_a_nats_grant_reach_nats() -> None:
    docs = render()
    granted = named(docs, "NetworkPolicy", "-function-nats")
    assert granted["spec"]["podSelector"]["matchLabels"]["fx.dev/nats"] == "true"
    assert granted["spec"]["policyTypes"] == ["Egress"]
    ((port,),) = [rule["ports"] for rule in granted["spec"]["egress"]]
    assert port["port"] == 4222
    nats = next(d for d in of_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == "fx-nats")
    (ingress,) = nats["spec"]["ingress"]
    platform, functions = ingress["from"]
    selected = {e["key"]: e["values"] for e in platform["podSelector"]["matchExpressions"]}
    assert selected["app.kubernetes.io/component"] == ["controller", "gateway"]
    labels = functions["podSelector"]["matchLabels"]
    assert labels["app.kubernetes.io/component"] == "function" and labels["fx.dev/nats"] == "true"
    assert [p["port"] for p in ingress["ports"]] == [4222]


def test_a_gateway_closed_to_other_namespaces_is_still_open_to_function_pods() -> None:
    policy = named(render("networkPolicy.gatewayFrom={ingress}"), "NetworkPolicy", "-gateway")
    ingress, scrapers = policy["spec"]["ingress"]  # scrapers: the metrics port alone (test_chart_monitoring.py)
    assert scrapers["ports"] == [{"protocol": "TCP", "port": 9090}]
    sources = ingress["from"]
    assert sources[0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress"}
    assert sources[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "function"


def test_admin_token_is_generated_into_a_secret() -> None:
    secret = named(render(), "Secret", "-admin-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) >= 32 and token.isalnum()
    # Bringing your own Secret renders none.
    assert not [s for s in of_kind(render("adminToken.existingSecret=mine"), "Secret") if "token" in s["data"]]


def test_optional_parts_render_when_asked() -> None:
    assert not of_kind(render(), "Ingress")
    docs = render("gateway.ingress.enabled=true", "nats.persistence.enabled=true", "podDisruptionBudget.enabled=false")
    assert named(docs, "Ingress", "-gateway")["spec"]["rules"][0]["host"] == "fx.example.com"
    assert named(docs, "StatefulSet", "-nats")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert not of_kind(docs, "PodDisruptionBudget")
    assert len(of_kind(render(), "PodDisruptionBudget")) == 2


def test_bad_values_are_refused_with_the_field_named() -> None:
    done = _run("template", "fx", str(CHART), "--set", "gateway.replicas=0")
    assert done.returncode != 0 and "/gateway/replicas" in done.stderr
    done = _run("template", "fx", str(CHART), "--set", "gateway.service.type=Public")
    assert done.returncode != 0 and "/gateway/service/type" in done.stderr


def test_crd_mirrors_the_function_spec() -> None:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    # Every FunctionSpec field but the name (that is metadata.name) is in the CRD, and nothing else.
    assert set(spec) == set(FunctionSpec.model_fields) - {"name"}
    assert set(spec["scale"]["properties"]) == set(ScaleSpec.model_fields)
    assert spec["runtime"]["enum"] == list(RUNTIMES)
    rules = json.dumps(schema)
    assert "self.min <= self.max" in rules and "self.metadata.name" in rules
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Ready", "Latest", "Traffic"]
    assert version["subresources"] == {"status": {}}
    status = schema["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= set(status)


def test_crd_triggers_mirror_the_trigger_kinds() -> None:
    crd = yaml.safe_load(CRD.read_text())
    triggers = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["triggers"]
    kinds = triggers["items"]["properties"]
    assert set(kinds) == set(TriggerSpec.model_fields)
    assert set(kinds["jetstream"]["properties"]) == set(JetStreamTrigger.model_fields)
    assert set(kinds["kv"]["properties"]) == set(KvTrigger.model_fields)
    rules = json.dumps(triggers["items"]["x-kubernetes-validations"])
    assert "has(self.nats), has(self.jetstream), has(self.kv), has(self.schedule)" in rules  # exactly one kind
    assert "required" not in triggers["items"]


def test_crd_secrets_are_names_only() -> None:
    crd = yaml.safe_load(CRD.read_text())
    secrets = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["secrets"]
    assert secrets["type"] == "array" and secrets["maxItems"] == MAX_SECRET_REFS
    assert secrets["items"] == {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
    assert secrets["x-kubernetes-list-type"] == "set"  # a name once


def test_the_secret_size_limit_is_a_value() -> None:
    controller = named(render("controller.maxSecretBytes=2048"), "Deployment", "-controller")
    env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FX_MAX_SECRET_BYTES"] == "2048"
    done = _run("template", "fx", str(CHART), "--set", "controller.maxSecretBytes=10")
    assert done.returncode != 0 and "/controller/maxSecretBytes" in done.stderr


def test_the_autoscaler_s_knobs_are_values_with_the_controller_s_defaults_and_ranges() -> None:
    def env_of(*sets: str) -> dict[str, str]:
        controller = named(render(*sets), "Deployment", "-controller")
        return {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}

    knobs = ("stable_window", "panic_window_percentage", "panic_threshold_percentage")
    knobs += ("max_scale_up_rate", "max_scale_down_rate", "scale_down_delay")
    rendered, built_in = parse([], env_of()), parse([], {})  # the controller reads the variables as its flags
    assert [getattr(rendered, k) for k in knobs] == [getattr(built_in, k) for k in knobs]
    assert env_of("controller.autoscaling.scaleDownDelay=30")["FX_SCALE_DOWN_DELAY"] == "30"
    done = _run("template", "fx", str(CHART), "--set", "controller.autoscaling.maxScaleDownRate=1")
    assert done.returncode != 0 and "/controller/autoscaling/maxScaleDownRate" in done.stderr


def test_crd_defaults_match_the_models() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    defaults = FunctionSpec(name="x", artifact="sha256:" + "0" * 64).model_dump()
    for field in ("handler", "runtime", "memory", "timeout"):
        assert spec[field]["default"] == defaults[field], field
    for field, prop in spec["scale"]["properties"].items():
        if "default" in prop:
            assert prop["default"] == defaults["scale"][field], field


def test_the_warm_pool_is_function_pods_the_controller_knows_the_size_of() -> None:
    docs = render("runtime.warmPool.size=3", "runtime.warmPool.memory=512")
    pool = named(docs, "Deployment", "-pool")
    assert pool["spec"]["replicas"] == 3
    labels = pool["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "function" and labels["fx.dev/pool"] == "true"
    pod = pool["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"].endswith("-function")
    assert pod["containers"][0]["command"] == ["python3", "-m", "fx_runtime.pool"]
    # It takes its assignment from the controller's artifact port, never from whoever rings it.
    pool_env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert pool_env["FX_POOL_URL"] == "http://fx-controller.fx.svc:8082"
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "512Mi"
    controller = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in controller["env"]}
    assert env["FX_K8S_POOL_MEMORY"] == "512"
    assert KubeConfig.from_env(env).pool_resize  # bigger functions take a pool pod resized in place by default
    env = named(render("runtime.warmPool.resize=false"), "Deployment", "-controller")["spec"]["template"]["spec"]
    assert not KubeConfig.from_env({e["name"]: e.get("value") for e in env["containers"][0]["env"]}).pool_resize
    # No pool: none rendered, and the controller is told so.
    docs = render("runtime.warmPool.size=0")
    assert not [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-pool")]
    controller = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in controller["env"]}["FX_K8S_POOL_MEMORY"] == "0"


def test_nats_runs_with_authorization_from_the_identities_the_controller_makes() -> None:
    docs = render()
    nats = named(docs, "StatefulSet", "-nats")["spec"]["template"]["spec"]
    assert nats["containers"][0]["command"][:3] == ["nats-server", "-c", "/etc/nats/nats.conf"]
    (config,) = [v for v in nats["volumes"] if v["name"] == "config"]
    # Only the rendered config, not the authority's seeds, reaches the NATS pod.
    assert config["secret"]["secretName"] == "fx-nats-auth" and config["secret"]["items"] == [
        {"key": "nats.conf", "path": "nats.conf"}
    ]
    gateway = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    assert env["FX_NATS_CREDS"] == "/var/run/fx/nats/nats.creds"
    (creds,) = [v for v in gateway["volumes"] if v["name"] == "nats"]
    assert creds["secret"] == {"secretName": "fx-gateway-nats", "defaultMode": 0o440}
    controller = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in controller["env"]}
    assert env["FX_K8S_NATS_AUTH_SECRET"] == "fx-nats-auth" and env["FX_K8S_GATEWAY_NATS_SECRET"] == "fx-gateway-nats"


def test_gateway_limits_and_callback_allow_lists_reach_its_environment() -> None:
    def gateway_env(*sets: str) -> dict[str, str]:
        container = named(render(*sets), "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    env = gateway_env()
    assert env["FX_MAX_URL_BYTES"] == "8192" and env["FX_MAX_HEADER_BYTES"] == "32768"
    assert env["FX_MAX_HEADERS"] == "100" and env["FX_MAX_CONNECTIONS"] == "4096"
    assert env["FX_HEADER_TIMEOUT"] == "10" and env["FX_BODY_TIMEOUT"] == "30" and env["FX_IDLE_TIMEOUT"] == "75"
    assert env["FX_SYSTEM_MAX_BYTES"] == "278921216" and env["FX_MAX_REVISION_SKEW"] == "60"
    assert env["FX_CALLBACK_HOSTS"] == "" and env["FX_CALLBACK_SUBJECTS"] == ""  # nowhere, unless allowed
    assert env["FX_METRICS_LISTEN"] == "0.0.0.0:9090"  # not on the Service's port
    service = named(render(), "Service", "-gateway")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    assert "FX_METRICS_LISTEN" not in gateway_env("gateway.metricsPort=null")
    env = gateway_env(
        "gateway.limits.maxHeaders=50",
        "gateway.callbacks.hosts={10.0.0.0/8,hooks.example.com:443}",
        "gateway.callbacks.subjects={results.>}",
    )
    assert env["FX_MAX_HEADERS"] == "50" and env["FX_MAX_URL_BYTES"] == "8192"
    assert env["FX_CALLBACK_HOSTS"] == "10.0.0.0/8,hooks.example.com:443" and env["FX_CALLBACK_SUBJECTS"] == "results.>"
    done = _run("template", "fx", str(CHART), "--set", "gateway.limits.maxHeaders=0")
    assert done.returncode != 0 and "/gateway/limits/maxHeaders" in done.stderr


def test_a_gateway_pod_is_given_its_drain_and_time_to_finish_it_before_it_is_killed() -> None:
    def gateway_pod(*sets: str) -> tuple[dict[str, str], int]:
        pod = named(render(*sets), "Deployment", "-gateway")["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        prestop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        grace = pod["terminationGracePeriodSeconds"]
        assert grace > prestop + float(env["FX_DRAIN_TIMEOUT"]) + 1  # the held requests' 503s are written
        return env, grace

    env, _ = gateway_pod()
    assert env["FX_DRAIN_TIMEOUT"] == env["FX_HOLD_TIMEOUT"] == "60"  # a call held through a failover is not cut
    env, grace = gateway_pod("gateway.drainTimeout=301")
    assert env["FX_DRAIN_TIMEOUT"] == "301" and grace >= 305


def test_runtime_images_reach_the_controller_which_reads_them_as_rendered() -> None:
    image = "reg.example.com/fx/runtime-python3.12:1"
    controller = named(render(f"runtimeImages.python3\\.12={image}"), "Deployment", "-controller")
    env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    images = KubeConfig.from_env({k: v for k, v in env.items() if v is not None}).images
    assert images == {
        "python3.11": env["FX_K8S_RUNTIME_IMAGE"],
        "provided": env["FX_K8S_RUNTIME_IMAGE"],
        "python3.12": image,
    }
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    assert list(schema["runtimeImages"]["properties"]) == list(PYTHON_RUNTIMES)  # the one table, fx.protocol
    assert schema["runtime"]["properties"]["python"]["enum"] == list(PYTHON_RUNTIMES)
    done = _run("template", "fx", str(CHART), "--set", "runtimeImages.python3\\.9=x")
    assert done.returncode != 0 and "/runtimeImages" in done.stderr and "python3.9" in done.stderr
