"""`python -m fx_controller.backends.kubernetes.uninstall`: the chart's pre-delete hook.

Helm keeps the CRDs, and with them every Function and what it owns (Deployments, pods). Run before Helm
removes anything, this deletes the namespace's Functions while the controller still runs (it stops their
replicas as for `kubectl delete function`) and waits until the garbage collector has removed their
dependents, so `helm uninstall` leaves no function behind. Then it deletes the Secrets holding fx's secrets
(the controller's copies; the values stay in NATS for as long as its volume does) and NATS identities (the
authority the controller made, the gateway's user).
"""

from __future__ import annotations

import sys
import time

from kubernetes import client

from . import kube, manifests
from .config import GROUP, PLURAL, VERSION, KubeConfig

TIMEOUT_S = 120.0


def functions(custom: client.CustomObjectsApi, namespace: str) -> list[str]:
    found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return [item["metadata"]["name"] for item in found["items"]]


def main() -> int:
    cfg = KubeConfig.from_env()
    kube.load_client_config()
    custom = client.CustomObjectsApi()
    names = functions(custom, cfg.namespace)
    print(f"deleting {len(names)} functions in {cfg.namespace}: {', '.join(names) or 'none'}", flush=True)
    for name in names:
        # Foreground: the Function stays until the Deployments and pods it owns are gone.
        options = client.V1DeleteOptions(propagation_policy="Foreground")
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, cfg.namespace, PLURAL, name, body=options)
        except client.ApiException as e:
            if e.status != 404:
                raise
    deadline = time.monotonic() + TIMEOUT_S
    while left := functions(custom, cfg.namespace):
        if time.monotonic() > deadline:
            print(f"still there after {TIMEOUT_S:.0f} s: {', '.join(left)}", file=sys.stderr)
            return 1
        time.sleep(1)
    print("every function and what it owned is gone", flush=True)
    core = client.CoreV1Api()
    identities = ",".join(f"{k}={v}" for k, v in manifests.nats_identity_selector(cfg).items())
    for what, selector in (("fx secrets", manifests.secret_selector(cfg)), ("NATS identities", identities)):
        secrets = core.list_namespaced_secret(cfg.namespace, label_selector=selector).items
        for secret in secrets:
            core.delete_namespaced_secret(secret.metadata.name, cfg.namespace)
        print(f"deleted {len(secrets)} Secrets of {what}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
