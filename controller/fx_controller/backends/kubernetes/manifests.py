"""Pure mappings from fx's records to Kubernetes objects: the Function resource and one Deployment per version.

Kept free of API calls so the mapping (security context, env, probes, owner references) is tested as data.
"""

from __future__ import annotations

import base64
import math

from fx.models import FunctionSpec
from fx.nats_auth import function_inbox_prefix
from fx.protocol import REPLICA_HEALTH_PATH

from .config import GROUP, VERSION, KubeConfig

PORT = 8080
CONTAINER = "function"  # the container of every function pod, pool pods included (charts/fx pool template)
IMAGE_TASK_ROOT = "/var/task"  # where a function's own image has its code (the runtime image's LAMBDA_TASK_ROOT)
WORK_DIR = "/fx"  # an emptyDir: the fetched zip and its extraction; the root filesystem stays read-only
FUNCTION_LABEL = f"{GROUP}/function"
VERSION_LABEL = f"{GROUP}/version"
DIGEST_ANNOTATION = f"{GROUP}/digest"
LAYER_ANNOTATION = f"{GROUP}/dependencies"  # the version's dependency layer digest, when it has one
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
POOL_LABEL = f"{GROUP}/pool"
NATS_LABEL = f"{GROUP}/nats"  # a function with a `nats:` grant: the NetworkPolicy opens NATS to its pods alone
NATS_CREDS_DIR = "/var/run/fx/nats"  # a Deployment pod's mount of its version's NATS user (a Secret)
POOL_NATS_CREDS = "/tmp/fx-nats.creds"  # where a pool pod writes the user that came with its assignment
SECRET_LABEL = f"{GROUP}/secret"


def deployment_name(function: str, version: int) -> str:
    return f"fx-{function}-v{version}"


def selector(cfg: KubeConfig) -> dict[str, str]:
    """The labels of every function pod of this fx installation (what the NetworkPolicy selects)."""
    return {
        "app.kubernetes.io/name": "fx",
        "app.kubernetes.io/instance": cfg.instance,
        "app.kubernetes.io/component": "function",
    }


def selector_string(cfg: KubeConfig) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(cfg).items())


def pod_labels(cfg: KubeConfig, function: str, version: int, spec: FunctionSpec) -> dict[str, str]:
    return {**selector(cfg), FUNCTION_LABEL: function, VERSION_LABEL: str(version), **nats_label(spec)}


def nats_label(spec: FunctionSpec) -> dict[str, str]:
    return {NATS_LABEL: "true"} if spec.nats is not None else {}


def nats_secret_name(function: str, version: int) -> str:
    return f"{deployment_name(function, version)}-nats"


def nats_identity_selector(cfg: KubeConfig) -> dict[str, str]:
    """The labels of the Secrets holding NATS identities (the authority, the gateway's and functions' users)."""
    return {**selector(cfg), "app.kubernetes.io/component": "nats-identity"}


def function_resource(cfg: KubeConfig, spec: FunctionSpec) -> dict:
    """The Function object mirroring a spec (the name is metadata.name, so it is not repeated in spec)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Function",
        "metadata": {
            "name": spec.name,
            "namespace": cfg.namespace,
            "labels": {**selector(cfg), FUNCTION_LABEL: spec.name},
        },
        "spec": function_spec_body(spec),
    }


def function_spec_body(spec: FunctionSpec) -> dict:
    return spec.model_dump(mode="json", exclude={"name"}, exclude_none=True)


def spec_of(name: str, body: dict) -> FunctionSpec:
    """A Function resource's spec as the admin API's model (validation errors name the field)."""
    return FunctionSpec.model_validate({**body, "name": name})


def replica_env(
    cfg: KubeConfig, function: str, version: int, digest: str, spec: FunctionSpec, nats_creds: str, token: str
) -> list[dict]:
    """ARCHITECTURE.md's replica environment; the code comes by digest from the controller's artifact server,
    or is in the function's own image at LAMBDA_TASK_ROOT (/var/task, set by the runtime image it is built FROM).
    `nats_creds`: where a granted replica finds its NATS user, when NATS runs with authorization. `token`: the
    version's replica token (stable per version: its key outlives controllers, so the template stays the same)."""
    env = {
        "_HANDLER": spec.handler,
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": str(version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        **code_env(cfg, digest, spec),
        "FX_LISTEN": f"0.0.0.0:{PORT}",
        "FX_TIMEOUT_MS": str(int(spec.timeout * 1000)),
        "FX_HTTP_EVENT": spec.http.event,
        **nats_env(cfg, function, spec, nats_creds),
        **({"FX_REPLICA_TOKEN": token} if token else {}),
    }
    env.update(spec.env)
    return [{"name": k, "value": v} for k, v in env.items()]


