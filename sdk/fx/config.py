"""Where the CLI finds the gateway and its token: named contexts, as kubectl and the AWS CLI keep them.

The config file ($FX_CONFIG or ~/.config/fx/config.json) holds contexts (a name -> a gateway URL and
a token) and which one is current. `fx login` and `fx up` write it, `fx context` lists, switches and
removes contexts.

Each setting is taken from the first source that has it:
  1. the flags --gateway / --token,
  2. the context named by the flag --context,
  3. the environment: FX_GATEWAY / FX_TOKEN,
  4. the context named by FX_CONTEXT, else the current context,
  5. the defaults: the local gateway and the token `fx up` left in .fx/admin-token of the current folder.
So flags beat environment variables, which beat the config file.

A file of the old single-gateway form ({"gateway": ..., "token": ...}) is read as one context named
"default" (current) and is rewritten in the new form by the next change.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fx.errors import InputError
from fx.paths import config_path

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
DEFAULT_TOKEN_FILE = Path(".fx") / "admin-token"
DEFAULT_CONTEXT = "default"  # the name of an old single-gateway config, and of a login to a nameless host
LOCAL_CONTEXT = "local"  # the context `fx up` writes
_TOKEN = re.compile(r"[!-~]+")  # visible ASCII: what an HTTP header carries (fx's own are URL-safe base64)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}")


@dataclass(frozen=True)
class Settings:
    gateway: str
    token: str | None


@dataclass
class Config:
    """The contexts in the file and the name of the current one (None: no context is current)."""

    contexts: dict[str, Settings] = field(default_factory=dict)
    current: str | None = None

    def put(self, name: str, settings: Settings) -> None:
        self.contexts[check_name(name)] = settings

    def use(self, name: str, path: Path) -> None:
        self.require(name, path)
        self.current = name

    def remove(self, name: str, path: Path) -> None:
        self.require(name, path)
        del self.contexts[name]
        if self.current == name:
            self.current = None

    def require(self, name: str, path: Path) -> Settings:
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise InputError(f"no context {name!r} in {path} (contexts: {known}; see `fx context ls`)")
        return self.contexts[name]


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"context name {name!r}: use 1-63 letters, digits and . _ : @ -, starting with a letter or digit"
        )
    return name


def context_name_for(gateway: str) -> str:
    """The name `fx login` saves a gateway under when not told one: its host (and port), else "default"."""
    parts = urlsplit(gateway)
    if not parts.hostname:
        return DEFAULT_CONTEXT
    name = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return name if _NAME.fullmatch(name) else DEFAULT_CONTEXT


def load(path: Path) -> Config:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Config()
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the fx config: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the fx config must be a JSON object")
    if "contexts" not in raw:  # the old single-gateway file
        old = _settings(raw, path, "the file")
        return Config({DEFAULT_CONTEXT: old}, DEFAULT_CONTEXT) if old else Config()
    if not isinstance(raw["contexts"], dict):
        raise InputError(f"{path}: 'contexts' must map names to {{'gateway': ..., 'token': ...}}")
    contexts = {}
    for name, entry in raw["contexts"].items():
        if not isinstance(entry, dict) or not (settings := _settings(entry, path, f"context {name!r}")):
            raise InputError(f"{path}: context {name!r} must be {{'gateway': URL, 'token': TOKEN or null}}")
        contexts[name] = settings
    current = raw.get("current")
    if current is not None and not isinstance(current, str):
        raise InputError(f"{path}: 'current' must be a context name or null, not {type(current).__name__}")
    return Config(contexts, current if current in contexts else None)


def _settings(entry: dict, path: Path, where: str) -> Settings | None:
    """An entry's gateway and token; None when it names no gateway; bad input when either is not a string (a
    file another tool wrote wrong is refused, not dropped: the next `fx login` would write it back without it)."""
    gateway, token = entry.get("gateway"), entry.get("token")
    for key, value in (("gateway", gateway), ("token", token)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"{path}: {where}: {key!r} must be a string, not {type(value).__name__}")
    if not gateway:
        return None
    return Settings(gateway, token or None)


def save(config: Config, path: Path) -> None:
    """Replace the file at once (a reader never sees half of it), readable by the owner only: tokens are secrets."""
    import tempfile  # here: the fx CLI imports this module at every start, and rarely saves

    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "current": config.current,
        "contexts": {n: {"gateway": s.gateway, "token": s.token} for n, s in sorted(config.contexts.items())},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def update(env: Mapping[str, str] = os.environ) -> Iterator[tuple[Config, Path]]:
    """Read, change, write back; a lock keeps two writers (`fx up` and `fx login`) from losing each other's change."""
    path = config_path(env)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(f".{path.name}.lock"), "a")  # noqa: SIM115 (held across the yield)
    except OSError as exc:
        raise InputError(f"cannot write the fx config {path}: {exc.strerror} (FX_CONFIG picks another file)") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        config = load(path)
        yield config, path
        try:
            save(config, path)
        except OSError as exc:
            raise InputError(f"cannot write the fx config {path}: {exc.strerror}") from exc


def resolve(
    gateway: str | None = None,
    token: str | None = None,
    context: str | None = None,
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
) -> Settings:
    path = config_path(env)
    file = load(path)
    named = context or env.get("FX_CONTEXT")
    chosen = file.require(named, path) if named else file.contexts.get(file.current or "")
    from_env = Settings(env.get("FX_GATEWAY") or "", env.get("FX_TOKEN"))
    layers = [Settings(gateway or "", token)]
    if context and chosen:  # an explicit --context beats the environment, FX_CONTEXT does not
        layers += [chosen, from_env]
    else:
        layers += [from_env, *([chosen] if chosen else [])]
    gateway = next((s.gateway for s in layers if s.gateway), DEFAULT_GATEWAY)
    token = next((s.token for s in layers if s.token), None) or _local_token(cwd or Path.cwd())
    if token is not None and not _TOKEN.fullmatch(token):  # else httpx fails: a traceback, or "unreachable"
        raise InputError(
            "the admin token has a character no token has (a space, a control character, non-ASCII); it came from"
            f" --token, FX_TOKEN, the context in {path} or {DEFAULT_TOKEN_FILE}, in that order"
        )
    return Settings(gateway=with_scheme(gateway).rstrip("/"), token=token)


def with_scheme(gateway: str) -> str:
    """127.0.0.1:18085 is taken as http://127.0.0.1:18085, as curl takes it."""
    return gateway if "://" in gateway else f"http://{gateway}"


def _local_token(cwd: Path) -> str | None:
    try:
        return (cwd / DEFAULT_TOKEN_FILE).read_text(errors="replace").strip() or None
    except OSError:
        return None
