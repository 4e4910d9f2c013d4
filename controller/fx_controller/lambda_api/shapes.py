"""fx's records in Lambda's shapes: FunctionConfiguration, AliasConfiguration, ARNs, and the list pages.

How Lambda's names map onto fx (the README's table says the same): every deploy of a changed spec is a new
numbered, immutable fx version, so `$LATEST` is fx's newest version, published or not; a number is that fx
version; an alias is fx's alias, its RoutingConfig the alias's own traffic split."""

from __future__ import annotations

import base64
import math
import platform
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from fx.models import VersionInfo

from .errors import invalid

ACCOUNT = "000000000000"  # the account fx's ARNs name, as the runtime's context.invoked_function_arn does
LATEST = "$LATEST"
DEFAULT_MAX_ITEMS = 50
MAX_ITEMS = 10_000  # Lambda's ceiling on MaxItems
# The fx runtimes Lambda's runtime names map onto; Lambda's custom runtimes are fx's `provided`.
PROVIDED = ("provided", "provided.al2", "provided.al2023")
STATES = {"Pending": ("Pending", "InProgress"), "Ready": ("Active", "Successful"), "Failed": ("Failed", "Failed")}
REVISION_NAMESPACE = uuid.UUID("6f0b5d6e-2f1c-4d7e-9a51-1d3c5b8f0a42")


def function_arn(region: str, name: str, qualifier: str | None = None) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}" + (f":{qualifier}" if qualifier else "")


def split_name(raw: str) -> tuple[str, str | None]:
    """A FunctionName as Lambda takes it (NAME, NAME:QUALIFIER, ACCOUNT:function:NAME[:Q], or the full ARN) as
    (name, qualifier or None)."""
    parts = raw.split(":")
    if raw.startswith("arn:"):
        parts = parts[6:] if len(parts) >= 7 and parts[5] == "function" else []
    elif len(parts) >= 3 and parts[1] == "function":
        parts = parts[2:]
    if not parts or len(parts) > 2 or not parts[0]:
        raise invalid(f"FunctionName {raw!r} is not a name, name:qualifier or function ARN")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def architecture() -> str:
    """The host's, in Lambda's names: what every fx function runs on."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def lambda_timestamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def code_sha256(digest: str) -> str:
    """Lambda's CodeSha256 (base64 of the zip's sha256) from fx's digest (sha256:<hex>); an image's reference as is."""
    kind, _, hexdigest = digest.partition(":")
    return base64.b64encode(bytes.fromhex(hexdigest)).decode() if kind == "sha256" else digest


def revision_id(name: str, version: VersionInfo) -> str:
    """Stable for a version: fx versions never change, and $LATEST moves when a new version is made."""
    return str(uuid.uuid5(REVISION_NAMESPACE, f"{name}/{version.version}/{version.digest}/{version.config_digest}"))


def lambda_runtime(runtime: str, runtimes: Sequence[str]) -> str:
    """fx's runtime for one of Lambda's names, or InvalidParameterValueException listing what fx runs."""
    if runtime in PROVIDED:
        return "provided"
    if runtime in runtimes:
        return runtime
    known = ", ".join([*(r for r in runtimes if r != "provided"), *PROVIDED])
    raise invalid(f"Runtime {runtime!r} is not one fx runs: use one of {known}")


def configuration(
    region: str, name: str, version: VersionInfo, shown: str, code_size: int, fixed: dict[str, Any]
) -> dict[str, Any]:
    """Lambda's FunctionConfiguration of one fx version; `shown`: the Version it is answered as ($LATEST or its
    number); `fixed`: what fx reports for the fields it has no setting for (Architectures, EphemeralStorage...)."""
    spec = version.spec
    state, last_update = STATES[version.state]
    config: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": function_arn(region, name, None if shown == LATEST else shown),  # Lambda's $LATEST ARN
        "Runtime": spec.runtime,
        "Handler": spec.handler,
        "CodeSize": code_size,
        "Description": "",
        "Timeout": math.ceil(spec.timeout),
        "MemorySize": spec.memory,
        "LastModified": lambda_timestamp(version.created_at),
        "CodeSha256": code_sha256(version.digest),
        "Version": shown,
        "RevisionId": revision_id(name, version),
        "State": state,
        "LastUpdateStatus": last_update,
        **fixed,
    }
    if spec.env:
        config["Environment"] = {"Variables": dict(spec.env)}
    if version.init_error:
        reason = f"{version.init_error.error_type}: {version.init_error.message}"
        config |= {"StateReason": reason, "StateReasonCode": "FunctionError", "LastUpdateStatusReason": reason}
        config["LastUpdateStatusReasonCode"] = "FunctionError"
    return config


def alias_configuration(region: str, name: str, alias: str, version: int, split: dict[int, int]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "AliasArn": function_arn(region, name, alias),
        "Name": alias,
        "FunctionVersion": str(version),
        "Description": "",
        "RevisionId": str(uuid.uuid5(REVISION_NAMESPACE, f"{name}/{alias}/{version}/{sorted(split.items())}")),
    }
    extra = {str(v): pct / 100 for v, pct in split.items() if v != version}
    if extra:
        config["RoutingConfig"] = {"AdditionalVersionWeights": extra}
    return config


T = TypeVar("T")


def page(
    items: list[T], key: Callable[[T], str], marker: str | None, max_items: int | None
) -> tuple[list[T], str | None]:
    """One page of `items` (sorted by `key`) after the one whose key is `marker`, and the next page's marker: the
    last key the page holds, so an item created or removed between pages shifts nothing."""
    size = DEFAULT_MAX_ITEMS if max_items is None else max_items
    if not 1 <= size <= MAX_ITEMS:
        raise invalid(f"MaxItems {size} is out of range: give 1 to {MAX_ITEMS}")
    rest = [item for item in items if key(item) > marker] if marker else items
    chunk = rest[:size]
    return chunk, key(chunk[-1]) if len(rest) > size else None


def version_key(shown: str) -> str:
    """Versions' order as a string: $LATEST first ('$' sorts before digits), then by number."""
    return shown if shown == LATEST else f"{int(shown):010d}"
