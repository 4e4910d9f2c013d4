import io
import os
import zipfile
from pathlib import Path

import pytest
from fx import build

from tests.wheels import make_wheel


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "handler.py").write_text("def handler(e, c):\n    return 1\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "fx.yaml").write_text("functions:\n  p: {}\n")
    for junk in (".git/HEAD", "__pycache__/handler.cpython-311.pyc", ".venv/lib/x.py", "node_modules/m.js", ".fx/t"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("junk")
    (root / "pkg" / "stale.pyc").write_bytes(b"\0")
    return root


def entries(artifact: build.Artifact) -> dict[str, zipfile.ZipInfo]:
    return {i.filename: i for i in zipfile.ZipFile(io.BytesIO(artifact.data)).infolist()}


def test_zip_holds_the_code_sorted_with_fixed_times_and_modes(project):
    artifact = build.build(project)
    infos = entries(artifact)
    assert list(infos) == ["handler.py", "pkg/util.py", "run.sh"]
    assert {i.date_time for i in infos.values()} == {(1980, 1, 1, 0, 0, 0)}
    assert infos["run.sh"].external_attr >> 16 & 0o777 == 0o755
    assert infos["handler.py"].external_attr >> 16 & 0o777 == 0o644
    assert artifact.unzipped_size == sum(i.file_size for i in infos.values())


def test_same_code_gives_the_same_digest_whatever_the_mtimes(project):
    first = build.build(project)
    os.utime(project / "handler.py", (1_000_000, 1_000_000))
    (project / "__pycache__" / "new.pyc").write_bytes(b"x")
    assert build.build(project).digest == first.digest
    (project / "handler.py").write_text("def handler(e, c):\n    return 2\n")
    assert build.build(project).digest != first.digest


def test_comment_only_requirements_install_nothing(project, tmp_path, monkeypatch):
    monkeypatch.setenv("FX_CACHE_DIR", str(tmp_path / "cache"))
    (project / "requirements.txt").write_text("# nothing yet\n\n")
    assert "requirements.txt" in entries(build.build(project))
    assert not (tmp_path / "cache").exists()


def test_dependencies_are_installed_once_and_cached(project, tmp_path, monkeypatch):
    """A local wheel stands in for PyPI, so the test needs no network."""
    wheel = make_wheel(tmp_path)
    monkeypatch.setenv("FX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    (project / "requirements.txt").write_text(f"{wheel}\n")
    first = build.build(project)
    assert "tinydep/__init__.py" in entries(first)
    [cached] = (tmp_path / "cache" / "deps").iterdir()
    wheel.unlink()  # a second install would now fail
    assert build.build(project).digest == first.digest  # served from the cache: same bytes
    assert list((tmp_path / "cache" / "deps").iterdir()) == [cached]


def test_a_package_over_the_limit_is_refused(project, monkeypatch):
    monkeypatch.setattr(build, "MAX_UNZIPPED_BYTES", 10)
    with pytest.raises(build.BuildError, match="limit is"):
        build.build(project)
