"""`python -m tests.cluster.up`: build what is missing, then start a single-node cluster and wait until it is Ready.

Order: the image registry, etcd, containerd, kube-apiserver, then controller-manager, scheduler, kubelet and
kube-proxy together, then kube-router's NetworkPolicy firewall once the node is registered, then CoreDNS; the
cluster's own images are imported into containerd meanwhile (a Ready node does not need them, pods do); fx's
images are not: tests/e2e pushes them to the registry and the node pulls them by name.
Every daemon runs below the harness's cgroup with its log in STATE/logs, and everything is recorded before
it is created (state.py), so a failed start is torn down completely (`--keep-on-failure` keeps it to look at).
"""

from __future__ import annotations

import ssl
import string
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tests.cluster import build, images, layout, pki, state, volumes
from tests.cluster.shell import log, run, step

LOGS = layout.STATE / "logs"
IMPORTS = ThreadPoolExecutor(max_workers=1)
DAEMONS_CGROUP = f"{layout.CGROUP_PARENT}/daemons"
# A host-only bridge: traffic that came in on it may go back out on it (pod -> Service -> pod), nowhere else.
FORWARD_GUARD = [["-i", layout.BRIDGE, "-o", layout.BRIDGE, "-j", "ACCEPT"], ["-i", layout.BRIDGE, "-j", "DROP"]]


def render(template: str) -> str:
    text = (layout.HERE / template).read_text()
    return string.Template(text).substitute(
        state=layout.STATE,
        bridge=layout.BRIDGE,
        pod_cidr=layout.POD_CIDR,
        node_ip=layout.NODE_IP,
        node_name=layout.NODE_NAME,
        service_cidr=layout.SERVICE_CIDR,
        dns_ip=layout.DNS_SVC_IP,
        cgroup_parent=layout.CGROUP_PARENT,
        pause_image=layout.PAUSE_IMAGE,
        coredns_image=layout.COREDNS_IMAGE,
        registry=layout.REGISTRY,
    )


def kubectl(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return run([build.kubectl(), "--kubeconfig", layout.KUBECONFIG, *args], **kwargs)  # type: ignore[arg-type]


def succeeds(cmd: list[str | Path]) -> bool:
    return run(cmd, check=False, quiet=True).returncode == 0


def start(record: state.Record, name: str, argv: list[str | Path]) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this script and the terminal's Ctrl-C
            preexec_fn=lambda: state.join_cgroup(DAEMONS_CGROUP),
        )
    record.processes[name] = proc.pid
    record.save()


def wait_for(what: str, check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s (logs: {LOGS})")


def network(record: state.Record) -> None:
    run(["ip", "link", "add", layout.BRIDGE, "type", "bridge"], quiet=True)
    record.bridge = layout.BRIDGE
    record.save()
    prefix = layout.POD_CIDR.split("/")[1]
    run(["ip", "addr", "add", f"{layout.NODE_IP}/{prefix}", "dev", layout.BRIDGE], quiet=True)
    run(["ip", "link", "set", layout.BRIDGE, "up"], quiet=True)
    # Forwarding for this bridge only; the host's global ip_forward is left as it is.
    Path(f"/proc/sys/net/ipv4/conf/{layout.BRIDGE}/forwarding").write_text("1")
    run(["iptables", "-N", "FX-FORWARD"], quiet=True)
    for rule in FORWARD_GUARD:
        run(["iptables", "-A", "FX-FORWARD", *rule], quiet=True)
    run(["iptables", "-I", "FORWARD", "1", "-j", "FX-FORWARD"], quiet=True)


def configs() -> None:
    s = layout.STATE
    (s / "cni/net.d").mkdir(parents=True, exist_ok=True)
    (s / "containerd.toml").write_text(render("configs/containerd.toml"))
    (s / "cni/net.d/10-fx.conflist").write_text(render("configs/cni.conflist"))
    (s / "kubelet.yaml").write_text(render("configs/kubelet.yaml"))
    (s / "kube-proxy.yaml").write_text(render("configs/kube-proxy.yaml"))
    (s / "registry.yml").write_text(render("configs/registry.yml"))
    hosts = s / "containerd/certs.d" / layout.REGISTRY
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(render("configs/registry-hosts.toml"))
    (s / "resolv.conf").write_text("# pods with dnsPolicy Default get no upstream resolver: nothing leaves the node\n")
    pki.make(s / "pki")
    layout.KUBECONFIG.write_text(pki.kubeconfig(s / "pki", f"https://{layout.NODE_IP}:{layout.APISERVER_PORT}"))


def flags(**options: object) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]


