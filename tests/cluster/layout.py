"""Pinned versions, where things are cached and recorded, and the cluster's addresses."""

from __future__ import annotations

import os
from pathlib import Path

from tools import images, version

K8S_VERSION = "v1.34.4"
COREDNS_VERSION = "v1.14.7"
HELM_VERSION = "v3.19.5"
# The NetworkPolicy engine: kube-router's firewall alone (iptables + ipset). kube-network-policies needs
# nftables `queue` verdicts (CONFIG_NFT_QUEUE), which this kind of kernel may lack.
KUBE_ROUTER_VERSION = "v2.1.0"

# Debian packages the harness uses; installed only when missing.
APT_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "etcd": "etcd-server",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ipset": "ipset",
    "gcc": "gcc",
    "docker-registry": "docker-registry",  # the harness registry (distribution 2.8)
    "skopeo": "skopeo",  # the air-gapped bundle's load.sh copies images with it
}

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("FX_CLUSTER_CACHE", Path.home() / ".cache" / "fx"))
K8S_BIN = CACHE / "k8s" / K8S_VERSION
TOOLS_BIN = CACHE / "bin"  # coredns, helm, kube-router, pause (versioned names)
IMAGES = CACHE / "images"  # image archives ready for `ctr images import`
# Everything a running cluster owns lives under STATE (removed by cluster-down), except what
# the kernel keeps elsewhere (netns, iptables, the bridge, cgroups): state.json records that.
STATE = Path(os.environ.get("FX_CLUSTER_STATE", "/var/lib/fx-cluster"))
KUBECONFIG = STATE / "admin.kubeconfig"

# Network: a host-only bridge. The node IP is the bridge's address; pods get routes to the
# pod subnet and the service range only, never a default route.
BRIDGE = "fxbr0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SVC_IP = "10.96.0.1"
DNS_SVC_IP = "10.96.0.10"
NODE_NAME = "fx-node"
CGROUP_PARENT = "fx-cluster"  # every process the harness starts runs below this cgroup

ETCD_CLIENT = "127.0.0.1:23790"
ETCD_PEER = "127.0.0.1:23800"
APISERVER_PORT = 6443
# An image registry on the bridge, as an operator's cluster has one: fx's images and chart are pushed there and
# the node pulls them by name over TLS (certificate from the harness CA, which containerd and the host's tools trust).
REGISTRY = f"{NODE_IP}:5000"
REGISTRY_CA = STATE / "pki" / "ca.crt"

PAUSE_IMAGE = "localhost/fx/pause:3.10"
COREDNS_IMAGE = f"localhost/fx/coredns:{COREDNS_VERSION}"
# fx's own images (tools.images): <IMAGE_REGISTRY>/{controller,gateway,runtime-python}:<IMAGE_TAG>.
IMAGE_REGISTRY = images.DEFAULT_REGISTRY
IMAGE_TAG = version.current()
OWN_IMAGE = "localhost/fx/e2e-own-image:1"  # a function that brings its own image (tests/e2e/own-image)
