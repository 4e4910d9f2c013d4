"""fx's one version: the CLI, the images and the chart are released together, so they carry the same number.

`python -m tools.version` prints it (charts/fx/Chart.yaml's appVersion); `python -m tools.version set X.Y.Z`
writes it into every place that holds it (PLACES). tests/unit/test_version.py fails when they disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART_YAML = Path("charts/fx/Chart.yaml")
SEMVER = re.compile(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?")

APP_VERSION = re.compile(r'^(appVersion: ")([^"]+)(")$', re.M)
# (file, key, the line holding the version): group 2 is the version, groups 1 and 3 what surrounds it.
PLACES: list[tuple[Path, str, re.Pattern[str]]] = [
    *(
        (Path(part, "pyproject.toml"), "version", re.compile(r'^(version = ")([^"]+)(")', re.M))
        for part in ("core", "sdk", "gateway", "controller", "runtime-images")
    ),
    (CHART_YAML, "version", re.compile(r"^(version: )(\S+)()$", re.M)),
    (CHART_YAML, "appVersion", APP_VERSION),
]


def current(root: Path = REPO) -> str:
    """The project's version: the chart's appVersion."""
    found = APP_VERSION.search((root / CHART_YAML).read_text())
    if not found:
        raise SystemExit(f"{root / CHART_YAML}: no appVersion line")
    return found.group(2)


def everywhere(root: Path = REPO) -> dict[str, str]:
    """ "<file>:<key>" -> the version written there, for each of the places."""
    found = {}
    for path, key, pattern in PLACES:
        match = pattern.search((root / path).read_text())
        found[f"{path}:{key}"] = match.group(2) if match else "<missing>"
    return found


def check(version: str) -> None:
    """Refuse what Helm would not take as a chart version."""
    if not SEMVER.fullmatch(version):
        raise SystemExit(f"{version!r} is not a version like 1.2.3 (Helm charts need SemVer 2)")


def set_version(
    version: str, root: Path = REPO, places: list[tuple[Path, str, re.Pattern[str]]] = PLACES
) -> list[Path]:
    """Write `version` into every place (or those of `places`); the files changed (relative to `root`)."""
    check(version)
    changed = []
    for path, _, pattern in places:
        text = (root / path).read_text()
        if not pattern.search(text):
            raise SystemExit(f"{root / path}: no line matching {pattern.pattern}")
        new = pattern.sub(lambda m: m.group(1) + version + m.group(3), text, count=1)
        if new != text:
            (root / path).write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if not argv:
        print(current())
        return 0
    if argv[0] == "set" and len(argv) == 2:
        for path in dict.fromkeys(set_version(argv[1])):
            print(f"{path}: {argv[1]}", file=sys.stderr)
        return 0
    print("usage: python -m tools.version [set X.Y.Z]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
