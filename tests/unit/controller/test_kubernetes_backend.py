"""The kubernetes backend against a fake API: what it asks of Kubernetes (manifests, scale, deletion cost)
and what the fleet hears back (ready with the pod's address, init errors, exits) as pods come and go."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fx.models import FunctionSpec
from fx.nats_auth import Authority, Signer, decode_jwt
from fx_controller.backends.base import ReplicaEvent, ReplicaSpec
from fx_controller.backends.kubernetes import kube, manifests, nats_identities
from fx_controller.backends.kubernetes.backend import KubernetesBackend
from fx_controller.backends.kubernetes.config import KubeConfig
from fx_controller.backends.kubernetes.pod_access import PodAccess
from fx_controller.backends.kubernetes.pods import PodState, init_trace_of, pod_state
from kubernetes import client

from .kube_fakes import CFG, DIGEST, HEX, NATS_CFG, FakeApi, pod, settle, spec


@pytest.fixture
async def setup():
    api = FakeApi({"fx-old-v3": 2})
    events: list[ReplicaEvent] = []
    changed: list[str] = []
    backend = KubernetesBackend(api, on_replicas=changed.append)
    await backend.open(events.append)
    yield api, backend, events, changed
    await backend.close()


def test_a_version_is_a_deployment_of_the_runtime_image_with_the_replica_environment() -> None:
    d = manifests.deployment(CFG, "hello", 4, DIGEST, spec(memory=256, timeout=10, env={"GREETING": "hi"}), "uid-1")
    assert d["metadata"]["name"] == "fx-hello-v4" and d["metadata"]["namespace"] == "fx"
    assert d["spec"]["replicas"] == 0  # scaled by the fleet, from zero
    (owner,) = d["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "fx.dev/v1alpha1",
        "kind": "Function",
        "name": "hello",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "function" and labels["app.kubernetes.io/instance"] == "prod"
    assert d["spec"]["selector"]["matchLabels"] == labels
    pod_spec = d["spec"]["template"]["spec"]
    (c,) = pod_spec["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["_HANDLER"] == "handler.handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "hello" and env["AWS_LAMBDA_FUNCTION_VERSION"] == "4"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and env["FX_TIMEOUT_MS"] == "10000"
    assert env["FX_ARTIFACT_URL"] == f"http://fx-controller.fx.svc:8082/artifacts/sha256-{HEX}.zip"
    assert env["FX_ARTIFACT_SHA256"] == HEX and env["FX_CODE_DIR"].endswith(HEX)
    assert env["FX_LISTEN"] == "0.0.0.0:8080" and env["GREETING"] == "hi"
    assert not [k for k in env if k.startswith("FX_NATS")]  # no grant: no NATS at all (nor a route to it)
    assert "fx.dev/nats" not in labels
    assert "FX_BOOTSTRAP" not in env
    assert c["image"] == CFG.runtime_image
    assert c["readinessProbe"]["httpGet"] == {"path": "/_fx/health", "port": 8080}
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": CFG.pre_stop_sleep}}
    assert c["resources"]["limits"]["memory"] == "256Mi" == c["resources"]["requests"]["memory"]
    # Restricted: non-root, read-only root, nothing to escalate with, no API token.
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["serviceAccountName"] == CFG.service_account
    # SIGTERM comes after the preStop sleep; then the longest invocation may still finish.
    assert pod_spec["terminationGracePeriodSeconds"] >= CFG.pre_stop_sleep + 10
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/fx", "/tmp"}
    assert env["FX_ARTIFACT"].startswith("/fx/")


def test_a_version_with_a_dependency_layer_fetches_and_may_fetch_it_beside_its_code() -> None:
    layer_hex = "cd" * 32
    d = manifests.deployment(CFG, "hello", 1, DIGEST, spec(dependencies=f"sha256:{layer_hex}"), "uid")
    env = {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FX_LAYER_URL"] == f"http://fx-controller.fx.svc:8082/artifacts/sha256-{layer_hex}.zip"
    assert env["FX_LAYER_SHA256"] == layer_hex and env["FX_LAYER_DIR"] == f"/fx/code/{layer_hex}"
    assert env["FX_LAYER"].startswith("/fx/")
    annotations = d["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"fx.dev/digest": DIGEST, "fx.dev/dependencies": f"sha256:{layer_hex}"}
    claimed = manifests.claim_patch(CFG, "hello", 1, DIGEST, spec(dependencies=f"sha256:{layer_hex}"), "uid")
    assert claimed["metadata"]["annotations"] == annotations
    plain = manifests.deployment(CFG, "hello", 1, DIGEST, spec(), "uid")
    assert "FX_LAYER" not in {e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}


async def test_a_pod_may_fetch_its_dependency_layer_and_no_other() -> None:
    access = PodAccess(unknown_wait=0)
    layer = "cd" * 32
    access.observe("ADDED", pod("p1", ip="10.244.0.7", ready=True, digest=DIGEST, layer=f"sha256:{layer}"))
    assert await access.may_fetch("10.244.0.7", HEX) and await access.may_fetch("10.244.0.7", layer)
    assert not await access.may_fetch("10.244.0.7", "ef" * 32)
    access.assign("10.244.0.9", {"FX_ARTIFACT_SHA256": HEX, "FX_LAYER_SHA256": layer})  # a pool pod, specialised
    assert await access.may_fetch("10.244.0.9", layer) and not await access.may_fetch("10.244.0.9", "ef" * 32)
    access.assign("10.244.0.10", {"FX_ARTIFACT_SHA256": HEX})
    assert not await access.may_fetch("10.244.0.10", layer) and not await access.may_fetch("10.244.0.10", "")


def test_a_custom_runtime_gets_its_bootstrap() -> None:
    d = manifests.deployment(CFG, "hello", 1, DIGEST, spec(runtime="provided"), "uid")
    env = {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FX_BOOTSTRAP"] == f"/fx/code/{HEX}/bootstrap"


def test_a_function_with_its_own_image_runs_that_image_with_the_code_it_holds() -> None:
    own = FunctionSpec(name="hello", image="localhost/fx/own:1", handler="app.handler")
    d = manifests.deployment(CFG, "hello", 2, own.code, own, "uid")
    (c,) = d["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert (c["image"], c["imagePullPolicy"]) == ("localhost/fx/own:1", "IfNotPresent")
    assert env["_HANDLER"] == "app.handler" and not {k for k in env if k.startswith(("FX_ARTIFACT", "FX_CODE"))}
    assert c["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert not manifests.fits_pool(CFG, own), "pool pods run the runtime image, not the function's"
    provided = own.model_copy(update={"runtime": "provided"})
    d = manifests.deployment(CFG, "hello", 3, provided.code, provided, "uid")
    env = {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FX_BOOTSTRAP"] == "/var/task/bootstrap"


def test_the_function_resource_mirrors_the_spec_and_reads_back() -> None:
    s = spec(scale={"min": 1, "max": 3})
    body = manifests.function_resource(CFG, s)
    assert body["kind"] == "Function" and body["metadata"]["name"] == "hello" and "name" not in body["spec"]
    assert manifests.spec_of("hello", body["spec"]) == s


async def test_open_removes_a_previous_controllers_pods(setup) -> None:
    api, _, _, _ = setup
    assert api.replicas == {"fx-old-v3": 0}
    assert api.deleted == ["fx-hello-old"]


async def test_a_replica_is_the_next_ready_pod_and_leaves_by_deletion_cost(setup) -> None:
    api, backend, events, changed = setup
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    assert api.functions["hello"]["spec"]["artifact"] == DIGEST
    assert api.created["fx-hello-v1"]["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"
    assert api.replicas["fx-hello-v1"] == 1
    api.on_pod("ADDED", pod("p1"))  # scheduled, not ready: nothing yet
    assert events == []
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True))
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.7:8080")]
    assert backend.ready_count("hello") == 1 and changed == ["hello"]

    await backend.start_replica(ReplicaSpec("r2", "hello", 1, DIGEST, spec()))
    assert api.replicas["fx-hello-v1"] == 2 and len(api.created) == 1  # the Deployment is made once
    assert api.deployment_writes == 1  # and not written again on the cold start path
    del api.created["fx-hello-v1"], api.replicas["fx-hello-v1"]  # kubectl delete deployment
    await backend.start_replica(ReplicaSpec("r3", "hello", 1, DIGEST, spec()))
    assert api.replicas["fx-hello-v1"] == 3 and api.deployment_writes == 2  # made again
    await backend.stop_replica("r3", grace=10)
    api.on_pod("MODIFIED", pod("p2", ip="10.244.0.8", ready=True))
    assert events[-1] == ReplicaEvent("r2", "ready", endpoint="10.244.0.8:8080")

    await backend.stop_replica("r1", grace=10)
    assert api.costs == {"p1": -1000} and api.replicas["fx-hello-v1"] == 1
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=False, deleting=True))
    assert events[-1].kind == "ready"  # still terminating: not gone yet
    api.on_pod("DELETED", pod("p1", ip="10.244.0.7", deleting=True))
    assert events[-1] == ReplicaEvent("r1", "exit")
    assert backend.ready_count("hello") == 1


async def test_a_pod_ready_for_another_version_is_not_taken(setup) -> None:
    api, backend, events, _ = setup
    await backend.start_replica(ReplicaSpec("r1", "hello", 2, DIGEST, spec()))
    api.on_pod("MODIFIED", pod("old", version=1, ip="10.244.0.5", ready=True))
    assert events == []
    api.on_pod("MODIFIED", pod("new", version=2, ip="10.244.0.6", ready=True))
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.6:8080")]


async def test_an_init_error_is_reported_and_its_pod_scaled_away(setup) -> None:
    api, backend, events, _ = setup
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    failure = ("Runtime.ImportModuleError", "Unable to import module 'handler'", 1)
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", init_error=failure))
    await asyncio.sleep(0)
    assert events == [
        ReplicaEvent("r1", "init_error", error_type=failure[0], error_message=failure[1]),
        ReplicaEvent("r1", "exit", exit_code=1),
    ]
    assert api.replicas["fx-hello-v1"] == 0


async def test_a_pod_deleted_by_someone_else_is_an_exit(setup) -> None:
    api, backend, events, _ = setup
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True))
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True, deleting=True))  # kubectl delete pod
    await asyncio.sleep(0)
    assert events[-1] == ReplicaEvent("r1", "exit")
    assert api.replicas["fx-hello-v1"] == 0  # no replacement the fleet did not ask for
    api.on_pod("DELETED", pod("p1", deleting=True))
    assert len(events) == 2


async def test_stopping_a_replica_before_its_pod_is_ready(setup) -> None:
    api, backend, events, _ = setup
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    await backend.stop_replica("r1", grace=1)
    assert events == [ReplicaEvent("r1", "exit")] and api.replicas["fx-hello-v1"] == 0
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True))
    assert len(events) == 1  # no replica waits for it any more


def test_pod_state_reads_an_init_error_from_the_termination_message() -> None:
    message = (
        "INIT_START Runtime Version: python:3.11\n"
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'handler': No module named 'handler'\n"
        "INIT_REPORT Init Duration: 12.00 ms\tPhase: init\tStatus: error\n"
    )
    v1pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="fx-hello-v1-abc",
            labels={**manifests.pod_labels(CFG, "hello", 1, spec())},
            annotations={manifests.DIGEST_ANNOTATION: DIGEST, manifests.LAYER_ANNOTATION: f"sha256:{'cd' * 32}"},
            deletion_timestamp=datetime.now(UTC),
        ),
        status=client.V1PodStatus(
            pod_ip="10.244.0.9",
            conditions=[client.V1PodCondition(type="Ready", status="False")],
            container_statuses=[
                client.V1ContainerStatus(
                    name="function",
                    image="x",
                    image_id="",
                    ready=False,
                    restart_count=1,
                    state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason="CrashLoopBackOff")),
                    last_state=client.V1ContainerState(
                        terminated=client.V1ContainerStateTerminated(exit_code=1, message=message)
                    ),
                )
            ],
        ),
    )
    state = pod_state(v1pod)
    assert state == PodState(
        name="fx-hello-v1-abc",
        function="hello",
        version=1,
        ip="10.244.0.9",
        ready=False,
        deleting=True,
        init_error=(
            "Runtime.ImportModuleError",
            "Unable to import module 'handler': No module named 'handler'",
            1,
        ),
        digest=DIGEST,
        layer=f"sha256:{'cd' * 32}",
    )
    assert pod_state(client.V1Pod(metadata=client.V1ObjectMeta(name="other", labels={}))) is None


async def test_a_drained_pod_goes_to_a_replica_still_waiting_for_one(setup) -> None:
    api, backend, events, _ = setup
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True))
    await backend.start_replica(ReplicaSpec("r2", "hello", 1, DIGEST, spec()))
    api.on_pod("ADDED", pod("p2"))  # pending: the ReplicaSet would remove this one first on scale-down
    await backend.stop_replica("r1", grace=10)
    assert events[-2:] == [ReplicaEvent("r1", "exit"), ReplicaEvent("r2", "ready", endpoint="10.244.0.7:8080")]
    assert api.replicas["fx-hello-v1"] == 1 and api.costs == {}


async def test_a_replica_from_the_warm_pool_needs_no_new_pod(pooled) -> None:
    api, backend, events, asked, _ = pooled
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec(memory=128)))
    await settle()
    # The pool pod becomes the version's: out of the pool's ReplicaSet, owned by the Function.
    patch = api.claimed["pool-a"]["metadata"]
    assert patch["labels"] == {"fx.dev/pool": None, "fx.dev/function": "hello", "fx.dev/version": "1"}
    assert patch["annotations"] == {"fx.dev/digest": DIGEST}  # the code the artifact server hands it
    assert patch["ownerReferences"][0]["uid"] == "uid-hello"
    ((ip, env),) = asked
    assert ip == "10.244.0.20" and env["FX_ARTIFACT_URL"] == f"http://a:8082/artifacts/sha256-{HEX}.zip"
    assert env["_HANDLER"] == "handler.handler" and env["FX_ARTIFACT_SHA256"] == HEX
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.20:8080")]
    assert api.replicas.get("fx-hello-v1", 0) == 0  # no Deployment pod was asked for
    assert backend.ready_count("hello") == 1
    assert api.resized == {"pool-a": 128}  # the function's own limit, not the pool's 256 MB

    # The pool is empty now: the next replica takes the Deployment path.
    await backend.start_replica(ReplicaSpec("r2", "hello", 1, DIGEST, spec(memory=128)))
    assert api.replicas["fx-hello-v1"] == 1

    # Stopping it while r2 waits hands its pod to r2 (no cold start; the Deployment pod is not needed).
    api.on_pod("MODIFIED", pod("pool-a", ip="10.244.0.20", ready=True))  # relabelled, as the watch sees it
    await backend.stop_replica("r1", grace=10)
    assert events[-2:] == [ReplicaEvent("r1", "exit"), ReplicaEvent("r2", "ready", endpoint="10.244.0.20:8080")]
    assert api.replicas["fx-hello-v1"] == 0
    # Stopping the last one deletes the pod; the exit comes when the pod is gone.
    await backend.stop_replica("r2", grace=10)
    assert api.deleted[-1] == "pool-a"
    api.on_pod("DELETED", pod("pool-a", ip="10.244.0.20", deleting=True))
    assert events[-1] == ReplicaEvent("r2", "exit") and backend.ready_count("hello") == 0


async def test_a_pool_pod_that_cannot_shrink_still_serves_its_function(pooled) -> None:
    api, backend, events, asked, _ = pooled

    async def refused(pod: str, memory: int) -> None:
        raise RuntimeError("the server could not find the requested resource")  # no pods/resize

    api.resize_pod = refused
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec(memory=128)))
    await settle()
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.20:8080")] and len(asked) == 1


def _pool_pod(**kw) -> PodState:
    return PodState("pool-a", "", 0, ip="10.244.0.20", ready=True, running=True, pool=True, **kw)


async def test_a_function_bigger_than_the_pool_pods_gets_a_pool_pod_resized_in_place(pooled) -> None:
    api, backend, events, asked, _ = pooled
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec(memory=512)))
    await settle()
    assert api.resized == {"pool-a": 512} and "pool-a" in api.claimed
    api.on_pod("MODIFIED", _pool_pod(memory=256))  # the resize asked, not yet taken by the kubelet
    await settle()
    assert asked == [] and events == []  # its code is not loaded under the old limit
    api.on_pod("MODIFIED", _pool_pod(memory=256, resize="in progress"))
    await settle()
    assert len(asked) == 1 and asked[0][1]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.20:8080")]
    assert api.replicas.get("fx-hello-v1", 0) == 0


async def test_a_resize_the_kubelet_cannot_make_falls_back_to_the_deployment(pooled) -> None:
    api, backend, events, asked, _ = pooled
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec(memory=10240)))
    await settle()
    api.on_pod("MODIFIED", _pool_pod(memory=256, resize="pending: Infeasible Node didn't have enough capacity"))
    await settle()
    await settle()
    assert asked == [] and events == []
    assert api.deleted[-1] == "pool-a" and api.replicas["fx-hello-v1"] == 1


def test_without_in_place_resize_a_bigger_function_gets_deployment_pods() -> None:
    cfg = KubeConfig.from_env({"FX_K8S_POOL_MEMORY": "256", "FX_K8S_POOL_RESIZE": "false"})
    assert manifests.fits_pool(cfg, spec(memory=256)) and not manifests.fits_pool(cfg, spec(memory=512))
    assert manifests.fits_pool(replace(cfg, pool_resize=True), spec(memory=10240))
    assert not manifests.fits_pool(replace(cfg, pool_memory=0), spec(memory=128)), "no pool"


async def test_a_deployment_pod_is_a_replica_once_it_answers_the_controllers_probe() -> None:
    """Not at the kubelet's next readiness probe (every second): the controller asks from the container's start."""
    api, events, answers = FakeApi(), [], [False, False, True]
    probed: list[str] = []

    async def probe(ip: str) -> bool:
        probed.append(ip)
        return answers.pop(0)

    backend = KubernetesBackend(api, probe=probe)
    await backend.open(events.append)
    try:
        await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
        api.on_pod("ADDED", pod("p1", ip="10.244.0.7"))  # not running yet: nothing to ask
        api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", running=True))
        api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", running=True))  # one probe per pod, however many events
        for _ in range(50):
            if events:
                break
            await asyncio.sleep(0.01)
        assert probed == ["10.244.0.7"] * 3
        assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.7:8080")]
        # The kubelet's Ready comes later and changes nothing; losing it afterwards is the replica's end.
        api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", running=True))
        api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", ready=True))
        assert len(events) == 1
        api.on_pod("MODIFIED", pod("p1", ip="10.244.0.7", running=True, ready=False))
        assert events[-1] == ReplicaEvent("r1", "exit")
    finally:
        await backend.close()


def test_pod_state_reads_the_memory_limit_and_an_in_place_resize() -> None:
    def v1pod(condition: str, reason: str = "") -> client.V1Pod:
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name="fx-pool-a", labels={manifests.POOL_LABEL: "true"}),
            status=client.V1PodStatus(
                pod_ip="10.244.0.9",
                conditions=[client.V1PodCondition(type=condition, status="True", reason=reason)],
                container_statuses=[
                    client.V1ContainerStatus(
                        name="function",
                        image="x",
                        image_id="",
                        ready=True,
                        restart_count=0,
                        state=client.V1ContainerState(running=client.V1ContainerStateRunning()),
                        resources=client.V1ResourceRequirements(limits={"memory": "256Mi"}),
                    )
                ],
            ),
        )

    state = pod_state(v1pod("PodResizeInProgress"))
    assert state and state.running and state.memory == 256 and state.resize == "in progress"
    state = pod_state(v1pod("PodResizePending", "Infeasible"))
    assert state and state.resize == "pending: Infeasible"


async def test_an_init_error_in_a_pool_pod_is_reported_and_the_pod_deleted(pooled) -> None:
    api, backend, events, _, answers = pooled
    answers.append({"event": "init_error", "errorType": "Runtime.ImportModuleError", "errorMessage": "no handler"})
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    await settle()
    assert events == [
        ReplicaEvent("r1", "init_error", error_type="Runtime.ImportModuleError", error_message="no handler"),
        ReplicaEvent("r1", "exit", exit_code=1),
    ]
    assert api.deleted[-1] == "pool-a"


async def test_a_pool_pod_that_cannot_be_reached_falls_back_to_the_deployment(pooled) -> None:
    api, backend, events, _, answers = pooled
    answers.append(OSError("connection refused"))
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, spec()))
    await settle()
    assert api.deleted[-1] == "pool-a" and api.replicas["fx-hello-v1"] == 1 and events == []
    api.on_pod("MODIFIED", pod("p1", ip="10.244.0.8", ready=True))
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.8:8080")]


async def test_the_pod_watch_tells_the_artifact_server_which_pod_runs_which_code() -> None:
    access = PodAccess(unknown_wait=0)
    backend = KubernetesBackend(FakeApi(), access=access)
    await backend.open(lambda event: None)
    backend._api.on_pod("ADDED", pod("p1", ip="10.244.0.7", ready=True, digest=DIGEST))
    assert await access.may_fetch("10.244.0.7", HEX)
    assert not await access.may_fetch("10.244.0.7", "cd" * 32)  # another version's code
    backend._api.on_pod("DELETED", pod("p1", ip="10.244.0.7", digest=DIGEST))
    assert not await access.may_fetch("10.244.0.7", HEX)
    await backend.close()


def granted(**kw) -> FunctionSpec:
    return spec(nats={"publish": ["users.created"], "subscribe": ["orders.*"]}, **kw)


def claims_of(creds: str) -> dict:
    return decode_jwt(creds.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])


def test_a_granted_version_gets_nats_its_label_and_its_user_mounted() -> None:
    d = manifests.deployment(NATS_CFG, "hello", 2, DIGEST, granted(), "uid-1")
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["fx.dev/nats"] == "true"  # what the NetworkPolicy opens NATS to
    pod_spec = d["spec"]["template"]["spec"]
    (c,) = pod_spec["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["FX_NATS_URL"] == "nats://prod-nats:4222"
    assert env["FX_NATS_INBOX_PREFIX"] == "_INBOX.fx-fn.hello"
    assert env["FX_NATS_CREDS"] == "/var/run/fx/nats/nats.creds"
    assert {"name": "nats", "mountPath": "/var/run/fx/nats", "readOnly": True} in c["volumeMounts"]
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == "nats"]
    assert volume["secret"] == {"secretName": "fx-hello-v2-nats", "defaultMode": 0o440}  # the pod's group only


async def test_a_granted_versions_user_is_made_once_limited_to_its_grant() -> None:
    api, signer = FakeApi(cfg=NATS_CFG), Authority.create().signer
    backend = KubernetesBackend(api, signer=signer)
    await backend.open(lambda event: None)
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, granted()))
    await backend.start_replica(ReplicaSpec("r2", "hello", 1, DIGEST, granted()))
    assert list(api.secrets) == ["fx-hello-v1-nats"]
    body = api.secrets["fx-hello-v1-nats"]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"  # goes with the Function
    nats = claims_of((await api.read_secret("fx-hello-v1-nats"))["nats.creds"])["nats"]
    assert nats["pub"]["allow"] == ["users.created"]
    assert nats["sub"]["allow"] == ["orders.*", "_INBOX.fx-fn.hello.>"]
    # An ungranted function gets no user at all.
    await backend.start_replica(ReplicaSpec("r3", "other", 1, DIGEST, FunctionSpec(name="other", artifact=DIGEST)))
    assert list(api.secrets) == ["fx-hello-v1-nats"]
    await backend.close()


async def test_a_pool_pod_of_a_granted_version_gets_its_user_in_the_assignment() -> None:
    api, signer = FakeApi(cfg=NATS_CFG), Authority.create().signer
    asked: list[dict] = []

    async def specialize(ip: str, env: dict, files: dict) -> dict:
        asked.append({"env": env, "files": files})
        return {"event": "ready"}

    backend = KubernetesBackend(api, specialize=specialize, signer=signer)
    await backend.open(lambda event: None)
    api.on_pod("ADDED", PodState("pool-a", "", 0, ip="10.244.0.20", ready=True, pool=True))
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, granted()))
    await settle()
    ((given),) = asked
    assert given["env"]["FX_NATS_CREDS"] == "/tmp/fx-nats.creds"
    assert claims_of(given["files"]["/tmp/fx-nats.creds"])["nats"]["pub"]["allow"] == ["users.created"]
    assert "NKEY SEED" not in str(given["env"])  # the seed is in a file, never in the environment
    assert api.claimed["pool-a"]["metadata"]["labels"]["fx.dev/nats"] == "true"
    assert api.secrets == {}  # no Secret volume for a pool pod
    await backend.close()


async def test_the_leader_makes_the_nats_identities_once(tmp_path: Path) -> None:
    api = FakeApi(cfg=NATS_CFG)
    creds, auth_dir = await nats_identities.prepare_platform(api, tmp_path / "a")
    stored = await api.read_secret("prod-nats-auth")
    assert "operator: " in stored["nats.conf"] and "resolver: MEMORY" in stored["nats.conf"]
    gateway = claims_of((await api.read_secret("prod-gateway-nats"))["nats.creds"])
    assert "fx.>" in gateway["nats"]["sub"]["deny"]
    assert claims_of(creds.read_text())["name"] == "fx-controller"
    # A later leader (a restart, a standby) keeps the authority: the server's config and every user stay valid.
    again, auth_again = await nats_identities.prepare_platform(api, tmp_path / "b")
    assert (
        Signer.load(auth_again).account
        == Signer.load(auth_dir).account
        == claims_of(again.read_text())["nats"]["issuer_account"]
    )
    assert set(api.secrets) == {"prod-nats-auth", "prod-gateway-nats"}


def test_the_traceback_of_an_init_error_is_read_from_the_termination_message() -> None:
    message = (
        "INIT_START Runtime Version: python:3.11\n"
        "[ERROR] Runtime.UserCodeSyntaxError: Syntax error in module 'handler': invalid syntax (handler.py, line 1)\n"
        "Traceback (most recent call last):\n"
        '  File "/var/task/handler.py" Line 1\n'
        "    def oops(:\n"
        "INIT_REPORT Init Duration: 12.00 ms\tPhase: init\tStatus: error\n"
    )
    assert init_trace_of(message) == ('  File "/var/task/handler.py" Line 1', "    def oops(:")
    assert init_trace_of("the container was killed\n") == ()


async def test_an_existing_deployment_takes_the_new_pod_template_and_keeps_its_scale() -> None:
    """After an upgrade the leader's settings (here the runtime image) differ from those a version's Deployment
    was made with: starting a replica patches its template (a merge patch without replicas), not only `exists`."""
    calls = []

    class Apps:
        def create_namespaced_deployment(self, namespace: str, body: dict) -> None:
            raise client.ApiException(status=409)

        def patch_namespaced_deployment(self, name: str, namespace: str, body: dict, _content_type: str) -> None:
            calls.append((name, namespace, body, _content_type))

    api = kube.KubeApi(CFG)
    api.apps = Apps()
    body = manifests.deployment(CFG, "hello", 4, DIGEST, spec(), "uid-1")
    await api.create_deployment(body)
    assert calls == [
        ("fx-hello-v4", "fx", {"spec": {"template": body["spec"]["template"]}}, "application/merge-patch+json")
    ]