def import_images(sock: Path, archives: list[Path]) -> None:
    with step("import images into containerd"):
        for archive in archives:
            run(["ctr", "-a", sock, "-n", "k8s.io", "images", "import", archive], quiet=True)


def control_plane(record: state.Record, archives: list[Path]) -> Future[None]:
    s, k8s, p = layout.STATE, layout.K8S_BIN, layout.STATE / "pki"
    kubeconfig = layout.KUBECONFIG
    etcd_client, etcd_peer = f"http://{layout.ETCD_CLIENT}", f"http://{layout.ETCD_PEER}"
    etcd = flags(
        name="fx",
        data_dir=s / "etcd",
        listen_client_urls=etcd_client,
        advertise_client_urls=etcd_client,
        listen_peer_urls=etcd_peer,
        initial_advertise_peer_urls=etcd_peer,
        initial_cluster=f"fx={etcd_peer}",
    )
    start(record, "etcd", ["etcd", *etcd])
    start(record, "containerd", ["containerd", "--config", s / "containerd.toml"])
    sock = s / "containerd/containerd.sock"
    wait_for("containerd", lambda: succeeds(["ctr", "-a", sock, "version"]), 30)
    # Only pods need the images, not a Ready node: import them while the control plane starts.
    imported = IMPORTS.submit(import_images, sock, archives)
    wait_for("etcd", lambda: urllib.request.urlopen(f"{etcd_client}/health", timeout=1), 30)
    apiserver = flags(
        etcd_servers=etcd_client,
        bind_address=layout.NODE_IP,
        advertise_address=layout.NODE_IP,
        secure_port=layout.APISERVER_PORT,
        service_cluster_ip_range=layout.SERVICE_CIDR,
        client_ca_file=p / "ca.crt",
        tls_cert_file=p / "apiserver.crt",
        tls_private_key_file=p / "apiserver.key",
        service_account_key_file=p / "sa.pub",
        service_account_signing_key_file=p / "sa.key",
        service_account_issuer="https://kubernetes.default.svc.cluster.local",
        kubelet_client_certificate=p / "admin.crt",
        kubelet_client_key=p / "admin.key",
        kubelet_preferred_address_types="InternalIP",
        authorization_mode="Node,RBAC",
        allow_privileged="true",
        profiling="false",
    )
    start(record, "kube-apiserver", [k8s / "kube-apiserver", *apiserver])
    wait_for(
        "kube-apiserver",
        lambda: succeeds([build.kubectl(), "--kubeconfig", layout.KUBECONFIG, "get", "--raw", "/readyz"]),
        60,
    )
    common = flags(
        kubeconfig=kubeconfig,
        authentication_kubeconfig=kubeconfig,
        authorization_kubeconfig=kubeconfig,
        bind_address="127.0.0.1",
        leader_elect="false",
    )
    controller_manager = flags(
        cert_dir=p / "controller-manager",
        service_account_private_key_file=p / "sa.key",
        root_ca_file=p / "ca.crt",
        use_service_account_credentials="true",
        cluster_name="fx",
    )
    start(record, "kube-controller-manager", [k8s / "kube-controller-manager", *common, *controller_manager])
    start(record, "kube-scheduler", [k8s / "kube-scheduler", *common, *flags(cert_dir=p / "scheduler")])
    kubelet = flags(
        config=s / "kubelet.yaml",
        kubeconfig=kubeconfig,
        hostname_override=layout.NODE_NAME,
        node_ip=layout.NODE_IP,
        root_dir=s / "kubelet",
        cert_dir=s / "kubelet/pki",
    )
    start(record, "kubelet", [k8s / "kubelet", *kubelet])
    start(record, "kube-proxy", [k8s / "kube-proxy", *flags(config=s / "kube-proxy.yaml")])
    return imported


