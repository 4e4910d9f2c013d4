"""`fx local` and `fx event generate` refuse bad input by name, with exit 2 and no traceback; a handler's result
and log come back with no platform."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from fx.cli import main

pytestmark = pytest.mark.usefixtures("isolated")


def project(root: Path, body: str = "return {'n': event.get('n'), 'fn': context.function_name}", **extra: str) -> Path:
    (root / "handler.py").write_text(f"def handler(event, context):\n    {body}\n")
    settings = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    (root / "fx.yaml").write_text(f"functions:\n  one:\n    handler: handler.handler\n{settings}")
    return root / "fx.yaml"


def test_invoke_prints_the_result_and_the_log(tmp_path: Path, capsys) -> None:
    manifest = project(tmp_path)
    assert main(["local", "invoke", "-f", str(manifest), "--data", '{"n": 3}']) == 0
    out, log = capsys.readouterr()
    assert json.loads(out) == {"n": 3, "fn": "one"}
    assert "START RequestId:" in log and "REPORT RequestId:" in log  # the runtime's log, forwarded to stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{}", "--env", "NOT-A-NAME=1"], "--env 'NOT-A-NAME=1': give KEY=VALUE"),
        (["--data", "{bad"], "--data is not valid JSON"),
        (["nope", "--data", "{}"], "no function named nope (it has: one)"),
    ],
)
def test_invoke_refuses_bad_input(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    manifest = project(tmp_path)
    assert main(["local", "invoke", "-f", str(manifest), *args]) == 2
    assert message in capsys.readouterr().err


def test_invoke_needs_a_name_when_there_are_several(tmp_path: Path, capsys) -> None:
    (tmp_path / "fx.yaml").write_text("functions:\n  a: {handler: h.handler}\n  b: {handler: h.handler}\n")
    assert main(["local", "invoke", "-f", str(tmp_path / "fx.yaml"), "--data", "{}"]) == 2
    assert "has 2 functions (a, b): name the one to invoke" in capsys.readouterr().err


def test_invoke_refuses_a_runtime_fx_does_not_run_on(tmp_path: Path, capsys) -> None:
    other = "python3.12" if __import__("sys").version_info[:2] != (3, 12) else "python3.11"
    manifest = project(tmp_path, runtime=other)
    assert main(["local", "invoke", "-f", str(manifest), "--data", "{}"]) == 2
    assert f"one: runtime {other}; fx local runs python3." in capsys.readouterr().err


def test_a_function_error_exits_1_with_lambdas_shape(tmp_path: Path, capsys) -> None:
    manifest = project(tmp_path, body="raise ValueError('bad order')")
    assert main(["local", "invoke", "-f", str(manifest), "--data", "{}"]) == 1
    err = capsys.readouterr().err
    assert json.loads(err[err.index("{") :])["errorType"] == "ValueError"


def test_api_refuses_a_port_in_use(tmp_path: Path, capsys) -> None:
    manifest = project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["local", "api", "-f", str(manifest), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apigw-v2", "--method", "GE T"], "--method 'GE T' is not an HTTP method"),
        (["apigw-v1", "--header", "no-colon"], "--header 'no-colon': give NAME:VALUE"),
        (["kv", "--operation", "UPSERT"], "--operation 'UPSERT': one of PUT, DEL, PURGE"),
        (["schedule", "--schedule", "rate(5 fortnights)"], "--schedule 'rate(5 fortnights)'"),
        (["schedule", "--time", "2026-11-28T09:00:00"], "give the zone too"),
        (["nats", "--data", "base64:%%%"], "not valid base64"),
    ],
)
def test_generate_refuses_bad_input(capsys, args: list[str], message: str) -> None:
    assert main(["event", "generate", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_handler_slower_to_load_than_the_init_timeout_fails(tmp_path: Path, capsys) -> None:
    manifest = project(tmp_path)
    (tmp_path / "handler.py").write_text("import time\ntime.sleep(30)\n\ndef handler(event, context):\n    return 1\n")
    assert main(["local", "invoke", "-f", str(manifest), "--data", "{}", "--init-timeout", "0.5"]) == 1
    assert "one: the handler did not load within 0.5 s (--init-timeout)" in capsys.readouterr().err
    assert main(["local", "invoke", "-f", str(manifest), "--data", "{}", "--init-timeout", "0"]) == 2
    assert "--init-timeout 0: give a number of seconds above 0" in capsys.readouterr().err
