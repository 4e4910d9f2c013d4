"""What `fx secret set` reads: KEY=VALUE arguments, KEY=- (the value from stdin, so it stays out of the shell's
history and the process list), and --from-env-file FILE (dotenv syntax, no ${VAR} expansion)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from dotenv import dotenv_values
from pydantic import ValidationError

from fx.errors import InputError
from fx.models import SecretSpec

STDIN = "-"


def values_from(pairs: list[str], env_file: str | None, stdin: TextIO) -> dict[str, str]:
    """The secret's keys and values, checked as the server checks them; InputError names the problem."""
    values = _env_file(env_file) if env_file else {}
    from_stdin = [pair.partition("=")[0] for pair in pairs if pair.partition("=")[2] == STDIN]
    if len(from_stdin) > 1:
        raise InputError(f"only one key can read its value from stdin ({', '.join(from_stdin)} ask for it)")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"{key!r} is not KEY=VALUE (KEY=- reads the value from stdin)")
        if key in values:
            raise InputError(f"{key!r} is given twice" + (f" (also in {env_file})" if env_file else ""))
        # One trailing newline is what `echo` adds, not part of the value.
        values[key] = stdin.read().removesuffix("\n") if value == STDIN else value
    if not values:
        raise InputError("give the secret's keys: KEY=VALUE ..., KEY=- (value from stdin) or --from-env-file FILE")
    try:
        return SecretSpec(values=values).values
    except ValidationError as exc:
        raise InputError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def _env_file(path: str) -> dict[str, str]:
    if not Path(path).is_file():
        raise InputError(f"--from-env-file {path}: no such file")
    try:
        found = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--from-env-file {path}: cannot read it ({exc})") from exc
    empty = [key for key, value in found.items() if value is None]
    if empty:
        raise InputError(f"--from-env-file {path}: {empty[0]!r} has no '=VALUE'")
    return {key: value for key, value in found.items() if value is not None}
