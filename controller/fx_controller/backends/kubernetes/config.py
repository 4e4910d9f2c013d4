"""What the kubernetes backend needs to know about its cluster, from FX_K8S_* variables (the chart sets them)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata

from fx.protocol import DEFAULT_RUNTIME, PYTHON_RUNTIMES

GROUP = "fx.dev"
VERSION = "v1alpha1"
PLURAL = "functions"


@dataclass(frozen=True)
class KubeConfig:
    namespace: str = "default"
    instance: str = "fx"  # the Helm release: every object fx makes carries it, NetworkPolicies select by it
    pod_name: str = ""  # this controller's identity in the leader Lease
    lease: str = "fx-controller"
    lease_duration: float = 3.0  # s a Lease not renewed lasts: a crashed leader is replaced after about this
    lease_renew: float = 1.0  # s between the leader's renewals
    lease_retry: float = 0.5  # s between a standby's looks at the Lease
    controller_deployment: str = ""  # owns the Lease, so it goes with the release; empty: no owner
    # What pool pods run too; by default the image `make images` names for this release (the chart always sets it).
    runtime_image: str = f"localhost/fx/runtime-python:{metadata.version('fx-controller')}"
    runtime_python: str = DEFAULT_RUNTIME  # the Python of runtime_image
    runtime_images: dict[str, str] = field(default_factory=dict)  # other runtimes -> their image
    runtime_pull_policy: str = "IfNotPresent"
    runtime_cpu: str = "50m"
    pre_stop_sleep: int = 2
    service_account: str = "fx-function"
    artifact_listen: str = "0.0.0.0:8082"
    # The validating admission webhook for Functions (admission.py): HTTPS with tls.crt/tls.key from
    # webhook_cert_dir (the chart's Secret); empty: no webhook.
    webhook_listen: str = "0.0.0.0:8443"
    webhook_cert_dir: str = ""
    artifact_url: str = "http://fx-controller:8082"  # how function pods reach the artifact server
    nats_url: str = "nats://fx-nats:4222"  # how function pods reach NATS (FX_NATS_URL, the controller's own)
    # NATS with authorization (nats_identities): the Secrets the leader keeps the authority (and the server's
    # config) and the gateway's user in. Empty: NATS without auth, nobody gets credentials.
    nats_auth_secret: str = ""
    gateway_nats_secret: str = ""
    # NATS as a JetStream cluster: host:port of every server's route listener (the StatefulSet's pods by the
    # headless Service); the leader writes them, with a route password, into the server's config. Empty: one server.
    nats_routes: tuple[str, ...] = ()
    # The warm pool (pods of `python -m fx_runtime.pool`, made by the chart): their memory limit in MB (0: no
    # pool) and termination grace; a function fits when its memory and timeout fit in those.
    pool_memory: int = 0
    pool_grace: int = 60
    # A function bigger than pool_memory takes a pool pod resized in place to its memory (InPlacePodVerticalScaling,
    # on by default since Kubernetes 1.33); False: it gets pods of its Deployment.
    pool_resize: bool = True

    @property
    def images(self) -> dict[str, str]:
        """runtime -> the image its pods run: runtime_image for its own Python and for `provided` (a bootstrap
        needs no particular Python), then the ones configured."""
        return {self.runtime_python: self.runtime_image, "provided": self.runtime_image, **self.runtime_images}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> KubeConfig:
        d = cls()
        env = {k: v for k, v in environ.items() if v}  # set but empty: the default
        return cls(
            namespace=env.get("FX_K8S_NAMESPACE", d.namespace),
            instance=env.get("FX_K8S_INSTANCE", d.instance),
            pod_name=env.get("FX_K8S_POD_NAME") or socket.gethostname(),
            lease=env.get("FX_K8S_LEASE", d.lease),
            lease_duration=float(env.get("FX_K8S_LEASE_DURATION", d.lease_duration)),
            lease_renew=float(env.get("FX_K8S_LEASE_RENEW", d.lease_renew)),
            lease_retry=float(env.get("FX_K8S_LEASE_RETRY", d.lease_retry)),
            controller_deployment=env.get("FX_K8S_CONTROLLER_DEPLOYMENT", d.controller_deployment),
            runtime_image=env.get("FX_K8S_RUNTIME_IMAGE", d.runtime_image),
            runtime_python=env.get("FX_K8S_RUNTIME_PYTHON", d.runtime_python),
            runtime_images=parse_runtime_images(env.get("FX_K8S_RUNTIME_IMAGES", "{}")),
            runtime_pull_policy=env.get("FX_K8S_RUNTIME_PULL_POLICY", d.runtime_pull_policy),
            runtime_cpu=env.get("FX_K8S_RUNTIME_CPU", d.runtime_cpu),
            pre_stop_sleep=int(env.get("FX_K8S_PRE_STOP_SLEEP", d.pre_stop_sleep)),
            service_account=env.get("FX_K8S_SERVICE_ACCOUNT", d.service_account),
            artifact_listen=env.get("FX_K8S_ARTIFACT_LISTEN", d.artifact_listen),
            webhook_listen=env.get("FX_K8S_WEBHOOK_LISTEN", d.webhook_listen),
            webhook_cert_dir=env.get("FX_K8S_WEBHOOK_CERT_DIR", d.webhook_cert_dir),
            artifact_url=env.get("FX_K8S_ARTIFACT_URL", d.artifact_url).rstrip("/"),
            nats_url=env.get("FX_NATS_URL", d.nats_url),
            nats_auth_secret=env.get("FX_K8S_NATS_AUTH_SECRET", d.nats_auth_secret),
            gateway_nats_secret=env.get("FX_K8S_GATEWAY_NATS_SECRET", d.gateway_nats_secret),
            nats_routes=tuple(r.strip() for r in env.get("FX_K8S_NATS_ROUTES", "").split(",") if r.strip()),
            pool_memory=int(env.get("FX_K8S_POOL_MEMORY", d.pool_memory)),
            pool_grace=int(env.get("FX_K8S_POOL_GRACE", d.pool_grace)),
            pool_resize=env.get("FX_K8S_POOL_RESIZE", str(d.pool_resize)).lower() == "true",
        )


def parse_runtime_images(value: str) -> dict[str, str]:
    """FX_K8S_RUNTIME_IMAGES: a JSON object runtime -> image (the chart's `runtimeImages`)."""
    try:
        images = json.loads(value)
    except ValueError:
        images = None
    if not isinstance(images, dict) or not all(isinstance(v, str) and v for v in images.values()):
        raise ValueError(f"FX_K8S_RUNTIME_IMAGES {value!r} is not a JSON object of runtime -> image reference")
    if unknown := sorted(set(images) - set(PYTHON_RUNTIMES)):
        raise ValueError(f"FX_K8S_RUNTIME_IMAGES names {', '.join(unknown)}; runtimes: {', '.join(PYTHON_RUNTIMES)}")
    return images
