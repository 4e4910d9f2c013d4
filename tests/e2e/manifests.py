"""The Kubernetes objects the tests create: a Lambda handler in a ConfigMap, run by the fx runtime image."""

from __future__ import annotations

import json

HANDLER = """import os


def handler(event, context):
    return {"echo": event, "function": context.function_name, "pod": os.environ.get("HOSTNAME")}
"""


def handler_configmap(name: str) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"handler.py": HANDLER}}
    )


def runtime_pod_spec(image: str, configmap: str, function: str) -> dict:
    """The fx runtime serving handler.handler from the ConfigMap, Ready once /_fx/health answers."""
    return {
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {
                "name": "runtime",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "env": [
                    {"name": "_HANDLER", "value": "handler.handler"},
                    {"name": "AWS_LAMBDA_FUNCTION_NAME", "value": function},
                ],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/_fx/health", "port": 8080}, "periodSeconds": 1},
                "volumeMounts": [{"name": "code", "mountPath": "/var/task", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "code", "configMap": {"name": configmap}}],
    }


def pod(name: str, spec: dict, labels: dict[str, str] | None = None) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}
    )


def deployment(name: str, spec: dict, replicas: int) -> str:
    labels = {"app": name}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        }
    )


def service(name: str, port: int = 80, target: int = 8080) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target}]},
        }
    )
