"""The rule of a function's name (a DNS-1123 label), which API and API key names follow too: apart from fx.models
so that the CLI checks a name without importing pydantic (its read commands start in tens of ms)."""

from __future__ import annotations

import re

# Patterns end in \Z, not $: "$" also matches before a trailing newline, so "hello\n" would pass.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
NAME_MAX = 63


def check_name(name: str) -> str:
    """A function name is a DNS-1123 label, because it becomes Kubernetes object names."""
    if not name:
        raise ValueError("function name is empty")
    if len(name) > NAME_MAX:
        raise ValueError(f"function name {name!r} is {len(name)} characters; the limit is {NAME_MAX}")
    if not NAME_RE.match(name):
        raise ValueError(
            f"function name {name!r} is not a DNS-1123 label: use lower-case letters, digits and '-',"
            " starting and ending with a letter or digit (e.g. 'hello-world')"
        )
    return name
