"""Where fx keeps a user's files on a host: the CLI's config and the cache, shared by the CLI (contexts,
builds) and the embedded controller (which hides the config from function sandboxes and caches runtime
dependencies beside the builds)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MANIFEST = "fx.yaml"  # a project's manifest, in its folder (fx.manifest reads it)


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("FX_CONFIG"):
        return Path(env["FX_CONFIG"]).expanduser()
    return Path.home() / ".config" / "fx" / "config.json"


def cache_dir() -> Path:
    return Path(os.environ.get("FX_CACHE_DIR") or Path.home() / ".cache" / "fx")
