"""fx's container images, as an operator builds and pushes them (`make images`, `make push`, issue 17).

    python -m tools.images build|push|save|sizes [--registry R] [--tag T] [--base B]
                                                 [--ca-file F | --tls-verify false] [--out DIR]

Three images, `<registry>/controller`, `<registry>/gateway` and `<registry>/runtime-python`, tagged with the
project's version (tools/version.py), from the repo's Dockerfiles, with the first builder found of buildah,
podman and docker. Their base is fx's own Debian (bookworm, made here by debootstrap from Debian's mirror:
needs root) unless `--base` names another image with python3 (3.11+) and pip, e.g. python:3.11-slim.

An image whose inputs (Dockerfile, the files it copies, base, build args) have not changed since it was built
is not built again: each carries the digest of its inputs as a label. buildah keeps its images under
~/.cache/fx/buildah (FX_CLUSTER_CACHE), apart from the machine's own storage: list them with
`buildah --root ~/.cache/fx/buildah/storage images`. Only buildah is exercised by fx's own runs; podman and
docker take the same path (this machine has docker's client but no engine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools import version
from tools.shell import ensure_apt_packages, log, run, step

REPO = version.REPO
CACHE = Path(os.environ.get("FX_CLUSTER_CACHE", Path.home() / ".cache" / "fx"))
DEFAULT_REGISTRY = "localhost/fx"
# The OCI distribution grammar (what registries and containerd accept): a host with an optional port, then
# lower-case path components; a tag of up to 128 word characters, dots and dashes. Checked before any build.
REGISTRY_FORMAT = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
TAG_FORMAT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def registry_arg(value: str) -> str:
    """argparse type for --registry: host[:port]/path, a trailing slash dropped."""
    value = value.rstrip("/")
    if not REGISTRY_FORMAT.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not host[:port]/path with a lower-case path (e.g. registry.example.com:5000/fx)"
        )
    return value


def tag_arg(value: str) -> str:
    """argparse type for --tag: empty (the project's version) or an image tag."""
    if value and not TAG_FORMAT.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an image tag: letters, digits, _ . - (at most 128)")
    return value


SOURCE = os.environ.get("FX_SOURCE_URL", "https://example.invalid/fx")  # no public home yet: an honest placeholder
INPUTS_LABEL = "dev.fx.inputs"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# fx's Debian bases: the images run on DEBIAN_BASE (python3; passwd for the Dockerfiles' useradd, not in
# minbase); their pip installs run on DEBIAN_BUILD_BASE, which adds pip and binutils (strip), neither shipped.
DEBIAN_BASE = f"localhost/fx/debian-python:{DEBIAN_SUITE}"
DEBIAN_BUILD_BASE = f"localhost/fx/debian-python-build:{DEBIAN_SUITE}"
BASE_PACKAGES = ["python3", "passwd", "ca-certificates"]
BUILD_PACKAGES = [*BASE_PACKAGES, "python3-pip", "binutils"]
# Dropped from the debootstrapped tree: documentation (but each package's copyright), manuals, translations,
# apt's package lists and caches (an image that needs a package runs `apt-get update` first).
TRIM = ["usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists", "var/log/*"]
# What a refused push's cause means for the operator: cause text -> what to do.
PUSH_HINTS = {
    "x509:": "trust the registry's CA: --ca-file FILE, make push CA_FILE=FILE",
    "server gave HTTP response to HTTPS client": "plain HTTP: --tls-verify false, make push TLS_VERIFY=false",
    "unauthorized": "log in first: buildah login (or podman login, docker login) with the registry's host",
}
# The host's trust store, mounted into RUN steps, for pip behind a TLS-intercepting proxy (as this machine's).
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Image:
    name: str  # the repository under the registry
    dockerfile: Path
    context: Path

    def ref(self, registry: str, tag: str) -> str:
        return f"{registry.rstrip('/')}/{self.name}:{tag}"


RUNTIME = Image("runtime-python", REPO / "runtime-images/Dockerfile", REPO / "runtime-images")
IMAGES = [
    Image("controller", REPO / "controller/Dockerfile", REPO),
    Image("gateway", REPO / "gateway/Dockerfile", REPO),
    RUNTIME,
]


class ImageError(Exception):
    """What went wrong, said so an operator can act on it."""


@dataclass(frozen=True)
class Builder:
    """One of buildah, podman, docker, behind the few verbs fx needs."""

    name: str

    @property
    def argv(self) -> list[str]:
        if self.name == "buildah":  # fx's own storage: the harness's builds share it, the machine's stays as it was
            return ["buildah", "--root", str(CACHE / "buildah/storage"), "--runroot", str(CACHE / "buildah/run")]
        return [self.name]

    def __call__(self, *args: str | Path) -> str:
        """Its output; on failure, what it printed goes to stderr (tools.shell.run)."""
        return run([*self.argv, *args], quiet=True).stdout.strip()

    def inspect(self, ref: str) -> dict | None:
        """The image's config (Id, Size, Labels), or None when the builder has no such image."""
        done = run([*self.argv, "inspect", *self._image_type, ref], check=False, quiet=True)
        if done.returncode != 0:
            return None
        found = json.loads(done.stdout)
        data = found[0] if isinstance(found, list) else found
        if self.name == "buildah":  # buildah's own shape: the OCI config and its manifest
            return {"Id": data["FromImageID"], "Labels": data["OCIv1"]["config"].get("Labels") or {}}
        return {"Id": data["Id"], "Labels": data["Config"].get("Labels") or {}, "Size": data["Size"]}

    @property
    def _image_type(self) -> list[str]:
        return ["--type", "image"] if self.name in ("buildah", "docker") else []

    def size(self, ref: str) -> int:
        """Bytes of the image's layers, uncompressed (what a node stores)."""
        if self.name != "buildah":
            return int((self.inspect(ref) or {})["Size"])
        for entry in json.loads(self("images", "--json", ref)):
            return _parse_size(entry["size"])
        raise ImageError(f"no image {ref}")

    def build(self, ref: str, dockerfile: Path, context: Path, args: dict[str, str], labels: dict[str, str]) -> None:
        flags = [f for k, v in args.items() for f in ("--build-arg", f"{k}={v}")]
        flags += [f for k, v in labels.items() for f in ("--label", f"{k}={v}")]
        if self.name != "docker":
            flags += ["--isolation", "chroot"]
            if Path(HOST_CA_BUNDLE).exists():  # docker build has no volumes: pip then trusts the image's own store
                flags += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        self("build", *flags, "-t", ref, "-f", dockerfile, context)

    def push(self, ref: str, ca_file: Path | None, tls_verify: bool) -> None:
        if self.name == "docker":
            if ca_file or not tls_verify:
                host = ref.split("/", 1)[0]
                raise ImageError(
                    f"docker takes a registry's CA from /etc/docker/certs.d/{host}/ca.crt and an insecure registry"
                    " from daemon.json, not per push: set it up there and push without --ca-file/--tls-verify"
                )
            self("push", ref)
            return
        with tempfile.TemporaryDirectory() as certs:  # buildah and podman want a directory of CAs
            flags = [f"--tls-verify={str(tls_verify).lower()}"]
            if ca_file:
                shutil.copy(ca_file, Path(certs) / "ca.crt")
                flags.append(f"--cert-dir={certs}")
            self("push", *flags, ref, f"docker://{ref}")

    def save(self, ref: str, archive: Path) -> None:
        """An oci-archive of the image (docker writes its own archive, an OCI layout since Docker 25)."""
        if self.name == "buildah":
            self("push", ref, f"oci-archive:{archive}:{ref}")
        elif self.name == "podman":
            self("save", "--format", "oci-archive", "-o", archive, ref)
        else:
            self("save", "-o", archive, ref)


def _parse_size(text: str) -> int:
    """buildah's "123 MB" (decimal units, as it prints them)."""
    number, unit = text.split()
    return int(float(number) * {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9}[unit])


def detect_builder() -> Builder:
    for name in ("buildah", "podman", "docker"):
        if shutil.which(name):
            return Builder(name)
    raise ImageError(
        "no image builder: install buildah (Debian/Ubuntu: apt-get install buildah; Fedora: dnf install buildah),"
        " podman or docker"
    )


def qualified(image: str) -> str:
    """python:3.11-slim as Docker reads it, docker.io/library/python:3.11-slim: buildah and podman resolve short
    names only through registries.conf, which Debian's leaves empty."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if slash else f"docker.io/library/{image}"


def revision() -> str:
    done = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _copied(dockerfile: Path, context: Path) -> list[Path]:
    """The files a Dockerfile's COPY lines take from the context (what its image depends on)."""
    files = [dockerfile, *(p for p in [context / ".dockerignore"] if p.exists())]
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                path = context / source
                found = sorted(path.rglob("*")) if path.is_dir() else [path]
                files += [f for f in found if f.is_file() and "__pycache__" not in f.parts]
    return files


def inputs_digest(paths: Sequence[Path], extra: str = "") -> str:
    """What an image is made of: its files (by their path in the repo, or their name) and `extra` (base, build
    args)."""
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path.name).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_dockerfile(
    builder: Builder,
    ref: str,
    dockerfile: Path,
    context: Path,
    bases: dict[str, str],
    args: dict[str, str] | None = None,
) -> bool:
    """Build `ref` from `dockerfile` unless its inputs are those it was built from; True if built. `bases`: the
    build args that name the images it is built FROM (BASE, BUILD_BASE), `args` the others."""
    args = {**bases, **(args or {})}
    base_ids = [(builder.inspect(base) or {}).get("Id", "") for base in bases.values()]  # a rebuilt local base
    digest = inputs_digest(_copied(dockerfile, context), json.dumps([args, base_ids]))
    if ((builder.inspect(ref) or {}).get("Labels") or {}).get(INPUTS_LABEL) == digest:
        log(f"{ref}: up to date")
        return False
    if same := builder("images", "--quiet", "--filter", f"label={INPUTS_LABEL}={digest}").split():
        builder("tag", same[0], ref)  # built before under another name (registry)
        log(f"{ref}: up to date (tagged {same[0]})")
        return False
    where = dockerfile.relative_to(REPO) if dockerfile.is_relative_to(REPO) else dockerfile
    with step(f"{ref} ({builder.name} build -f {where})"):
        builder.build(ref, dockerfile, context, args, {INPUTS_LABEL: digest})
    return True


