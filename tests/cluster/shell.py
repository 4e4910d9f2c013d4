"""tools.shell for the harness: its Debian packages (layout.APT_PACKAGES) unless told others."""

from __future__ import annotations

from tests.cluster import layout
from tools import shell
from tools.shell import log, run, step

__all__ = ["ensure_apt_packages", "log", "run", "step"]


def ensure_apt_packages(packages: dict[str, str] = layout.APT_PACKAGES) -> None:
    shell.ensure_apt_packages(packages)
