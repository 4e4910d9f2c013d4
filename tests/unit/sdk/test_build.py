import io
import os
import shutil
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


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("FX_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(package: build.Package | None) -> dict[str, zipfile.ZipInfo]:
    assert package is not None
    return {i.filename: i for i in zipfile.ZipFile(io.BytesIO(package.data())).infolist()}


def test_zip_holds_the_code_sorted_with_fixed_times_and_modes(project):
    artifact = build.build(project).code
    infos = entries(artifact)
    assert list(infos) == ["handler.py", "pkg/util.py", "run.sh"]
    assert {i.date_time for i in infos.values()} == {(1980, 1, 1, 0, 0, 0)}
    assert infos["run.sh"].external_attr >> 16 & 0o777 == 0o755
    assert infos["handler.py"].external_attr >> 16 & 0o777 == 0o644
    assert artifact.unzipped_size == sum(i.file_size for i in infos.values())


def test_same_code_gives_the_same_digest_whatever_the_mtimes(project, cache):
    first = build.build(project).code
    os.utime(project / "handler.py", (1_000_000, 1_000_000))
    (project / "__pycache__" / "new.pyc").write_bytes(b"x")
    assert build.build(project).code.digest == first.digest
    shutil.rmtree(cache)  # computed afresh, not remembered: still the same zip
    assert build.build(project).code.digest == first.digest
    (project / "handler.py").write_text("def handler(e, c):\n    return 2\n")
    assert build.build(project).code.digest != first.digest


def test_an_unchanged_tree_is_not_zipped_again(project, monkeypatch):
    first = build.build(project).code
    zipped = []
    monkeypatch.setattr(build, "_zip", lambda files, level: zipped.append(files) or b"")
    again = build.build(project).code
    assert again.digest == first.digest and zipped == []  # the digest came from the hash of the files
    (project / "pkg" / "util.py").write_text("X = 2\n")
    build.build(project)
    assert len(zipped) == 1


def test_the_source_digest_covers_paths_modes_and_contents(project):
    files = build.ignore.select(project).files
    base = build.source_digest(files)
    assert build.source_digest(dict(reversed(files.items()))) == base  # order of discovery does not matter
    (project / "handler.py").chmod(0o755)
    assert build.source_digest(files) != base
    (project / "handler.py").chmod(0o644)
    assert build.source_digest(files) == base
    moved = {("pkg/other.py" if k == "pkg/util.py" else k): v for k, v in files.items()}
    assert build.source_digest(moved) != base
    (project / "pkg" / "util.py").write_text("X = 3\n")
    assert build.source_digest(files) != base


def test_comment_only_requirements_install_nothing(project, cache):
    (project / "requirements.txt").write_text("# nothing yet\n\n")
    built = build.build(project)
    assert "requirements.txt" in entries(built.code) and built.dependencies is None
    assert not (cache / "deps").exists()


def test_dependencies_are_a_layer_of_their_own_installed_once(project, tmp_path, cache, monkeypatch):
    """A local wheel stands in for PyPI, so the test needs no network."""
    wheel = make_wheel(tmp_path)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    (project / "requirements.txt").write_text(f"{wheel}\n")
    lines: list[str] = []
    first = build.build(project, progress=lines.append)
    assert "tinydep/__init__.py" in entries(first.dependencies)
    assert "tinydep/__init__.py" not in entries(first.code)
    assert any(line.startswith("pip: Installing collected packages") for line in lines)
    assert lines[-1].startswith("zipping the dependency layer")
    wheel.unlink()  # a second install would now fail
    (project / "handler.py").write_text("def handler(e, c):\n    return 3\n")
    again = build.build(project)
    assert again.dependencies is not None and first.dependencies is not None
    assert again.dependencies.digest == first.dependencies.digest  # served from the cache: same layer
    assert again.code.digest != first.code.digest
    assert len([p for p in (cache / "deps").iterdir() if p.is_dir()]) == 1


def test_a_package_over_the_limit_is_refused(project, monkeypatch):
    monkeypatch.setattr(build, "MAX_UNZIPPED_BYTES", 10)
    with pytest.raises(build.BuildError, match="limit is"):
        build.build(project)


def test_requirements_kept_out_of_the_code_by_a_rule_are_still_installed(project, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    (project / "requirements.txt").write_text(f"{make_wheel(tmp_path)}\n")
    (project / ".fxignore").write_text("requirements.txt\n")
    built = build.build(project)
    assert "requirements.txt" not in entries(built.code)
    assert "tinydep/__init__.py" in entries(built.dependencies)
    assert built.ignored == "1 file ignored (.fxignore)"


def test_a_pin_changed_in_an_included_requirements_file_installs_again(project, tmp_path, cache, monkeypatch):
    """requirements.txt of `-r base.txt` alone was the cache key: a new pin in base.txt reused the old layer."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    first_wheels, second_wheels = tmp_path / "w1", tmp_path / "w2"
    first_wheels.mkdir()
    second_wheels.mkdir()
    first_wheel, second_wheel = make_wheel(first_wheels), make_wheel(second_wheels, source="VALUE = 2\n")
    (project / "requirements.txt").write_text("-r base.txt\n")
    (project / "base.txt").write_text(f"--constraint=pins.txt\n{first_wheel}\n")
    (project / "pins.txt").write_text("")
    first = build.build(project)
    (project / "base.txt").write_text(f"--constraint=pins.txt\n{second_wheel}\n")
    second = build.build(project)
    assert first.dependencies is not None and second.dependencies is not None
    assert second.dependencies.digest != first.dependencies.digest
    (project / "pins.txt").write_text("# a constraint file changed: installed again\n")
    third = build.build(project).dependencies
    assert third is not None and third.digest == second.dependencies.digest  # the same files installed
    assert len([p for p in (cache / "deps").iterdir() if p.is_dir()]) == 3
