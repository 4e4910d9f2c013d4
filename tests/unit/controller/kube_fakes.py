"""The fakes the Kubernetes backend's tests share: an API that records calls and plays the pod watch, specs,
pods, the configurations."""

from __future__ import annotations

import asyncio
import base64

from fx.models import FunctionSpec
from fx_controller.backends.kubernetes.config import KubeConfig
from fx_controller.backends.kubernetes.pods import PodState

HEX = "ab" * 32
DIGEST = f"sha256:{HEX}"
CFG = KubeConfig(
    namespace="fx", instance="prod", artifact_url="http://fx-controller.fx.svc:8082", nats_url="nats://prod-nats:4222"
)


def spec(**kw) -> FunctionSpec:
    return FunctionSpec(name="hello", artifact=DIGEST, **kw)


class FakeApi:
    """Records calls; the test plays the pod watch by calling `pod(...)`."""

    def __init__(self, deployments: dict[str, int] | None = None, cfg: KubeConfig = CFG) -> None:
        self.cfg = cfg
        self.claimed: dict[str, dict] = {}
        self.resized: dict[str, int] = {}  # pod -> the memory (MiB) it was resized to in place
        self.deleted: list[str] = []
        self.standalone = ["fx-hello-old"]
        self.functions: dict[str, dict] = {}
        self.created: dict[str, dict] = {}
        self.deployment_writes = 0  # create_deployment calls (each one or two API requests)
        self.replicas: dict[str, int] = dict(deployments or {})
        self.costs: dict[str, int] = {}
        self.secrets: dict[str, dict] = {}
        self.files: list[dict] = []  # what each pool pod was given beside its environment
        self.on_pod = None
        self.closed = False

    async def get_function(self, name: str) -> dict | None:
        return self.functions.get(name)

    async def create_function(self, body: dict) -> dict:
        body = {**body, "metadata": {**body["metadata"], "uid": f"uid-{body['metadata']['name']}"}}
        self.functions[body["metadata"]["name"]] = body
        return body

    async def create_deployment(self, body: dict) -> None:
        self.deployment_writes += 1
        self.created[body["metadata"]["name"]] = body
        self.replicas.setdefault(body["metadata"]["name"], body["spec"]["replicas"])

    async def scale(self, name: str, replicas: int) -> None:
        if name not in self.created and name not in self.replicas:
            raise LookupError(f"no Deployment {name}")  # the API server's 404
        self.replicas[name] = replicas

    async def deployments(self) -> dict[str, int]:
        return dict(self.replicas)

    async def set_deletion_cost(self, pod: str, cost: int) -> None:
        self.costs[pod] = cost

    async def claim_pod(self, pod: str, patch: dict) -> None:
        self.claimed[pod] = patch

    async def resize_pod(self, pod: str, memory: int) -> None:
        self.resized[pod] = memory

    async def delete_pod(self, pod: str, grace: int | None = None) -> None:
        self.deleted.append(pod)

    async def standalone_pods(self) -> list[str]:
        return list(self.standalone)

    async def read_secret(self, name: str) -> dict[str, str] | None:
        body = self.secrets.get(name)
        return None if body is None else {k: base64.b64decode(v).decode() for k, v in body["data"].items()}

    async def apply_secret(self, body: dict) -> None:
        self.secrets[body["metadata"]["name"]] = body

    async def create_secret(self, body: dict) -> bool:
        if body["metadata"]["name"] in self.secrets:
            return False
        self.secrets[body["metadata"]["name"]] = body
        return True

    def watch_pods(self, on_event) -> None:
        self.on_pod = on_event

    def close(self) -> None:
        self.closed = True


def pod(name: str, version: int = 1, **kw) -> PodState:
    """A pod of hello; a ready one runs unless said otherwise."""
    kw.setdefault("running", kw.get("ready", False))
    return PodState(name=name, function="hello", version=version, **kw)


POOL_CFG = KubeConfig(namespace="fx", instance="prod", artifact_url="http://a:8082", pool_memory=256, pool_grace=60)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


NATS_CFG = KubeConfig(
    namespace="fx",
    instance="prod",
    nats_url="nats://prod-nats:4222",
    nats_auth_secret="prod-nats-auth",
    gateway_nats_secret="prod-gateway-nats",
    pool_memory=256,
)
