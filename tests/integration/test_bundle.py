"""The air-gapped bundle's load.sh, run from an extracted bundle against a real registry (Debian's
docker-registry, TLS from a CA made here) and a containerd of the test's own. Tiny OCI images made here
stand in for fx's three, so no image is built (tests/e2e installs fx from a real bundle)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.loopback import free_port
from tests.waiting import wait_for
from tools import bundle
from tools.shell import ensure_apt_packages

VERSION = "0.2.0"
SAVED_AS = "localhost/fx"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def oci_archive(path: Path, reference: str) -> None:
    """An oci-archive of one image: one layer holding a file named after the image, as buildah push writes it."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        _add(tar, reference.replace("/", "_"), b"fx\n")
    blobs: dict[str, bytes] = {}

    def descriptor(media_type: str, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": f"application/vnd.oci.image.{media_type}", "digest": digest, "size": len(data)}

    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("config.v1+json", json.dumps(config).encode()),
        "layers": [descriptor("layer.v1.tar+gzip", gzip.compress(layer.getvalue(), mtime=0))],
    }
    top = descriptor("manifest.v1+json", json.dumps(manifest).encode())
    top["annotations"] = {"org.opencontainers.image.ref.name": reference}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)


@pytest.fixture
def extracted(tmp_path: Path) -> Path:
    """A bundle as tools.bundle writes it (tiny images, a stand-in chart), extracted with tar as an operator would."""
    stage = tmp_path / "stage" / f"fx-bundle-{VERSION}"
    (stage / "images").mkdir(parents=True)
    for name in bundle.NAMES:
        oci_archive(stage / "images" / f"{name}.oci.tar", f"{SAVED_AS}/{name}:{VERSION}")
    (stage / "chart").mkdir()
    (stage / "chart" / f"fx-{VERSION}.tgz").write_bytes(gzip.compress(b"a chart"))
    bundle.finish(stage, VERSION, VERSION, SAVED_AS)
    tarball = tmp_path / f"fx-bundle-{VERSION}.tar"
    bundle.write_tar(stage, tarball)
    subprocess.run(["tar", "-C", tmp_path, "-xf", tarball], check=True)
    return tmp_path / stage.name


def load(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["./load.sh", *args], cwd=folder, capture_output=True, text=True, env=env, timeout=120)


