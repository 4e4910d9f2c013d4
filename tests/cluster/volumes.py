"""Persistent volumes for the harness: a default StorageClass and static hostPath PVs under the state dir.

The cluster has no storage provisioner, and charts/fx asks for a PersistentVolumeClaim per NATS pod. cluster-up
makes `COUNT` PVs (directories under STATE/volumes, removed with it by cluster-down) and starts this module as a
daemon that recycles them: a PV whose claim was deleted (`Released`) is emptied and made `Available` again, so a
cluster that stays up serves any number of installs. hostPath ignores fsGroup, so the directories are 0777.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.cluster import build, layout

STORAGE_CLASS = "fx-local"
COUNT = 8  # enough for a 3-node NATS cluster beside a single one, with room for an install being removed
SIZE = "5Gi"  # declared only: hostPath does not enforce it
LABEL = "fx-cluster/volume"
ROOT = layout.STATE / "volumes"
POLL_S = 1.0


def _kubectl(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    argv = [str(build.kubectl()), "--kubeconfig", str(layout.KUBECONFIG), *args]
    return subprocess.run(argv, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def _empty(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o777)


def manifests() -> dict:
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    volumes = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"fx-local-{i}", "labels": {LABEL: "true"}},
            "spec": {
                "capacity": {"storage": SIZE},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",  # the recycler below empties and frees it
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(ROOT / f"pv-{i}"), "type": "Directory"},
            },
        }
        for i in range(COUNT)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": [storage_class, *volumes]}


def make() -> None:
    """The directories, the StorageClass and the PVs (cluster-up, once the API server answers)."""
    for i in range(COUNT):
        _empty(ROOT / f"pv-{i}")
    done = _kubectl("apply", "-f", "-", input=json.dumps(manifests()))
    if done.returncode:
        raise RuntimeError(f"could not create the harness's volumes: {done.stderr}")


def recycle_once() -> None:
    listed = _kubectl("get", "pv", "-l", LABEL, "-o", "json")
    if listed.returncode:
        return  # the API server is restarting or going down: try again
    for pv in json.loads(listed.stdout)["items"]:
        if pv.get("status", {}).get("phase") != "Released":
            continue
        _empty(Path(pv["spec"]["hostPath"]["path"]))
        _kubectl(
            "patch", "pv", pv["metadata"]["name"], "--type", "json", "-p", '[{"op":"remove","path":"/spec/claimRef"}]'
        )


def main() -> None:
    while True:
        recycle_once()
        time.sleep(POLL_S)


if __name__ == "__main__":
    main()
