"""The few Kubernetes API calls the backend makes, on the official client (sync: each call runs in a thread).

The backend depends on this small surface only, so its unit tests use a fake of it instead of an API server.
Watches run in daemon threads and hand events to the event loop; a watch that expires (410 Gone) relists.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from .config import GROUP, PLURAL, VERSION, KubeConfig
from .manifests import CONTAINER, DELETION_COST, FUNCTION_LABEL, selector_string
from .pods import PodState, pod_state

log = logging.getLogger("fx_controller.kubernetes")

WATCH_TIMEOUT_S = 300  # a watch is renewed this often (the server may end it sooner)


def load_client_config() -> None:
    """In a pod: its service account; elsewhere: KUBECONFIG (for running the controller beside a cluster)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class KubeApi:
    def __init__(self, cfg: KubeConfig) -> None:
        self.cfg = cfg
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.custom = client.CustomObjectsApi()
        self._stop = threading.Event()

    # --- Function resources -----------------------------------------------------------

    async def get_function(self, name: str) -> dict | None:
        try:
            return await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, self.cfg.namespace, PLURAL, name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_function(self, body: dict) -> dict:
        try:
            return await asyncio.to_thread(
                self.custom.create_namespaced_custom_object, GROUP, VERSION, self.cfg.namespace, PLURAL, body
            )
        except ApiException as e:
            if e.status != 409:  # created meanwhile (by kubectl, or another pass): use that one
                raise
        found = await self.get_function(body["metadata"]["name"])
        assert found is not None
        return found

    async def _patch_function(self, name: str, patch: dict) -> None:
        await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object, GROUP, VERSION, self.cfg.namespace, PLURAL, name, patch
        )

    async def patch_function_spec(self, name: str, spec: dict) -> None:
        await self._patch_function(name, {"spec": spec})

    async def list_functions(self) -> list[dict]:
        found = await asyncio.to_thread(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, self.cfg.namespace, PLURAL
        )
        return found["items"]

    async def annotate_function(self, name: str, annotations: dict[str, str | None]) -> None:
        """Merge-patches them in; a None value removes its annotation."""
        await self._patch_function(name, {"metadata": {"annotations": annotations}})

    async def patch_function_status(self, name: str, status: dict) -> None:
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                self.cfg.namespace,
                PLURAL,
                name,
                {"status": status},
            )
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: nothing to report on
                raise

    async def delete_function(self, name: str) -> bool:
        """False if there was none. Background: the garbage collector removes what it owns afterwards."""
        try:
            await asyncio.to_thread(
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                self.cfg.namespace,
                PLURAL,
                name,
                body=client.V1DeleteOptions(propagation_policy="Background"),
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return False
        return True

    # --- Deployments and pods ------------------------------------------------------------

    async def create_deployment(self, body: dict) -> None:
        """A version's Deployment, made once; one that exists gets `body`'s pod template. That template changes only
        with the controller's own settings (a `helm upgrade`'s runtime image, its pull policy, the preStop sleep):
        unchanged, the patch changes nothing; changed, the version's next pods run what the release now says
        instead of the image the version was first started with. (A new leader scales every version to zero before
        it starts one, so no running replica is replaced behind the fleet's back.)"""
        try:
            await asyncio.to_thread(self.apps.create_namespaced_deployment, self.cfg.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            template = {"spec": {"template": body["spec"]["template"]}}  # a merge patch: its scale is left alone
            await asyncio.to_thread(
                self.apps.patch_namespaced_deployment,
                body["metadata"]["name"],
                self.cfg.namespace,
                template,
                _content_type="application/merge-patch+json",
            )

    async def scale(self, name: str, replicas: int) -> None:
        await asyncio.to_thread(
            self.apps.patch_namespaced_deployment, name, self.cfg.namespace, {"spec": {"replicas": replicas}}
        )

    async def deployments(self) -> dict[str, int]:
        """Name → spec.replicas of every function Deployment of this installation."""
        found = await asyncio.to_thread(  # versions only: the warm pool's Deployment is the chart's
            self.apps.list_namespaced_deployment,
            self.cfg.namespace,
            label_selector=f"{selector_string(self.cfg)},{FUNCTION_LABEL}",
        )
        return {d.metadata.name: d.spec.replicas or 0 for d in found.items}

    async def set_deletion_cost(self, pod: str, cost: int) -> None:
        """The ReplicaSet removes the pod with the lowest cost first on scale-down: the one fx drained."""
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_pod,
                pod,
                self.cfg.namespace,
                {"metadata": {"annotations": {DELETION_COST: str(cost)}}},
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def claim_pod(self, pod: str, patch: dict) -> None:
        await asyncio.to_thread(
            self.core.patch_namespaced_pod, pod, self.cfg.namespace, patch, _content_type="application/merge-patch+json"
        )

    async def resize_pod(self, pod: str, memory: int) -> None:
        """Its container's memory request and limit to `memory` MiB, in place (the pod's resize subresource)."""
        size = f"{memory}Mi"
        resources = {"requests": {"memory": size}, "limits": {"memory": size}}
        await asyncio.to_thread(
            self.core.patch_namespaced_pod_resize,
            pod,
            self.cfg.namespace,
            {"spec": {"containers": [{"name": CONTAINER, "resources": resources}]}},
            _content_type="application/strategic-merge-patch+json",  # the container's other resources stay
        )

    async def delete_pod(self, pod: str, grace: int | None = None) -> None:
        try:
            await asyncio.to_thread(
                self.core.delete_namespaced_pod, pod, self.cfg.namespace, grace_period_seconds=grace
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def standalone_pods(self) -> list[str]:
        """Function pods no ReplicaSet owns: pool pods specialised by a previous controller."""
        found = await asyncio.to_thread(
            self.core.list_namespaced_pod,
            self.cfg.namespace,
            label_selector=f"{selector_string(self.cfg)},{FUNCTION_LABEL}",
        )
        return [
            p.metadata.name
            for p in found.items
            if not any(o.kind == "ReplicaSet" for o in p.metadata.owner_references or [])
        ]

    # --- Secrets (the copies of fx's secrets) ------------------------------------------------

    async def apply_secret(self, body: dict) -> None:
        """Create, or replace as a whole (a key left out goes)."""
        try:
            await asyncio.to_thread(self.core.create_namespaced_secret, self.cfg.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            name = body["metadata"]["name"]
            await asyncio.to_thread(self.core.replace_namespaced_secret, name, self.cfg.namespace, body)

    async def read_secret(self, name: str) -> dict[str, str] | None:
        """A Secret's values (decoded), None if there is none by that name."""
        try:
            found = await asyncio.to_thread(self.core.read_namespaced_secret, name, self.cfg.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}

    async def create_secret(self, body: dict) -> bool:
        """False when one by that name exists already (kept as it is)."""
        try:
            await asyncio.to_thread(self.core.create_namespaced_secret, self.cfg.namespace, body)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    async def delete_secret(self, name: str) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_secret, name, self.cfg.namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    async def secret_names(self, selector: str) -> list[str]:
        found = await asyncio.to_thread(self.core.list_namespaced_secret, self.cfg.namespace, label_selector=selector)
        return [s.metadata.name for s in found.items]

    def watch_pods(self, on_event: Callable[[str, PodState], None]) -> None:
        """Call `on_event(type, pod)` on the running loop for every function pod change, until close()."""
        self._watch(
            "pods",
            self.core.list_namespaced_pod,
            (self.cfg.namespace,),
            {"label_selector": selector_string(self.cfg)},
            pod_state,
            lambda obj: obj.metadata.resource_version,
            on_event,
        )

    def watch_functions(self, on_event: Callable[[str, dict], None]) -> None:
        """Call `on_event(type, function)` on the running loop for every Function change, until close()."""
        self._watch(
            "functions",
            self.custom.list_namespaced_custom_object,
            (GROUP, VERSION, self.cfg.namespace, PLURAL),
            {},
            lambda obj: obj,
            lambda obj: obj["metadata"]["resourceVersion"],
            on_event,
        )

    def _watch(
        self,
        what: str,
        lister: Callable[..., Any],  # the client's own method: Watch reads its docstring to decode objects
        args: tuple,
        kwargs: dict,
        convert: Callable[[Any], Any],
        version_of: Callable[[Any], str],
        on_event: Callable[[str, Any], None],
    ) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            resource_version = ""
            while not self._stop.is_set():
                try:
                    stream = watch.Watch().stream(
                        lister,
                        *args,
                        resource_version=resource_version or None,
                        timeout_seconds=WATCH_TIMEOUT_S,
                        **kwargs,
                    )
                    for event in stream:
                        if self._stop.is_set():
                            return
                        resource_version = version_of(event["object"])
                        item = convert(event["object"])
                        if item is not None:
                            loop.call_soon_threadsafe(on_event, event["type"], item)
                except ApiException as e:
                    if e.status == 410:  # too old: list again from now (ADDED events for what exists)
                        resource_version = ""
                        continue
                    log.warning("%s watch failed (%s); retrying", what, e.status)
                    self._stop.wait(1.0)
                except Exception:
                    log.exception("%s watch failed; retrying", what)
                    self._stop.wait(1.0)

        threading.Thread(target=run, name=f"fx-watch-{what}", daemon=True).start()

    def follow_log(self, pod: str, on_chunk: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        def run() -> None:
            try:
                response = self.core.read_namespaced_pod_log(
                    pod, self.cfg.namespace, container=CONTAINER, follow=True, _preload_content=False
                )
                try:
                    for chunk in response.stream(amt=None, decode_content=False):  # each as it arrives
                        if self._stop.is_set():
                            return
                        on_chunk(chunk)
                finally:
                    response.release_conn()
            except Exception as e:  # e.g. the pod went away first: its lines are lost, the function is not
                log.warning("could not copy the log of pod %s: %s", pod, e)
            finally:
                on_end()

        threading.Thread(target=run, name=f"fx-log-{pod}", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