def debian_rootfs(packages: list[str]) -> Path:
    """A minimal Debian root filesystem with `packages`, as a tarball (debootstrap runs once per machine)."""
    key = inputs_digest([], json.dumps([DEBIAN_SUITE, packages, TRIM]))[:8]
    tarball = CACHE / f"debian-{DEBIAN_SUITE}-{key}-rootfs.tar"
    if tarball.exists():
        return tarball
    if os.geteuid() != 0:
        raise ImageError("fx's Debian base is made by debootstrap, which needs root: run as root, or --base IMAGE")
    ensure_apt_packages({"debootstrap": "debootstrap"})
    CACHE.mkdir(parents=True, exist_ok=True)
    with (
        step(f"debootstrap {DEBIAN_SUITE} ({', '.join(packages)})"),
        tempfile.TemporaryDirectory(dir=CACHE) as tmp,
    ):
        rootfs = Path(tmp) / "rootfs"
        include = f"--include={','.join(packages)}"
        run(["debootstrap", "--variant=minbase", include, DEBIAN_SUITE, rootfs, DEBIAN_MIRROR], quiet=True)
        for pattern in TRIM:
            for path in rootfs.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for doc in (rootfs / "usr/share/doc").glob("*/*"):
            if doc.name != "copyright":
                shutil.rmtree(doc) if doc.is_dir() and not doc.is_symlink() else doc.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", rootfs, "--numeric-owner", "-cf", partial, "."])
        partial.rename(tarball)
    return tarball


