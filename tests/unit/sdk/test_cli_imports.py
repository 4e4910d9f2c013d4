"""What the `fx` CLI loads before it runs a command: a user notices it as every command's slowness (`fx --help`
took half a second when the CLI imported nats-py, pydantic models and httpx at start). Each check runs a fresh
interpreter, since this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.sdk.test_read_commands import CASES

# What the CLI may import only in the command that needs it: the NATS client and its signing keys (fx up), the
# HTTP client and the models (every call to the platform), YAML (manifests), completion and metrics parsers,
# cloudpickle (@fx.function).
HEAVY = (
    "nats",
    "nkeys",
    "httpx",
    "pydantic",
    "yaml",
    "fx.client",
    "fx.models",
    "fx.api_models",
    "fx.api_key_models",
    "fx.event_models",
    "fx.manifest",
    "shtab",
    "prometheus_client",
    "cloudpickle",
)


def loaded_after(code: str) -> set[str]:
    """The modules, of HEAVY, loaded once `code` has run in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    return {m for m in HEAVY if m in modules}


@pytest.mark.parametrize(
    "code",
    [
        "import fx.cli",
        "import fx.cli; fx.cli._parser()",  # every command's parser, as `fx --help` and `fx CMD --help` build it
        "import fx.platform",  # fx up's
        "import fx",
    ],
)
def test_the_cli_starts_without_the_heavy_dependencies(code: str) -> None:
    assert loaded_after(code) == set()


@pytest.mark.usefixtures("isolated")
def test_a_command_imports_what_it_needs() -> None:
    """The other side of the laziness: a command's client brings httpx and the models its answers need."""
    code = "import argparse; from fx.cli import common"
    code += "; common.client(argparse.Namespace(gateway=None, token=None, context=None))"
    assert loaded_after(code) == {"httpx", "pydantic", "fx.client", "fx.models"}


def test_the_sdk_s_names_still_resolve_from_the_package() -> None:
    """`import fx` stays light, and fx.Client, fx.AsyncClient and @fx.function are there as before."""
    code = "import fx; fx.Client, fx.AsyncClient, fx.function, fx.FxError"
    assert {"fx.client", "httpx"} <= loaded_after(code)


# The commands that show what one GET answers (fx.reads), with their arguments: test_read_commands' and more.
READS = [["ls"], ["version"], ["logs", "hello"], *(argv for argv, *_ in CASES.values())]


@pytest.mark.parametrize("argv", READS, ids=" ".join)
def test_a_read_command_calls_the_platform_without_httpx_or_the_models(argv: list[str]) -> None:
    """A read command reads plain JSON over a socket (fx.reads): neither httpx and the models (~140 ms) nor
    http.client (the email package and ssl, 11-16 ms). Unreachable here, so it is the whole call path but the
    answer."""
    code = f"import fx.cli; fx.cli.main(['--gateway', 'http://127.0.0.1:9', '--token', 't', *{argv!r}])"
    probe = f"{code}\nimport sys\nprint('http.client' in sys.modules, 'ssl' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1].split() == ["False", "False"]  # after what the command printed
    assert loaded_after(code) == set()
