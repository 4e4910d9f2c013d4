"""tools/bundle.py's own logic: the wheel platforms it asks pip for, and the image archives it accepts. The
bundle itself (images, chart, wheels, load.sh against a registry and containerd) is
tests/integration/test_bundle.py, and tests/e2e installs fx from one."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tools import bundle


def test_a_glibc_platform_takes_every_older_manylinux_wheel() -> None:
    tags = bundle.pip_platforms("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-1] == "manylinux1_x86_64"
    # pynacl publishes manylinux_2_26, pyyaml manylinux2014 (= 2_17) alone for some releases
    assert {"manylinux_2_26_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(tags)
    assert "manylinux_2_34_x86_64" not in tags
    assert bundle.pip_platforms("manylinux_2_17_aarch64")[-3:] == [
        "manylinux2014_aarch64",
        "manylinux2010_aarch64",
        "manylinux1_aarch64",
    ]


@pytest.mark.parametrize("platform", ["musllinux_1_2_x86_64", "macosx_11_0_arm64", "win_amd64"])
def test_other_platforms_are_passed_as_given(platform: str) -> None:
    assert bundle.pip_platforms(platform) == [platform]


def _archive(path: Path, manifests: list[dict] | None) -> Path:
    with tarfile.open(path, "w") as tar:
        if manifests is not None:
            data = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
            info = tarfile.TarInfo("index.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_image_archive_holds_exactly_one_image(tmp_path: Path) -> None:
    one = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64, "size": 1}
    assert bundle.image_digest(_archive(tmp_path / "one.tar", [one])) == "sha256:" + "a" * 64
    with pytest.raises(SystemExit, match="holds 2 images, not one"):
        bundle.image_digest(_archive(tmp_path / "two.tar", [one, one]))
    with pytest.raises(SystemExit, match=r"has no index\.json: not an oci-archive"):
        bundle.image_digest(_archive(tmp_path / "none.tar", None))
