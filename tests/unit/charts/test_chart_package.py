"""`make chart` (tools/chart.py): a real `helm package`, read back with helm as `helm install` would read it."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.unit.charts.test_chart import _helm
from tools import chart, version


@pytest.fixture
def helm_built() -> None:
    """chart.package needs helm, which a fresh machine has only once the e2e tier built it (it runs these again)."""
    _helm()


def helm_show(what: str, package: Path) -> str:
    return subprocess.run([_helm(), "show", what, str(package)], capture_output=True, text=True, check=True).stdout


def packaged(package: Path, name: str) -> str:
    with tarfile.open(package) as tgz:
        return tgz.extractfile(f"fx/{name}").read().decode()  # type: ignore[union-attr]


def test_the_package_is_the_repos_chart_at_the_projects_version(tmp_path: Path, helm_built) -> None:
    package = chart.package(out=tmp_path)
    assert package == tmp_path / f"fx-{version.current()}.tgz" and package.is_file()
    shown = yaml.safe_load(helm_show("chart", package))
    assert shown["version"] == shown["appVersion"] == version.current()
    assert packaged(package, "values.yaml") == (chart.CHART / "values.yaml").read_text()
    with tarfile.open(package) as tgz:
        names = set(tgz.getnames())
    assert {"fx/Chart.yaml", "fx/values.schema.json", "fx/crds/functions.fx.dev.yaml"} <= names


def test_registry_and_version_are_baked_into_a_copy(tmp_path: Path, helm_built) -> None:
    before = (chart.CHART / "values.yaml").read_text(), (chart.CHART / "Chart.yaml").read_text()
    package = chart.package("registry.example.com:5000/fx", "7.8.9", tmp_path)
    assert package.name == "fx-7.8.9.tgz"
    shown = yaml.safe_load(helm_show("chart", package))
    assert (shown["version"], shown["appVersion"]) == ("7.8.9", "7.8.9")
    assert yaml.safe_load(helm_show("values", package))["image"]["registry"] == "registry.example.com:5000/fx"
    changed = [
        (old, new)
        for old, new in zip(before[0].splitlines(), packaged(package, "values.yaml").splitlines(), strict=True)
        if old != new
    ]  # that line alone, its comment kept
    assert changed == [
        (
            "  registry: localhost/fx   # where controller, gateway and runtime-python are: make push REGISTRY=...",
            "  registry: registry.example.com:5000/fx   # where controller, gateway and runtime-python are: make push"
            " REGISTRY=...",
        )
    ]
    # Installed without --set, its pods pull from that registry at that version.
    done = subprocess.run([_helm(), "template", "fx", str(package)], capture_output=True, text=True, check=True)
    images = {line.split("image: ")[1] for line in done.stdout.splitlines() if "image: " in line}
    names = ("controller", "gateway", "runtime-python")
    assert images == {f"registry.example.com:5000/fx/{name}:7.8.9" for name in names}
    assert ((chart.CHART / "values.yaml").read_text(), (chart.CHART / "Chart.yaml").read_text()) == before


def test_a_version_helm_would_refuse_is_refused_before_packaging(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a version"):
        chart.package(chart_version="latest", out=tmp_path)
    assert not list(tmp_path.iterdir())