def debian_base(builder: Builder, ref: str, packages: list[str]) -> str:
    """A Debian base image (from debian_rootfs), built if missing or made from another rootfs."""
    tarball = debian_rootfs(packages)
    with tempfile.TemporaryDirectory(dir=CACHE) as context:
        os.link(tarball, Path(context) / "rootfs.tar")  # the build context, without copying 200 MB
        dockerfile = Path(context) / "Dockerfile"
        # The label names the tarball, whose name carries the hash of what it was made from.
        dockerfile.write_text(
            f"FROM scratch\nADD rootfs.tar /\nLABEL dev.fx.rootfs={tarball.name}\n"
            'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/bash"]\n'
        )
        build_dockerfile(builder, ref, dockerfile, Path(context), {})
    return ref


def build(registry: str, tag: str, base: str | None = None, builder: Builder | None = None) -> list[str]:
    """fx's three images, built where missing or changed; their references."""
    builder = builder or detect_builder()
    if base:  # pip runs on the base itself (BUILD_BASE defaults to BASE)
        bases = {"BASE": qualified(base)}
    else:
        bases = {
            "BASE": debian_base(builder, DEBIAN_BASE, BASE_PACKAGES),
            "BUILD_BASE": debian_base(builder, DEBIAN_BUILD_BASE, BUILD_PACKAGES),
        }
    labels = {"VERSION": tag, "REVISION": revision(), "SOURCE": SOURCE}
    refs = []
    for image in IMAGES:
        ref = image.ref(registry, tag)
        build_dockerfile(builder, ref, image.dockerfile, image.context, bases, labels)
        refs.append(ref)
    return refs


