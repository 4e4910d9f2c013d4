"""Kubernetes: each runtime runs its own image (runtime -> image from the chart), and a deploy naming a runtime
with no image is refused before anything is stored, naming the runtimes there are and the chart value to set."""

from __future__ import annotations

import pytest
from fx.models import FunctionSpec
from fx_controller.backends.kubernetes import manifests
from fx_controller.backends.kubernetes.backend import KubernetesBackend
from fx_controller.backends.kubernetes.config import KubeConfig

from tools import version

from .kube_fakes import CFG, DIGEST, FakeApi

SHIPPED = f"localhost/fx/runtime-python:{version.current()}"  # what `make images` names
ENV = {
    "FX_K8S_RUNTIME_IMAGE": "reg.example.com/fx/runtime-python:1",
    "FX_K8S_RUNTIME_PYTHON": "python3.11",
    "FX_K8S_RUNTIME_IMAGES": '{"python3.12": "reg.example.com/fx/runtime-python3.12:1"}',
}


def test_by_default_only_the_shipped_images_runtime_and_provided_have_an_image() -> None:
    assert KubeConfig.from_env({}).images == {"python3.11": SHIPPED, "provided": SHIPPED}


def test_configured_runtimes_get_their_own_image_and_the_others_none() -> None:
    images = KubeConfig.from_env(ENV).images
    assert images == {
        "python3.11": "reg.example.com/fx/runtime-python:1",
        "provided": "reg.example.com/fx/runtime-python:1",
        "python3.12": "reg.example.com/fx/runtime-python3.12:1",
    }


@pytest.mark.parametrize(
    ("value", "said"),
    [("python3.12=x", "not a JSON object"), ('{"python3.9": "x"}', "names python3.9"), ('{"python3.12": ""}', "JSON")],
)
def test_a_bad_runtime_image_map_is_refused_naming_it(value: str, said: str) -> None:
    with pytest.raises(ValueError, match="FX_K8S_RUNTIME_IMAGES") as e:
        KubeConfig.from_env({"FX_K8S_RUNTIME_IMAGES": value})
    assert said in str(e.value)


def test_a_version_runs_its_runtimes_image_and_only_the_shipped_runtime_uses_the_pool() -> None:
    cfg = KubeConfig.from_env({**ENV, "FX_K8S_POOL_MEMORY": "256"})
    for runtime, image in cfg.images.items():
        spec = FunctionSpec(name="hello", artifact=DIGEST, runtime=runtime)
        (container,) = manifests.deployment(cfg, "hello", 1, DIGEST, spec, "uid")["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["image"] == image, runtime
        assert manifests.fits_pool(cfg, spec) == (image == cfg.runtime_image), runtime


def test_the_backend_offers_the_configured_runtimes_and_says_how_to_add_one() -> None:
    backend = KubernetesBackend(FakeApi(cfg=CFG))  # type: ignore[arg-type]
    assert set(backend.runtimes) == {"python3.11", "provided"}
    remedy = backend.runtime_remedy("python3.13")
    assert "--build-arg PYTHON_VERSION=3.13" in remedy and "runtimeImages.python3.13" in remedy


async def test_a_deploy_of_a_runtime_without_an_image_is_refused(admin, backend) -> None:
    kubernetes = KubernetesBackend(FakeApi(cfg=CFG))  # type: ignore[arg-type]
    backend.runtimes, backend.runtime_remedy = kubernetes.runtimes, kubernetes.runtime_remedy
    r = await admin.put(
        "/system/functions/newer", json={"name": "newer", "runtime": "python3.12", "artifact": "sha256:" + "0" * 64}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "RuntimeNotAvailable" and error["field"] == "runtime"
    assert "python3.12 is not available" in error["message"] and "it has python3.11, provided" in error["message"]
    assert "runtimeImages.python3.12" in error["message"]
    assert (await admin.get("/system/functions")).json() == []
