"""The packaged chart (`make chart`): `python -m tools.chart package [--registry R] [--version V] [--out DIR]`.

Writes DIR/fx-<V>.tgz with `helm package`. V defaults to the project's version (tools/version.py); another V
is the packaged chart's version and appVersion both (so its images default to tag V). With --registry, the
packaged values.yaml defaults image.registry to R, so `helm install oci://...` needs no --set to find the
images. The repo's chart is not touched: a copy is packaged.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import images, version

CHART = version.REPO / "charts" / "fx"
HELM_CACHE = Path.home() / ".cache" / "fx" / "bin"  # where tests/cluster/build.py puts the helm it builds
# values.yaml's image.registry line (the first `registry:` under the top-level `image:`), comment kept.
REGISTRY_LINE = re.compile(r"^(image:\n(?:[ #].*\n)*?  registry: )(\S+)", re.M)


def helm() -> str | None:
    """The harness's helm (the newest in ~/.cache/fx/bin), else the one on PATH."""
    cached = sorted(HELM_CACHE.glob("helm-v*"))
    return str(cached[-1]) if cached else shutil.which("helm")


def set_registry(values: str, registry: str) -> str:
    if not REGISTRY_LINE.search(values):
        raise SystemExit("charts/fx/values.yaml: no image.registry line")
    return REGISTRY_LINE.sub(lambda m: m.group(1) + registry, values, count=1)


def package(registry: str | None = None, chart_version: str | None = None, out: Path = version.REPO / "dist") -> Path:
    if chart_version:
        version.check(chart_version)  # before helm is looked for: a bad version is the error to report
    binary = helm()
    if binary is None:
        raise SystemExit("no helm: put helm 3.8+ on PATH (https://helm.sh/docs/intro/install/), or run make cluster-up")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "charts" / "fx"
        shutil.copytree(CHART, copy)
        if chart_version:
            version.set_version(chart_version, Path(tmp), [p for p in version.PLACES if p[0] == version.CHART_YAML])
        if registry:
            values = copy / "values.yaml"
            values.write_text(set_registry(values.read_text(), registry))
        out.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([binary, "package", copy, "--destination", out], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"helm package failed: {done.stderr.strip()}")
    return out / f"fx-{chart_version or version.current()}.tgz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chart", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["package"])
    parser.add_argument(
        "--registry", type=images.registry_arg, help="host[:port]/path of fx's images: the packaged image.registry"
    )
    parser.add_argument("--version", dest="chart_version", help="default: the project's version")
    parser.add_argument("--out", type=Path, default=version.REPO / "dist")
    args = parser.parse_args(argv)
    print(package(args.registry, args.chart_version, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
