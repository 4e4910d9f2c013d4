"""The air-gapped bundle: `python -m tools.bundle [--out dist]` (`make bundle`) writes dist/fx-bundle-<version>.tar
with everything an install on a cluster without internet needs, made on a machine that has it:

    fx-bundle-<version>/
      images/<name>.oci.tar   controller, gateway, runtime-python (`python -m tools.images save`)
      chart/fx-<version>.tgz  the packaged chart (`python -m tools.chart package`)
      wheels/                 the fx CLI (fx-sdk, fx-core, fx-runtime) and every dependency
      load.sh                 loads the images into a registry (skopeo) or a node's containerd (tools/load.sh)
      MANIFEST                what each file is, its size, and each image's digest
      README.txt              the steps in short
      INSTALL.md              docs/install.md: every step, upgrades too
      SHA256SUMS              checked by load.sh before it loads anything

The tar is not compressed: image layers, the chart and wheels are already.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tools import chart, images, version
from tools.shell import log, run, step

REPO = version.REPO
NAMES = [image.name for image in images.IMAGES]
LOAD_SH = Path(__file__).with_name("load.sh")
# The CLI's distributions, built from this checkout; pip brings their dependencies.
CLI_SOURCES = ["core", "runtime-images", "sdk"]
SCRATCH = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")

README = """\
fx {version}: the air-gapped bundle (images tagged {tag}). Every step, upgrades too: INSTALL.md.

