"""Container images without a registry: a Debian base made by debootstrap, images built by buildah from it
(or from scratch for static binaries), exported as archives for `ctr -n k8s.io images import`.

`python -m tests.cluster.images` builds what is missing. An archive's name carries a hash of its inputs,
so a changed Dockerfile or runtime source is rebuilt and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from tests.cluster import build, layout
from tests.cluster.shell import ensure_apt_packages, run, step

BUILDAH_ROOT = layout.CACHE / "buildah"
REPO = layout.REPO
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# python3 for the runtime; passwd for the Dockerfile's useradd (not in minbase).
BASE_PACKAGES = ["python3", "python3-pip", "passwd", "ca-certificates"]


def buildah(*args: str | Path, quiet: bool = True) -> str:
    cmd = ["buildah", "--root", BUILDAH_ROOT / "storage", "--runroot", BUILDAH_ROOT / "run", *args]
    return run(cmd, quiet=quiet, capture_output=True).stdout.strip()


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(str(path.relative_to(layout.REPO) if path.is_relative_to(layout.REPO) else path).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _archive(name: str, digest: str) -> Path:
    return layout.IMAGES / f"{name}-{digest}.tar"


def _export(image: str, archive: Path) -> Path:
    layout.IMAGES.mkdir(parents=True, exist_ok=True)
    for old in layout.IMAGES.glob(archive.name.rsplit("-", 1)[0] + "-*.tar"):
        old.unlink()  # older builds of the same image
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    buildah("push", image, f"docker-archive:{partial}:{image}")
    partial.rename(archive)
    buildah("rmi", "--prune")  # the previous build of this tag, now untagged
    return archive


def debian_rootfs() -> Path:
    """A minimal Debian root filesystem with python3, as a tarball (debootstrap runs once per machine)."""
    tarball = layout.CACHE / f"debian-{layout.DEBIAN_SUITE}-rootfs.tar"
    if tarball.exists():
        return tarball
    with step(f"debootstrap {layout.DEBIAN_SUITE}"), tempfile.TemporaryDirectory(dir=layout.CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                layout.DEBIAN_SUITE,
                rootfs,
                DEBIAN_MIRROR,
            ],
            quiet=True,
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        run(["tar", "-C", rootfs, "--numeric-owner", "-cf", tarball.with_suffix(".partial"), "."])
        tarball.with_suffix(".partial").rename(tarball)
    return tarball


def _ensure_base() -> None:
    tarball = debian_rootfs()
    if _has_image(layout.BASE_IMAGE):
        return
    with step("base image from the Debian rootfs"):
        ctr = buildah("from", "scratch")
        buildah("add", ctr, tarball, "/")
        buildah(
            "config",
            "--cmd",
            "/bin/bash",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ctr,
        )
        buildah("commit", "--rm", ctr, layout.BASE_IMAGE)


def _has_image(image: str) -> bool:
    cmd = ["buildah", "--root", BUILDAH_ROOT / "storage", "--runroot", BUILDAH_ROOT / "run", "inspect", image]
    return run(cmd, check=False, quiet=True).returncode == 0


def static_image(image: str, binary: Path, entrypoint: list[str], name: str) -> Path:
    """An image holding one static binary at /, nothing else."""
    archive = _archive(name, _digest([binary], image))
    if archive.exists():
        return archive
    with step(f"image {image}"):
        ctr = buildah("from", "scratch")
        buildah("copy", ctr, binary, f"/{entrypoint[0].lstrip('/')}")
        buildah("config", "--entrypoint", json.dumps(entrypoint), "--cmd", "", ctr)
        buildah("commit", "--rm", ctr, image)
        return _export(image, archive)


def _copied(dockerfile: Path, context: Path) -> list[Path]:
    """The files a Dockerfile's COPY lines take from the context (what its image depends on)."""
    files = [dockerfile, *(p for p in [context / ".dockerignore"] if p.exists())]
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                path = context / source
                found = sorted(path.rglob("*")) if path.is_dir() else [path]
                files += [f for f in found if f.is_file() and "__pycache__" not in f.parts]
    return files


def dockerfile_image(
    image: str, dockerfile: Path, context: Path, base: str = layout.BASE_IMAGE, base_archive: Path | None = None
) -> Path:
    """An image from one of the repo's Dockerfiles, built by buildah FROM `base` (the local Debian by default;
    another image built here comes with its archive, whose name changes with its content)."""
    name = image.rsplit("/", 1)[1].split(":")[0]
    archive = _archive(name, _digest(_copied(dockerfile, context), image + base + str(base_archive or "")))
    if archive.exists():
        return archive
    _ensure_base()
    if base_archive is not None and not _has_image(base):
        buildah("pull", f"docker-archive:{base_archive}")
    with step(f"image {image} (buildah bud {dockerfile.relative_to(layout.REPO)})"):
        buildah(
            "bud",
            "--isolation",
            "chroot",
            "--pull-never",
            # The host's trust store, for pip inside RUN steps (this machine may reach PyPI through a TLS proxy).
            "--volume",
            f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            "--build-arg",
            f"BASE={base}",
            "-t",
            image,
            "-f",
            dockerfile,
            context,
        )
        return _export(image, archive)


def all_archives() -> list[Path]:
    """Every image the cluster preloads, built if missing."""
    ensure_apt_packages()
    runtime = dockerfile_image(layout.RUNTIME_IMAGE, REPO / "runtime-images/Dockerfile", REPO / "runtime-images")
    own = REPO / "tests/e2e/own-image"
    return [
        static_image(layout.PAUSE_IMAGE, build.pause(), ["/pause"], "pause"),
        static_image(layout.COREDNS_IMAGE, build.coredns(), ["/coredns"], "coredns"),
        runtime,
        dockerfile_image(layout.CONTROLLER_IMAGE, REPO / "controller/Dockerfile", REPO),
        dockerfile_image(layout.GATEWAY_IMAGE, REPO / "gateway/Dockerfile", REPO),
        # A function with its own image, for tests/e2e: built FROM the runtime image, as users build theirs.
        dockerfile_image(layout.OWN_IMAGE, own / "Dockerfile", own, base=layout.RUNTIME_IMAGE, base_archive=runtime),
    ]


if __name__ == "__main__":
    for path in all_archives():
        print(path)
