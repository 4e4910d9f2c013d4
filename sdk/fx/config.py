"""Where the CLI finds the gateway and its token.

Each setting is taken from the first source that has it: flags, then the environment
(FX_GATEWAY, FX_TOKEN), then the config file ($FX_CONFIG or ~/.config/fx/config.json,
written by `fx up` and `fx login`), then the defaults: the local gateway and the token
`fx up` left in .fx/admin-token of the current folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fx.errors import InputError

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
DEFAULT_TOKEN_FILE = Path(".fx") / "admin-token"


@dataclass(frozen=True)
class Settings:
    gateway: str
    token: str | None


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("FX_CONFIG"):
        return Path(env["FX_CONFIG"]).expanduser()
    return Path.home() / ".config" / "fx" / "config.json"


def read_config(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the fx config: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the fx config must be a JSON object with 'gateway' and 'token'")
    return {k: v for k, v in raw.items() if k in ("gateway", "token") and isinstance(v, str) and v}


def resolve(
    gateway: str | None = None,
    token: str | None = None,
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
) -> Settings:
    file = read_config(config_path(env))
    gateway = gateway or env.get("FX_GATEWAY") or file.get("gateway") or DEFAULT_GATEWAY
    token = token or env.get("FX_TOKEN") or file.get("token") or _local_token(cwd or Path.cwd())
    return Settings(gateway=with_scheme(gateway).rstrip("/"), token=token)


def with_scheme(gateway: str) -> str:
    """127.0.0.1:18085 is taken as http://127.0.0.1:18085, as curl takes it."""
    return gateway if "://" in gateway else f"http://{gateway}"


def _local_token(cwd: Path) -> str | None:
    try:
        return (cwd / DEFAULT_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def write_config(settings: Settings, env: Mapping[str, str] = os.environ) -> Path:
    """Save gateway and token, readable by the owner only (the token is an admin secret)."""
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"gateway": settings.gateway, "token": settings.token}, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover tmp file
    os.replace(tmp, path)
    return path