1. Load the images, either into your registry (skopeo needed; every node must be able to pull from it):
     ./load.sh --registry registry.example.com:5000/fx [--ca-file ca.crt | --insecure] \\
         [--chart-repo oci://registry.example.com:5000/charts]
   or into each node's containerd (run it on every node, as root; ctr needed):
     ./load.sh --containerd --registry localhost/fx
2. Install with the line load.sh prints, e.g.
     helm install fx chart/fx-{version}.tgz -n fx --create-namespace --set image.registry=registry.example.com:5000/fx
3. The CLI, without internet:
     pip install --no-index --find-links wheels fx-sdk
     fx version

MANIFEST lists what each file is; load.sh checks SHA256SUMS before it loads anything.
"""


def wheels(out: Path, python_version: str | None, platforms: list[str]) -> None:
    """fx's three distributions and every dependency as wheels, for this interpreter: built here by `pip wheel`
    (fetched from the index, or built from sdists such as nkeys, which has no wheel). For another Python or
    platform, `pip download` then picks each dependency's wheel for that target from the index, or the one
    built here when it is pure Python; pip cannot build for a target it does not run on."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    native = python_version is None and not platforms
    with tempfile.TemporaryDirectory() as tmp:
        here = out if native else Path(tmp) / "wheels"
        with step("fx's wheels"):
            # From clean copies: setuptools reuses a source folder's build/, where a module deleted since stays.
            copies = [shutil.copytree(REPO / s, Path(tmp) / "src" / s, ignore=SCRATCH) for s in CLI_SOURCES]
            run([*pip, "wheel", "-q", "--no-deps", "-w", here, *copies])
        ours = sorted(here.glob("*.whl"))  # given as files, so no index's package of the same name can stand in
        with step("their dependencies for this Python (pip wheel)"):
            run([*pip, "wheel", "-q", "-w", here, *ours])
        if native:
            return
        target = [*(["--python-version", python_version] if python_version else [])]
        target += [f"--platform={tag}" for platform in platforms for tag in pip_platforms(platform)]
        with step(
            f"their dependencies for Python {python_version or 'as here'} on {' '.join(platforms) or 'this machine'}"
        ):
            run([*pip, "download", "-q", "--only-binary=:all:", *target, "--find-links", here, "-d", out, *ours])


def pip_platforms(platform: str) -> list[str]:
    """The platform tags a system of `platform` runs: manylinux_2_28_x86_64 (glibc 2.28) takes every older
    manylinux wheel too, as pip knows for its own machine but not for a --platform it is given."""
    found = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not found:
        return [platform]
    glibc, arch = int(found[1]), found[2]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    older = range(glibc, 4, -1)
    return [f"manylinux_2_{m}_{arch}" for m in older] + [f"{legacy[m]}_{arch}" for m in older if m in legacy]


def image_digest(archive: Path) -> str:
    """The manifest digest of the one image in an oci-archive: what a registry reports after a copy."""
    with tarfile.open(archive) as tar:
        try:
            manifests = json.load(tar.extractfile("index.json"))["manifests"]
        except KeyError:
            raise SystemExit(f"bundle: {archive} has no index.json: not an oci-archive") from None
    if len(manifests) != 1:
        raise SystemExit(f"bundle: {archive} holds {len(manifests)} images, not one")
    return manifests[0]["digest"]


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def describe(path: Path, registry: str, tag: str) -> str:
    """What a file of the bundle is, for MANIFEST."""
    if path.parent.name == "images":
        name = path.name.removesuffix(".oci.tar")
        return f"image {registry}/{name}:{tag}, manifest {image_digest(path)}"
    if path.parent.name == "chart":
        return "the Helm chart (helm install fx <this file> ...)"
    if path.name.startswith(("fx_sdk-", "fx_core-", "fx_runtime-")):
        return "the fx CLI (pip install --no-index --find-links wheels fx-sdk)"
    if path.suffix == ".whl":
        return "a dependency of the fx CLI"
    return {
        "load.sh": "loads the images into a registry or containerd, prints the helm install line (--help)",
        "README.txt": "the steps in short",
        "INSTALL.md": "every step, upgrades too (fx's docs/install.md)",
    }[path.name]


def finish(stage: Path, release: str, tag: str, registry: str) -> None:
    """Adds load.sh, README.txt, INSTALL.md, MANIFEST and SHA256SUMS to a folder with images/, chart/ and wheels/."""
    missing = [f"images/{n}.oci.tar" for n in NAMES if not (stage / "images" / f"{n}.oci.tar").is_file()]
    missing += [f"chart/fx-{release}.tgz"] * (not (stage / "chart" / f"fx-{release}.tgz").is_file())
    if missing:
        raise SystemExit(f"bundle: {stage} lacks {', '.join(missing)}")
    values = {"VERSION": release, "TAG": tag, "IMAGES": " ".join(NAMES), "REGISTRY": registry}
    script = LOAD_SH.read_text()
    for key, value in values.items():
        script = script.replace(f"@{key}@", value)
    (stage / "load.sh").write_text(script)
    (stage / "load.sh").chmod(0o755)
    (stage / "README.txt").write_text(README.format(version=release, tag=tag))
    shutil.copy(REPO / "docs" / "install.md", stage / "INSTALL.md")

    files = sorted(p for p in stage.rglob("*") if p.is_file())
    lines = [
        f"fx {release} air-gapped bundle, images {registry}/<name>:{tag}",
        f"made {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} from revision {images.revision()}",
        "",
        "path\tbytes\twhat",
        *(f"{p.relative_to(stage)}\t{p.stat().st_size}\t{describe(p, registry, tag)}" for p in files),
    ]
    (stage / "MANIFEST").write_text("\n".join(lines) + "\n")
    sums = [f"{sha256(p)}  {p.relative_to(stage)}" for p in [*files, stage / "MANIFEST"]]
    (stage / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def write_tar(stage: Path, bundle: Path) -> None:
    partial = bundle.with_name(bundle.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(stage, arcname=stage.name, filter=_root_owned)
    partial.rename(bundle)


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the bundle goes (default: dist)")
    parser.add_argument(
        "--registry",
        type=images.registry_arg,
        default=images.DEFAULT_REGISTRY,
        help=f"the images' names in the bundle and the chart's image.registry (default {images.DEFAULT_REGISTRY})",
    )
    parser.add_argument(
        "--tag", type=images.tag_arg, default="", help="the images' tag (default: the project's version)"
    )
    parser.add_argument("--base", default="", help="the images' base (default: fx's Debian base, as make images)")
    parser.add_argument("--python-version", help="the CLI's wheels for this Python (e.g. 3.12) instead of this one")
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        help="the CLI's wheels for this pip platform (e.g. manylinux_2_28_x86_64; may repeat) instead of this machine",
    )
    args = parser.parse_args(argv)
    release = version.current()
    tag = args.tag or release
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / f"fx-bundle-{release}.tar"
    try:
        with step(f"bundle {bundle}"), tempfile.TemporaryDirectory(dir=out, prefix=".bundle-") as tmp:
            stage = Path(tmp) / bundle.name.removesuffix(".tar")
            images.save(args.registry, tag, args.base or None, stage / "images")
            with step("chart"):
                chart.package(args.registry, None, stage / "chart")
            wheels(stage / "wheels", args.python_version, args.platform)
            finish(stage, release, tag, args.registry)
            with step(f"write {bundle.name}"):
                write_tar(stage, bundle)
            print((stage / "MANIFEST").read_text(), end="")
    except images.ImageError as exc:
        print(f"tools.bundle: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"tools.bundle: {' '.join(exc.cmd)} failed (exit {exc.returncode}; its output is above)", file=sys.stderr)
        return 1
    log(f"{bundle}: {bundle.stat().st_size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