def manifest_digests(folder: Path) -> dict[str, str]:
    """image name -> the manifest digest MANIFEST lists for it."""
    rows = [line.split("\t") for line in (folder / "MANIFEST").read_text().splitlines() if "\t" in line]
    images = [(Path(path), what) for path, _, what in rows if path.startswith("images/")]
    return {path.name.removesuffix(".oci.tar"): what.rsplit(" ", 1)[1] for path, what in images}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A registry on a free loopback port with a certificate from a CA of its own: (host:port, the CA file)."""
    ensure_apt_packages({"docker-registry": "docker-registry", "skopeo": "skopeo", "openssl": "openssl"})
    pki = tmp_path / "pki"
    pki.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=registry")
    (pki / "ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
    openssl("x509", "-req", "-in", "tls.csr", *ca, "-extfile", "ext", "-out", "tls.crt")
    address = f"127.0.0.1:{free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry")}},
        "http": {"addr": address, "tls": {"certificate": str(pki / "tls.crt"), "key": str(pki / "tls.key")}},
    }
    (tmp_path / "registry.yml").write_text(json.dumps(config))  # YAML reads JSON
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", tmp_path / "registry.yml"], stdout=log, stderr=log)
    try:
        wait_for(lambda: _answers(f"https://{address}/v2/", pki / "ca.crt"), 30, "the registry to answer")
        yield address, pki / "ca.crt"
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str, ca: Path) -> bool:
    try:
        return httpx.get(url, verify=ssl.create_default_context(cafile=ca)).status_code == 200
    except httpx.TransportError:
        return False


def catalog(address: str, ca: Path) -> list[str]:
    return httpx.get(f"https://{address}/v2/_catalog", verify=ssl.create_default_context(cafile=ca)).json()[
        "repositories"
    ]


def test_load_copies_every_image_to_the_registry_and_prints_the_install_line(
    extracted: Path, registry: tuple[str, Path]
) -> None:
    address, ca = registry
    done = load(extracted, "--registry", f"{address}/airgap", "--ca-file", str(ca))
    assert done.returncode == 0, done.stderr
    certs = ca.parent / "certs"
    certs.mkdir()
    shutil.copy(ca, certs / "ca.crt")
    for name, digest in manifest_digests(extracted).items():
        reference = f"docker://{address}/airgap/{name}:{VERSION}"
        inspect = subprocess.run(["skopeo", "inspect", "--cert-dir", certs, reference], capture_output=True, text=True)
        assert inspect.returncode == 0, inspect.stderr
        assert json.loads(inspect.stdout)["Digest"] == digest
    assert sorted(manifest_digests(extracted)) == sorted(bundle.NAMES)
    chart = extracted / "chart" / f"fx-{VERSION}.tgz"
    helm = f"helm install fx {chart} -n fx --create-namespace --set image.registry={address}/airgap"
    assert helm in done.stdout
    assert f"pip install --no-index --find-links {extracted / 'wheels'} fx-sdk" in done.stdout


def test_load_changes_nothing_when_a_file_is_missing_or_damaged(extracted: Path, registry: tuple[str, Path]) -> None:
    address, ca = registry
    (extracted / "images" / f"{bundle.NAMES[-1]}.oci.tar").rename(extracted / "elsewhere.tar")
    done = load(extracted, "--registry", f"{address}/airgap", "--ca-file", str(ca))
    assert (done.returncode, done.stdout) == (1, "")
    assert f"missing from the bundle: images/{bundle.NAMES[-1]}.oci.tar" in done.stderr

    (extracted / "elsewhere.tar").rename(extracted / "images" / f"{bundle.NAMES[-1]}.oci.tar")
    with (extracted / "images" / f"{bundle.NAMES[0]}.oci.tar").open("ab") as archive:
        archive.write(b"\0")
    done = load(extracted, "--registry", f"{address}/airgap", "--ca-file", str(ca))
    assert (done.returncode, done.stdout) == (1, "")
    assert f"images/{bundle.NAMES[0]}.oci.tar: FAILED" in done.stderr
    assert catalog(address, ca) == []


def test_load_names_the_package_when_skopeo_is_missing(extracted: Path, tmp_path: Path) -> None:
    path = tmp_path / "bin"  # the tools load.sh uses, without skopeo
    path.mkdir()
    for tool in ["sh", "dirname", "sha256sum"]:
        (path / tool).symlink_to(shutil.which(tool))
    done = load(extracted, "--registry", "registry.example.com/fx", env={"PATH": str(path)})
    assert done.returncode == 1
    assert "skopeo is missing: install it (Debian/Ubuntu: apt-get install skopeo" in done.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "say where the images go"),
        (["--registry", "https://registry.example.com/fx"], "without a scheme"),
        (["--registry", "registry.example.com/fx:1"], "with no tag, digest or trailing /"),
        (["--registry", "r.example.com/fx", "--insecure", "--ca-file", "load.sh"], "exclude each other"),
        (["--registry", "r.example.com/fx", "--chart-repo", "https://r.example.com/charts"], "takes an OCI URL"),
        (["--registry"], "--registry needs a value"),
        (["--push"], "unknown argument: --push"),
    ],
)
def test_load_refuses_bad_arguments(extracted: Path, args: list[str], error: str) -> None:
    done = load(extracted, *args)
    assert done.returncode == 2
    assert error in done.stderr


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    """A containerd of this test's own (root and state under tmp_path, its sockets in a short directory of its own;
    no CRI), never the node's."""
    if os.geteuid() != 0 or not shutil.which("containerd"):
        pytest.skip("needs root and containerd (the Kubernetes harness installs it)")
    home = tmp_path / "containerd"
    home.mkdir()
    # Not under tmp_path: a Unix socket's path has at most 104 bytes, and pytest's pass that (pytest-103/popen-gw0/..).
    sockets = Path(tempfile.mkdtemp(prefix="fx-containerd-"))
    socket = sockets / "containerd.sock"
    (home / "config.toml").write_text(
        f'version = 2\nroot = "{home}/root"\nstate = "{home}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\naddress = "{socket}"\n[ttrpc]\naddress = "{socket}.ttrpc"\n'
        f'[plugins."io.containerd.internal.v1.opt"]\npath = "{home}/opt"\n'
    )
    log = home / "containerd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["containerd", "--config", home / "config.toml"], stdout=out, stderr=out)
    try:
        wait_for(lambda: socket.is_socket() or process.poll() is not None, 30, "containerd's socket")
        assert process.poll() is None, f"containerd exited: {log.read_text()[-2000:]}"
        yield socket
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(sockets, ignore_errors=True)


def test_load_imports_into_containerd_under_the_registry_the_chart_is_given(extracted: Path, containerd: Path) -> None:
    done = load(extracted, "--containerd", "--address", str(containerd), "--registry", "registry.example.com/fx")
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        ["ctr", "-a", containerd, "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True, check=True
    )
    names = [f"registry.example.com/fx/{name}:{VERSION}" for name in bundle.NAMES]
    assert sorted(listed.stdout.split()) == sorted(names)
    assert "--set image.registry=registry.example.com/fx" in done.stdout
