"""`fx version` (and `fx --version`): the CLI's release and, when it answers, the platform's; a warning when they
are of different releases (major.minor), since the CLI and the platform are released together."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, err, fetch, gateway_url, print_json
from fx.errors import FxError

DIST_INFO = ("fx_sdk-", ".dist-info")  # an installed fx-sdk's metadata folder: fx_sdk-VERSION.dist-info


def cli_version() -> str:
    """fx-sdk's installed version. Read from its .dist-info folder's name (the wheel spec and pip name it
    NAME-VERSION.dist-info) where the path has one, as importlib.metadata would find it: importing that costs 10-15 ms
    of a start of ~60 (it loads the email package to read the METADATA file), for a version the name holds."""
    import os

    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a path hook, a folder gone
            continue
        for name in names:
            if name.startswith(DIST_INFO[0]) and name.endswith(DIST_INFO[1]):
                return name.removeprefix(DIST_INFO[0]).removesuffix(DIST_INFO[1])
    from importlib.metadata import version  # another kind of install (an .egg-info...)

    return version("fx-sdk")


class VersionAction(argparse._VersionAction):  # argparse's own, so shtab's completion treats it as --version
    """argparse's `version` action, the version looked up only when --version is given."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        self.version = f"fx {cli_version()}"
        super().__call__(parser, *args)


def _release(v: str) -> tuple[int, ...]:
    """major.minor of a version such as 1.2.3 or 1.2.0rc1; what cannot be read compares as ()."""
    try:
        return tuple(int(part) for part in v.split(".")[:2])
    except ValueError:
        return ()


def skew(cli: str, platform: str) -> bool:
    """Different releases: a patch version apart is the same release, a minor or major version is not."""
    return _release(cli) != _release(platform)


def skew_warning(cli: str, platform: str) -> str:
    pin = f"pip install 'fx-sdk=={platform}'"
    if _release(cli) < _release(platform):
        advice = f"upgrade the CLI ({pin})"
    else:
        advice = f"install the platform's CLI ({pin}) or upgrade the platform (helm upgrade, docs/install.md)"
    return f"fx: fx CLI {cli} and platform {platform} differ: {advice}"


def cmd_version(args: argparse.Namespace) -> int:
    """Exit 0 even when the gateway cannot say, or says another release: the question asked was answered."""
    gateway = gateway_url(args)
    try:
        platform: str | None = str(fetch(args, "/system/version")["version"])  # a light read
    except FxError as exc:
        platform = None
        err(f"fx: the platform's version is unknown: {exc}")
    skewed = platform is not None and skew(cli_version(), platform)
    if skewed:
        err(skew_warning(cli_version(), platform))
    if args.output == "json":
        print_json({"cli": cli_version(), "gateway": gateway, "platform": platform, "skew": skewed})
        return EXIT_OK
    print(f"fx CLI:   {cli_version()}")
    if platform:
        print(f"platform: {platform} ({gateway})")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add("version", cmd_version, "show the CLI's version and the platform's (when its gateway answers)", OUTPUT)
