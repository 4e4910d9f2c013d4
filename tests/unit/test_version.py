"""One version for the CLI, the images and the chart (tools/version.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import version


def test_every_place_holds_the_same_version() -> None:
    found = version.everywhere()
    assert len(found) == 7  # five pyprojects, the chart's version and appVersion
    assert set(found.values()) == {version.current()}, found


def test_set_rewrites_every_place_and_nothing_else(tmp_path: Path) -> None:
    for path, _, _ in version.PLACES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(version.REPO / path, tmp_path / path)
    before = {p: (tmp_path / p).read_text() for p, _, _ in version.PLACES}

    changed = version.set_version("3.4.5-rc.1", tmp_path)

    assert sorted(set(changed)) == sorted({p for p, _, _ in version.PLACES})
    assert set(version.everywhere(tmp_path).values()) == {"3.4.5-rc.1"}
    assert version.current(tmp_path) == "3.4.5-rc.1"
    for path, text in before.items():  # only the version lines changed
        old, new = text.splitlines(), (tmp_path / path).read_text().splitlines()
        assert len(old) == len(new) and sum(a != b for a, b in zip(old, new, strict=True)) in (1, 2), path


def test_set_refuses_what_helm_would_not_take(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a version"):
        version.set_version("v1.2", tmp_path)