def nats_env(cfg: KubeConfig, function: str, spec: FunctionSpec, creds: str) -> dict[str, str]:
    """FX_NATS_* for a function with a grant only: the others get no NATS at all (nor a route to it)."""
    if spec.nats is None:
        return {}
    env = {"FX_NATS_URL": cfg.nats_url, "FX_NATS_INBOX_PREFIX": function_inbox_prefix(function)}
    if cfg.nats_auth_secret:
        env["FX_NATS_CREDS"] = creds
    return env


def fetched_zip(cfg: KubeConfig, digest: str, var: str, dir_var: str) -> dict[str, str]:
    """Where a pod fetches a zip (`var`: FX_ARTIFACT or FX_LAYER) from the artifact server, and extracts it."""
    hexdigest = digest.split(":", 1)[1]
    return {
        var: f"{WORK_DIR}/sha256-{hexdigest}.zip",
        f"{var}_URL": f"{cfg.artifact_url}/artifacts/sha256-{hexdigest}.zip",
        f"{var}_SHA256": hexdigest,
        dir_var: f"{WORK_DIR}/code/{hexdigest}",
    }


def code_env(cfg: KubeConfig, digest: str, spec: FunctionSpec) -> dict[str, str]:
    if spec.image is not None:
        return {"FX_BOOTSTRAP": f"{IMAGE_TASK_ROOT}/bootstrap"} if spec.runtime == "provided" else {}
    env = fetched_zip(cfg, digest, "FX_ARTIFACT", "FX_CODE_DIR")
    if spec.dependencies:  # the layer comes the same way, extracted beside the code
        env |= fetched_zip(cfg, spec.dependencies, "FX_LAYER", "FX_LAYER_DIR")
    if spec.runtime == "provided":
        env["FX_BOOTSTRAP"] = f"{env['FX_CODE_DIR']}/bootstrap"
    return env


def secret_name(cfg: KubeConfig, name: str) -> str:
    return f"{cfg.instance}-secret-{name}"


def secret_labels(cfg: KubeConfig) -> dict[str, str]:
    """The labels of every Secret fx keeps for its secrets (how a restarted controller finds stale ones)."""
    return {**selector(cfg), "app.kubernetes.io/component": "secret"}


def secret_selector(cfg: KubeConfig) -> str:
    return ",".join(f"{k}={v}" for k, v in secret_labels(cfg).items())


def secret(cfg: KubeConfig, name: str, values: dict[str, str]) -> dict:
    """An fx secret as a Kubernetes Secret: its keys are what the functions naming it get as variables."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(cfg, name),
            "namespace": cfg.namespace,
            "labels": {**secret_labels(cfg), SECRET_LABEL: name},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def secret_env_from(cfg: KubeConfig, spec: FunctionSpec) -> list[dict]:
    """Every key of each named Secret as a variable, read by the kubelet when a pod starts: a version's pods get
    the values current at their start, as a local replica does, and its Deployment never changes with them."""
    return [{"secretRef": {"name": secret_name(cfg, s)}} for s in spec.secrets]


def grace_seconds(cfg: KubeConfig, spec: FunctionSpec) -> int:
    """Long enough for the preStop sleep plus the longest invocation to finish after SIGTERM."""
    return cfg.pre_stop_sleep + math.ceil(spec.timeout) + 5


def fits_pool(cfg: KubeConfig, spec: FunctionSpec) -> bool:
    """Pool pods run fx's runtime image: a function with its own image, or of another runtime, needs its own pods;
    a pod's grace period cannot change, its memory can (resized in place, when cfg.pool_resize)."""
    pool_image = spec.image is None and cfg.images.get(spec.runtime) == cfg.runtime_image
    memory = 0 < spec.memory <= cfg.pool_memory or (cfg.pool_memory > 0 and cfg.pool_resize)
    return pool_image and memory and grace_seconds(cfg, spec) <= cfg.pool_grace


