"""What every command shares: the connection and output flags, the client, conversions and printing."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fx import config
from fx.errors import InputError

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import BaseModel

    from fx.client import Client

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNAUTHORISED = 0, 1, 2, 3
EXIT_CODES = """exit codes:
  0  success
  1  the platform or the function failed (a 5xx, a function error, the gateway unreachable)
  2  bad input: a usage error, an invalid value, a function or version that does not exist (404),
     a state that forbids it (409, e.g. nothing to roll back)
  3  not authorised (401/403): a missing or wrong admin token"""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?\Z")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls but tab and newline

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")
Run = Callable[[argparse.Namespace], int]

# Global flags are accepted before or after the command; SUPPRESS keeps the earlier value.
CONNECTION = argparse.ArgumentParser(add_help=False)
CONNECTION.add_argument("--gateway", default=argparse.SUPPRESS, help="gateway URL (env FX_GATEWAY)")
CONNECTION.add_argument("--token", default=argparse.SUPPRESS, help="admin token (env FX_TOKEN)")
CONNECTION.add_argument("--context", default=argparse.SUPPRESS, help="the fx context to use (env FX_CONTEXT)")
OUTPUT = argparse.ArgumentParser(add_help=False)
OUTPUT.add_argument("--output", "-o", choices=["text", "json"], default="text", help="output format")


class AddCommand(Protocol):
    """Adds a sub-command running `run`, with --gateway/--token unless it `connects` to no gateway; each command
    module's `register` receives one."""

    def __call__(
        self, name: str, run: Run, help: str, *parents: argparse.ArgumentParser, connects: bool = True
    ) -> argparse.ArgumentParser: ...


def client(args: argparse.Namespace) -> Client:
    # Imported here: the client brings httpx and pydantic, which only the commands that call the platform need
    # (tests/unit/sdk/test_cli_imports.py keeps them out of the CLI's start).
    from fx.client import Client

    settings = config.resolve(args.gateway, args.token, args.context)
    return Client(settings.gateway, settings.token)


def fetch(args: argparse.Namespace, path: str, params: dict[str, Any] | None = None) -> Any:
    """The JSON of an admin-API GET as plain data, for the commands that only show it: through fx.reads (no
    httpx, no models) unless a proxy is configured, which fx.Client honours."""
    from fx import reads

    settings = config.resolve(args.gateway, args.token, args.context)
    if reads.usable(settings.gateway):
        return reads.get_json(settings.gateway, settings.token, path, params)
    with client(args) as fx:
        return fx.get_json(path, params)


def gateway_url(args: argparse.Namespace) -> str:
    """The gateway the command calls, as fx.Client names it."""
    return config.resolve(args.gateway, args.token, args.context).gateway.rstrip("/")


def segment(name: str) -> str:
    """A name as one segment of an API path, as fx.Client quotes it."""
    from urllib.parse import quote

    return quote(name, safe="")


def seconds(text: str) -> float | None:
    """A duration such as 30s, 2m, 1.5h, 500ms or a bare number of seconds; None when it is none of those."""
    match = _DURATION.match(text.strip())
    return float(match[1]) * _UNITS[match[2] or "s"] if match else None


def checked(check: Callable[[T], T], value: T) -> T:
    """A models.check_* result, its ValueError turned into bad input (exit 2)."""
    try:
        return check(value)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def built(model: type[M], **fields: Any) -> M:
    """A model made of flags; its first complaint is bad input (exit 2), named by its flag."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise InputError(f"{field.replace('_', '-')}: {message}" if field else message) from exc


def traffic_text(traffic: dict[int, int]) -> str:
    return ", ".join(f"v{v}:{p}%" for v, p in sorted(traffic.items())) or "-"


def printable(text: str) -> str:
    """Text from a caller (a dead letter's body, headers, error), its control characters shown as \\x1b and not
    sent to the terminal, where an escape sequence could rewrite what the operator sees."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def local_time(when: datetime | str) -> str:
    """A time (or the API's ISO 8601 text of one) as the tables show it: the user's local time, to the second."""
    return _datetime(when).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock(when: datetime | str) -> str:
    """A time of today as the tables show it: the user's local time of day."""
    return _datetime(when).astimezone().strftime("%H:%M:%S")


def _datetime(when: datetime | str) -> datetime:
    from datetime import datetime  # not at start: `fx ls` shows no time

    return datetime.fromisoformat(when) if isinstance(when, str) else when


def short(code: str) -> str:
    """A zip's digest cut to a readable prefix; an image reference as it is."""
    return code[: len("sha256:") + 12] + "…" if code.startswith("sha256:") else code


def table_lines(rows: list[list[str]]) -> list[str]:
    """Rows as aligned lines, columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def print_table(rows: list[list[str]]) -> None:
    for line in table_lines(rows):
        print(line)


def print_json(value: Any) -> None:
    """What -o json prints: a model, a list of models or plain data, indented, the same way for every command."""
    print(json.dumps(value, indent=2, ensure_ascii=False, default=_jsonable))


def _jsonable(value: Any) -> Any:
    """A model (or a datetime...) as JSON data: pydantic is imported only by the commands that print models."""
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
