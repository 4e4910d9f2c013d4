"""The cluster's certificates, made with openssl: a CA, the apiserver's and the registry's serving certs, one admin
client cert (used by every component: this is a test cluster, not a hardened one) and the service-account key pair."""

from __future__ import annotations

from pathlib import Path

from tests.cluster import layout
from tests.cluster.shell import run

SERVER_NAMES = [
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "DNS:localhost",
    f"IP:{layout.NODE_IP}",
    f"IP:{layout.KUBERNETES_SVC_IP}",
    "IP:127.0.0.1",
]


def openssl(*args: str | Path) -> None:
    run(["openssl", *args], quiet=True)


def _signed(pki: Path, name: str, subject: str, extensions: str) -> None:
    key, csr, ext = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.ext"
    openssl("genrsa", "-out", key, "2048")
    openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    ext.write_text(extensions)
    ca = ["-CA", pki / "ca.crt", "-CAkey", pki / "ca.key", "-CAcreateserial", "-days", "30"]
    openssl("x509", "-req", "-in", csr, *ca, "-extfile", ext, "-out", pki / f"{name}.crt")
    csr.unlink()
    ext.unlink()


def make(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    openssl("genrsa", "-out", pki / "ca.key", "2048")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        pki / "ca.key",
        "-subj",
        "/CN=fx-cluster-ca",
        "-days",
        "30",
        "-out",
        pki / "ca.crt",
    )
    _signed(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName={','.join(SERVER_NAMES)}\n",
    )
    _signed(
        pki,
        "registry",
        "/CN=fx-registry",
        f"keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:{layout.NODE_IP}\n",
    )
    _signed(pki, "admin", "/O=system:masters/CN=fx-admin", "keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    openssl("genrsa", "-out", pki / "sa.key", "2048")
    openssl("rsa", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub")


def kubeconfig(pki: Path, server: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: fx
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: fx-admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: fx
  context: {{cluster: fx, user: fx-admin}}
current-context: fx
"""
