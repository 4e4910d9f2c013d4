"""The images only the test cluster needs: pause and CoreDNS (from scratch, one static binary each), exported as
archives for `ctr -n k8s.io images import`, and tests/e2e/own-image (a function that brings its own image, built
FROM fx's runtime image as users build theirs), which the e2e tier pushes to the registry beside fx's three
images (tools.images, `make images`): the node pulls those by name.

`python -m tests.cluster.images` builds what is missing. An archive's name carries a hash of its inputs, so a
changed input is rebuilt and exported again, and an unchanged one is not; the own-image is rebuilt when its
inputs or its base change (tools.images' inputs label).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster import build, layout
from tests.cluster.shell import ensure_apt_packages, step
from tools import images
from tools.images import Builder

BUILDAH = Builder("buildah")


def _export(image: str, archive: Path) -> Path:
    if archive.exists():
        return archive
    layout.IMAGES.mkdir(parents=True, exist_ok=True)
    for old in layout.IMAGES.glob(archive.name.rsplit("-", 1)[0] + "-*.tar"):
        old.unlink()  # older builds of the same image
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    BUILDAH("push", image, f"docker-archive:{partial}:{image}")
    partial.rename(archive)
    BUILDAH("rmi", "--prune")  # the previous build of this tag, now untagged
    return archive


def static_image(image: str, binary: Path, entrypoint: list[str], name: str) -> Path:
    """An image holding one static binary at /, nothing else."""
    archive = layout.IMAGES / f"{name}-{images.inputs_digest([binary], image)}.tar"
    if archive.exists():
        return archive
    with step(f"image {image}"):
        ctr = BUILDAH("from", "scratch")
        BUILDAH("copy", ctr, binary, f"/{entrypoint[0].lstrip('/')}")
        BUILDAH("config", "--entrypoint", json.dumps(entrypoint), "--cmd", "", ctr)
        BUILDAH("commit", "--rm", ctr, image)
        return _export(image, archive)


def own_image() -> str:
    """tests/e2e/own-image FROM the runtime image tools.images builds, built where missing or changed."""
    images.build(layout.IMAGE_REGISTRY, layout.IMAGE_TAG, builder=BUILDAH)
    own = layout.REPO / "tests/e2e/own-image"
    runtime = images.RUNTIME.ref(layout.IMAGE_REGISTRY, layout.IMAGE_TAG)
    images.build_dockerfile(BUILDAH, layout.OWN_IMAGE, own / "Dockerfile", own, {"BASE": runtime})
    return layout.OWN_IMAGE


def push_own_image(target: str, ca_file: Path | None) -> None:
    """The own-image pushed as `target` (a registry's name for it), where the node pulls it as a user's image."""
    BUILDAH("tag", own_image(), target)
    BUILDAH.push(target, ca_file, tls_verify=True)


def all_archives() -> list[Path]:
    """Every image the cluster preloads, built if missing."""
    ensure_apt_packages()
    return [
        static_image(layout.PAUSE_IMAGE, build.pause(), ["/pause"], "pause"),
        static_image(layout.COREDNS_IMAGE, build.coredns(), ["/coredns"], "coredns"),
    ]


if __name__ == "__main__":
    print(own_image())
    for path in all_archives():
        print(path)