def registry(record: state.Record) -> None:
    """The image registry fx's images and chart are pushed to (tests/e2e), on the bridge with TLS."""
    start(record, "registry", ["docker-registry", "serve", layout.STATE / "registry.yml"])
    trusted = ssl.create_default_context(cafile=layout.REGISTRY_CA)
    wait_for("registry", lambda: urllib.request.urlopen(f"https://{layout.REGISTRY}/v2/", context=trusted), 30)


def network_policies(record: state.Record) -> None:
    """kube-router's firewall alone enforces NetworkPolicies (the bridge CNI does not): iptables chains KUBE-ROUTER-*
    and KUBE-POD-FW-*/KUBE-NWPLCY-*, ipsets KUBE-*; it reads the node, so it starts once the node is registered."""
    router = flags(
        kubeconfig=layout.KUBECONFIG,
        hostname_override=layout.NODE_NAME,
        run_firewall="true",
        run_router="false",
        run_service_proxy="false",
        service_cluster_ip_range=layout.SERVICE_CIDR,
        health_port=0,  # no listener: nothing of the harness listens outside 127.0.0.1 and the bridge
        metrics_port=0,
    )
    start(record, "kube-router", [build.kube_router(), *router])
    wait_for("kube-router's firewall", lambda: succeeds(["iptables", "-S", "KUBE-ROUTER-FORWARD"]), 60)


def storage(record: state.Record) -> None:
    """A default StorageClass with static hostPath PVs, and their recycler (tests/cluster/volumes.py)."""
    volumes.make()
    start(record, "pv-recycler", [sys.executable, "-m", "tests.cluster.volumes"])


def node_ready() -> bool:
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    out = kubectl("get", "node", layout.NODE_NAME, "-o", jsonpath, check=False, capture_output=True)
    return out.stdout.strip() == "True"


def healthy() -> bool:
    if state.Record.load() is None or not layout.KUBECONFIG.exists():
        return False
    return node_ready()


def up() -> None:
    build.main()
    archives = images.all_archives()
    if healthy():
        log(f"cluster already up: KUBECONFIG={layout.KUBECONFIG}")
        return
    if state.Record.load() is not None:
        log("a previous cluster was left half-made: removing it first")
        state.teardown()
    began = time.monotonic()
    try:
        record = state.snapshot()
        state.make_cgroup(record, layout.CGROUP_PARENT, delegate=True)
        state.make_cgroup(record, DAEMONS_CGROUP)
        network(record)
        configs()
        registry(record)
        imported = control_plane(record, archives)
        wait_for("node Ready", node_ready, 120)
        log(f"node {layout.NODE_NAME} Ready {time.monotonic() - began:.1f} s after start")
        network_policies(record)
        imported.result()
        kubectl("apply", "-f", "-", input=render("manifests/coredns.yaml"), quiet=True)
        kubectl("-n", "kube-system", "rollout", "status", "deploy/coredns", "--timeout=120s", quiet=True)
        storage(record)
        log(f"cluster up in {time.monotonic() - began:.1f} s: export KUBECONFIG={layout.KUBECONFIG}")
    except BaseException:
        log(f"cluster-up failed; last lines of the daemons' logs ({LOGS}):")
        for path in sorted(LOGS.glob("*.log")) if LOGS.exists() else []:
            tail = path.read_text(errors="replace").splitlines()[-5:]
            sys.stderr.write(f"--- {path.name}\n" + "\n".join(tail) + "\n")
        if "--keep-on-failure" not in sys.argv:
            state.teardown()
        raise


if __name__ == "__main__":
    up()
