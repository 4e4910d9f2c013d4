"""kubectl and helm against the cluster under test, and the bounded HTTP calls the tests make to pod IPs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster import build, layout


def _tool(env: str, cached: Path, name: str) -> str:
    found = os.environ.get(env) or (str(cached) if cached.exists() else shutil.which(name))
    if not found:
        raise RuntimeError(f"{name} not found: set {env}, or run `make cluster-up` to build it")
    return found


class Kube:
    """One namespace of the cluster named by a kubeconfig."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.kubectl_bin = _tool("FX_E2E_KUBECTL", build.kubectl(), "kubectl")
        self.helm_bin = _tool("FX_E2E_HELM", layout.TOOLS_BIN / f"helm-{layout.HELM_VERSION}", "helm")

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        argv = [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def helm(self, *args: str, timeout: float = 180) -> str:
        argv = [self.helm_bin, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def get(self, *what: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *what, "-o", "json"))

    def wait_ready(self, pod: str, timeout: int = 90) -> dict[str, Any]:
        self.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", f"--timeout={timeout}s", timeout=timeout + 10)
        return self.get("pod", pod)


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 5, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request, bounded in time; an HTTP error status is an answer too."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def first_answer(url: str, deadline: float) -> tuple[int, bytes]:
    """GET url until something answers (at most one try per 20 ms, until `deadline`)."""
    while True:
        try:
            return http("GET", url, timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