def push(registry: str, tag: str, base: str | None, ca_file: Path | None, tls_verify: bool) -> list[str]:
    if registry == DEFAULT_REGISTRY:
        raise ImageError(f"{DEFAULT_REGISTRY} is the local default: push needs REGISTRY=host[:port]/path")
    builder = detect_builder()
    refs = build(registry, tag, base, builder)
    for ref in refs:
        with step(f"push {ref}"):
            try:
                builder.push(ref, ca_file, tls_verify)
            except subprocess.CalledProcessError as exc:
                cause = ((exc.stderr or exc.stdout or "").strip().splitlines() or ["no output"])[-1]
                hint = next((f" ({hint})" for text, hint in PUSH_HINTS.items() if text in cause), "")
                raise ImageError(f"{registry.split('/', 1)[0]} refused {ref}: {cause}{hint}") from exc
    return refs


def save(registry: str, tag: str, base: str | None, out: Path) -> list[Path]:
    """One oci-archive per image, <out>/<name>.oci.tar."""
    builder = detect_builder()
    build(registry, tag, base, builder)
    out.mkdir(parents=True, exist_ok=True)
    archives = []
    for image in IMAGES:
        archive = out / f"{image.name}.oci.tar"
        archive.unlink(missing_ok=True)
        with step(f"save {image.ref(registry, tag)} -> {archive}"):
            builder.save(image.ref(registry, tag), archive)
        archives.append(archive)
    return archives


def sizes(registry: str, tag: str, builder: Builder | None = None) -> dict[str, int]:
    builder = builder or detect_builder()
    return {ref: builder.size(ref) for ref in (image.ref(registry, tag) for image in IMAGES) if builder.inspect(ref)}


def print_sizes(registry: str, tag: str) -> None:
    found = sizes(registry, tag)
    for ref in (image.ref(registry, tag) for image in IMAGES):
        print(f"{ref}  {found[ref] / 1e6:.0f} MB" if ref in found else f"{ref}  (not built)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "push", "save", "sizes"])
    parser.add_argument(
        "--registry", type=registry_arg, default=DEFAULT_REGISTRY, help=f"host[:port]/path (default {DEFAULT_REGISTRY})"
    )
    parser.add_argument("--tag", type=tag_arg, default="", help="default: the project's version")
    parser.add_argument("--base", default="", help="an image with python3 and pip (default: fx's Debian base)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--ca-file", type=Path, help="push: trust the registry's certificate from this CA")
    tls.add_argument("--tls-verify", choices=["true", "false"], default="true", help="push: false for plain HTTP")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="save: where the archives go")
    args = parser.parse_args(argv)
    tag = args.tag or version.current()
    try:
        if args.command == "build":
            build(args.registry, tag, args.base or None)
        elif args.command == "push":
            push(args.registry, tag, args.base or None, args.ca_file, args.tls_verify == "true")
        elif args.command == "save":
            for archive in save(args.registry, tag, args.base or None, args.out):
                print(archive)
            return 0
        print_sizes(args.registry, tag)
    except ImageError as exc:
        print(f"tools.images: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"tools.images: {' '.join(exc.cmd)} failed (exit {exc.returncode}; its output is above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
