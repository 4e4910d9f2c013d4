"""Command-line flags of fx's servers: each has an FX_* environment variable as its default."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any


def env_name(flag: str) -> str:
    """`--hold-timeout` -> `FX_HOLD_TIMEOUT`."""
    return "FX_" + flag.removeprefix("--").replace("-", "_").upper()


def option(
    group: argparse._ActionsContainer,
    flag: str,
    kind: Callable[[str], Any],
    default: Any,
    meaning: str,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Add `flag`, whose default is its FX_* variable if set, else `default`; the help names the variable.

    The variable's text is left for argparse to convert, as it converts string defaults: a bad value then
    ends the program like a bad flag would (exit 2, the flag and the value named), not with a traceback."""
    env = os.environ if environ is None else environ
    name = env_name(flag)
    group.add_argument(flag, type=kind, default=env.get(name, default), help=f"{meaning} [{name}]")
