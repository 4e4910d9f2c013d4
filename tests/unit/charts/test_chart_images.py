"""Where the chart's pods get their images (issue 17): one registry and one tag for fx's three images, the tag
defaulting to the chart's appVersion (the project's one version), per-component overrides, NATS on the
controller's image, and image.pullSecrets on every fx pod and on the account function pods run as."""

from __future__ import annotations

import pytest
import yaml

from tests.unit.charts.test_chart import CHART, named, of_kind, render
from tools import version


def images(docs: list[dict]) -> dict[str, str]:
    """component -> the image its pods run, and "functions" -> the runtime image the controller gives them."""
    found = {}
    for workload in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet") + of_kind(docs, "Job"):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        found[workload["metadata"]["labels"]["app.kubernetes.io/component"]] = container["image"]
    env = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0]["env"]
    found["functions"] = next(e["value"] for e in env if e["name"] == "FX_K8S_RUNTIME_IMAGE")
    return found


def test_defaults_are_the_local_registry_at_the_charts_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == version.current()
    v = version.current()
    assert images(render()) == {
        "controller": f"localhost/fx/controller:{v}",
        "uninstall": f"localhost/fx/controller:{v}",
        "nats": f"localhost/fx/controller:{v}",  # the controller's image ships nats-server
        "gateway": f"localhost/fx/gateway:{v}",
        "function": f"localhost/fx/runtime-python:{v}",  # the warm pool
        "functions": f"localhost/fx/runtime-python:{v}",
    }


def test_one_registry_and_tag_move_every_image() -> None:
    found = images(render("image.registry=registry.example.com:5000/team/fx/", "image.tag=1.2.3"))
    prefix = "registry.example.com:5000/team/fx"
    assert found == {
        "controller": f"{prefix}/controller:1.2.3",
        "uninstall": f"{prefix}/controller:1.2.3",
        "nats": f"{prefix}/controller:1.2.3",
        "gateway": f"{prefix}/gateway:1.2.3",
        "function": f"{prefix}/runtime-python:1.2.3",
        "functions": f"{prefix}/runtime-python:1.2.3",
    }


def test_a_component_override_beats_the_shared_values() -> None:
    found = images(
        render(
            "image.registry=reg.example.com/fx",
            "image.tag=2.0.0",
            "gateway.image.repository=mirror.example.com/gw",
            "runtime.image.tag=2.0.1",
            "nats.image.repository=nats",
            "nats.image.tag=2.10-alpine",
        )
    )
    assert found["gateway"] == "mirror.example.com/gw:2.0.0"
    assert found["function"] == found["functions"] == "reg.example.com/fx/runtime-python:2.0.1"
    assert found["controller"] == "reg.example.com/fx/controller:2.0.0"
    assert found["nats"] == "nats:2.10-alpine"


def test_pull_secrets_reach_every_fx_pod_and_the_function_account() -> None:
    docs = render("image.pullSecrets={regcred,mirror}")
    expected = [{"name": "regcred"}, {"name": "mirror"}]
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet") + of_kind(docs, "Job")
    assert len(workloads) == 5
    for workload in workloads:
        assert workload["spec"]["template"]["spec"]["imagePullSecrets"] == expected, workload["metadata"]["name"]
    # Kubernetes gives an account's imagePullSecrets to the pods that run as it and name none: the functions'
    # Deployments, which the controller makes.
    assert named(docs, "ServiceAccount", "-function")["imagePullSecrets"] == expected


def test_no_pull_secrets_by_default() -> None:
    docs = render()
    for workload in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet") + of_kind(docs, "Job"):
        assert workload["spec"]["template"]["spec"]["imagePullSecrets"] == []
    assert named(docs, "ServiceAccount", "-function")["imagePullSecrets"] == []


def test_a_registry_or_tag_no_registry_accepts_is_refused_at_install() -> None:
    """Refused by the schema with the key's name, not rendered into pods that can never pull."""
    for value in ["image.registry=Registry.example.com/FX", "image.registry=registry example.com", "image.tag=a:b"]:
        with pytest.raises(AssertionError, match=r"/image/(registry|tag)': .* does not match pattern"):
            render(value)