def claim_patch(cfg: KubeConfig, function: str, version: int, digest: str, spec: FunctionSpec, owner_uid: str) -> dict:
    """A JSON merge patch that takes a pool pod out of the pool's ReplicaSet (which then makes a new one) and
    makes it the function's: its labels and code digest, and the Function as its only owner, so deleting the
    Function removes it."""
    return {
        "metadata": {
            "labels": {POOL_LABEL: None, FUNCTION_LABEL: function, VERSION_LABEL: str(version), **nats_label(spec)},
            "annotations": code_annotations(digest, spec),
            "ownerReferences": [owner_reference(function, owner_uid)],
        }
    }


def code_annotations(digest: str, spec: FunctionSpec) -> dict[str, str]:
    """What a pod of this version may fetch from the artifact server: its code and its dependency layer."""
    return {DIGEST_ANNOTATION: digest, **({LAYER_ANNOTATION: spec.dependencies} if spec.dependencies else {})}


def owner_reference(function: str, uid: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Function",
        "name": function,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deployment(
    cfg: KubeConfig, function: str, version: int, digest: str, spec: FunctionSpec, owner_uid: str, token: str = ""
) -> dict:
    """One immutable version as a Deployment that starts at zero replicas; its scale changes, and its pod template
    only with the controller's settings (an upgrade: KubeApi.create_deployment)."""
    labels = pod_labels(cfg, function, version, spec)
    granted = spec.nats is not None and bool(cfg.nats_auth_secret)
    memory = f"{spec.memory}Mi"
    grace = grace_seconds(cfg, spec)
    container = {
        "name": CONTAINER,
        "image": spec.image or cfg.images[spec.runtime],  # the deploy refused a runtime without an image
        # A function's own image: pulled once per node, so a new release needs a new tag (or a digest).
        "imagePullPolicy": "IfNotPresent" if spec.image else cfg.runtime_pull_policy,
        "env": replica_env(cfg, function, version, digest, spec, f"{NATS_CREDS_DIR}/nats.creds", token),
        **({"envFrom": secret_env_from(cfg, spec)} if spec.secrets else {}),
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {
            "httpGet": {"path": REPLICA_HEALTH_PATH, "port": PORT},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        # The pod leaves the route table first (the fleet drains it); the sleep covers gateways still holding it.
        "lifecycle": {"preStop": {"sleep": {"seconds": cfg.pre_stop_sleep}}},
        "resources": {"requests": {"cpu": cfg.runtime_cpu, "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # An init error's last log lines (Lambda's errorType and message) become the termination message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *([{"name": "nats", "mountPath": NATS_CREDS_DIR, "readOnly": True}] if granted else []),
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(function, version),
            "namespace": cfg.namespace,
            "labels": labels,
            "annotations": code_annotations(digest, spec),
            "ownerReferences": [owner_reference(function, owner_uid)],
        },
        "spec": {
            "replicas": 0,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": code_annotations(digest, spec)},
                "spec": {
                    "serviceAccountName": cfg.service_account,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,  # no env var per Service: faster start, nothing to leak
                    "terminationGracePeriodSeconds": grace,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "work", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                        # Readable by the pod's group (fsGroup) only: the function's uid, not the world.
                        *(
                            [
                                {
                                    "name": "nats",
                                    "secret": {"secretName": nats_secret_name(function, version), "defaultMode": 0o440},
                                }
                            ]
                            if granted
                            else []
                        ),
                    ],
                },
            },
        },
    }
