"""The CLI's read commands over fx.reads (a plain socket, plain JSON): the tables they print are the ones their
model-based versions printed (GOLDEN: captured from those, for the same answers), `-o json` prints what fx.Client's
models printed, and their errors and exit codes are fx.Client's."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fx.api_key_models import ApiKeyInfo
from fx.api_models import ApiSpec
from fx.cli import main
from fx.event_models import BucketInfo, DeadLetter, DeadLetterDetail, PlatformStatus, StreamInfo
from fx.models import FunctionInfo, SecretInfo, VersionInfo
from fx.usage import Usage
from pydantic import TypeAdapter

from tests.unit.sdk.conftest import TOKEN

pytestmark = pytest.mark.usefixtures("isolated", "utc")

SPEC = {
    "name": "hello",
    "handler": "handler.handler",
    "runtime": "python3.11",
    "artifact": "sha256:" + "a" * 64,
    "dependencies": None,
    "image": None,
    "memory": 128,
    "timeout": 3.0,
    "env": {},
    "secrets": [],
    "scale": {"min": 0, "max": 10, "idle_timeout": 300.0, "concurrency": 1},
}
VERSIONS = [
    {
        "version": 1,
        "digest": "sha256:" + "a" * 64,
        "config_digest": "sha256:" + "c" * 64,
        "created_at": "2026-01-02T03:04:05Z",
        "spec": SPEC,
        "state": "Failed",
        "init_error": {"error_type": "Runtime.ImportModuleError", "message": "no module named x", "stack_trace": []},
        "traffic": 0,
        "warm_until": None,
    },
    {
        "version": 2,
        "digest": "sha256:" + "b" * 64,
        "config_digest": "sha256:" + "d" * 64,
        "created_at": "2026-01-03T10:00:00Z",
        "spec": {**SPEC, "handler": "app.main"},
        "traffic": 100,
        "replicas_ready": 2,
        "requests": 1234,
        "errors": 5,
        "aliases": ["live", "beta"],
        "warm_until": "2026-01-03T11:30:00Z",
    },
]
FUNCTION = {
    "name": "hello",
    "latest": 2,
    "traffic": {"1": 10, "2": 90},
    "aliases": {"live": 2, "beta": 1},
    "alias_traffic": {"live": {"1": 20, "2": 80}},
    "versions": [
        VERSIONS[0],
        {
            **VERSIONS[1],
            "spec": {
                **VERSIONS[1]["spec"],
                "memory": 256,
                "timeout": 2.5,
                "env": {"B": "2", "A": "1"},
                "secrets": ["db"],
                "scale": {"min": 1, "max": 5, "concurrency": 4, "target_rps": 7.5, "stable_window": 30},
                "triggers": [
                    {"nats": "orders.*"},
                    {"jetstream": {"stream": "ORDERS", "subject": "orders.new"}},
                    {"jetstream": {"stream": "REFUNDS"}},
                    {"kv": {"bucket": "users", "keys": "eu.*"}},
                    {"schedule": "rate(5 minutes)"},
                    {"schedule": "cron(0 9 * * ? *)", "timezone": "Europe/Paris"},
                ],
            },
            "replicas_starting": 1,
            "replicas_desired": 4,
            "panic": True,
        },
    ],
    "status": "Ready",
    "sticky": "header:x-user",
    "previous": {"1": 100},
    "rollout": {"version": 2, "weight": 90, "step": 10, "interval": 60, "next_step_at": "2026-01-03T10:05:00Z"}
    | {"base": {"1": 100}, "max_error_rate": 0.05},
    "last_rollout": "rolled back at 2026-01-02 (errors 12%)",
}
PLAIN = {"name": "plain", "latest": 1, "traffic": {"1": 100}, "versions": [{**VERSIONS[1], "version": 1}]}
SECRETS = [
    {"name": "db", "keys": ["PASSWORD", "USER"], "updated_at": "2026-01-02T03:04:05Z", "used_by": ["hello", "shop"]},
    {"name": "unused", "keys": ["K"], "updated_at": "2026-01-04T00:00:00Z", "used_by": []},
]
STREAMS = [
    {"name": "ORDERS", "subjects": ["orders.>", "refunds.*"], "messages": 12, "bytes": 3456, "max_age": 0.0}
    | {"max_bytes": -1, "consumers": 2, "created": False},
]
BUCKETS = [{"name": "users", "values": 3, "bytes": 120, "history": 5, "consumers": 1, "created": False}]
API_KEYS = [
    {"id": "k1", "name": "partner", "api": "shop", "rate": 2.5, "burst": 5, "quota": {"limit": 1000, "period": "day"}}
    | {"created_at": "2026-01-02T03:04:05Z", "used_today": 7, "used_month": 70},
    {"id": "k2", "name": "free", "api": "shop", "rate": None, "burst": None, "quota": None}
    | {"created_at": "2026-01-05T00:00:00Z", "used_today": 0, "used_month": 0},
]
CREDENTIALS = [
    {"access_key_id": "FXAKAAAA", "name": "ci", "created_at": "2026-01-02T03:04:05+00:00"},
    {"access_key_id": "FXAKBBBB", "name": "", "created_at": "2026-01-03T00:00:00+00:00"},
]
LETTER = {
    "id": 7,
    "function": "hello",
    "source": "jetstream",
    "error": "Function.Unhandled",
    "message": "x" * 70,
    "status": 500,
    "attempts": 3,
    "time": "2026-01-02T03:04:05Z",
    "call_id": None,
    "stream": "ORDERS",
    "subject": "orders.new",
}
DETAIL = LETTER | {"headers": {"b": "2", "a": "1\x1b"}, "body": "aGVsbG8=", "body_base64": True}
ASYNC_LETTER = LETTER | {"id": 8, "source": "async", "call_id": "call-1", "stream": None, "subject": None}
APIS = [
    {
        "name": "shop",
        "hosts": ["shop.example.com"],
        "stage": "prod",
        "stage_variables": {},
        "payload": "2.0",
        "cors": None,
        "throttle": {"rate": 100.0, "burst": 200},
        "authorizers": {
            "users": {"jwt": {"issuer": "https://id.example.com", "audience": ["shop"]}},
            "gate": {"lambda": {"function": "gate", "ttl": 0}},
        },
        "routes": {
            "GET /items": {"function": "items", "auth": "users", "scopes": ["read", "list"], "api_key": True}
            | {"throttle": {"rate": 5.0, "burst": 10}},
            "POST /items": {"function": "items@live", "auth": "gate"},
            "GET /health": {"mock": {"status": 204}},
            "ANY /legacy/{proxy+}": {"upstream": {"url": "http://legacy:8000"}},
        },
    },
    {"name": "open", "routes": {"GET /": {"function": "hello"}}},
]
STATUS = {
    "version": "0.2.0",
    "backend": "local",
    "functions": 3,
    "nats_url": "nats://127.0.0.1:4222",
    "nats_creds": "/var/fx/nats-auth/admin.creds",
    "state_bytes": {"artifacts": 3 * 2**20, "logs": 2**19},
}
USAGE = {
    "since": "2026-01-02T00:00:00Z",
    "until": "2026-01-03T01:00:00Z",
    "rows": [
        {"function": "hello", "version": 1, "invocations": 1000, "gb_seconds": 12.5},
        {"function": "hello", "version": 2, "invocations": 500, "gb_seconds": 2.25},
        {"function": "shop", "version": 1, "invocations": 3, "gb_seconds": 0.0625},
    ],
}

# argv, the path asked, the answer, and its type in fx.Client (what the command printed before: GOLDEN[name]).
CASES: dict[str, tuple[list[str], str, Any, Any]] = {
    "describe": (["describe", "hello"], "/system/functions/hello", FUNCTION, FunctionInfo),
    "describe plain": (["describe", "plain"], "/system/functions/plain", PLAIN, FunctionInfo),
    "versions": (["versions", "hello"], "/system/functions/hello/versions", VERSIONS, list[VersionInfo]),
    "secret ls": (["secret", "ls"], "/system/secrets", SECRETS, list[SecretInfo]),
    "stream ls": (["stream", "ls"], "/system/streams", STREAMS, list[StreamInfo]),
    "kv ls": (["kv", "ls"], "/system/kv", BUCKETS, list[BucketInfo]),
    "apikey ls": (["apikey", "ls"], "/system/apikeys", API_KEYS, list[ApiKeyInfo]),
    "credentials ls": (["credentials", "ls"], "/system/credentials", CREDENTIALS, list[dict[str, Any]]),
    "dlq ls": (
        ["dlq", "ls", "-f", "hello", "--limit", "2"],
        "/system/dlq?function=hello&limit=2",
        [LETTER, ASYNC_LETTER],
        list[DeadLetter],
    ),
    "dlq show": (["dlq", "show", "7"], "/system/dlq/7", DETAIL, DeadLetterDetail),
    "apis ls": (["apis", "ls"], "/system/apis", APIS, list[ApiSpec]),
    "routes": (["routes"], "/system/apis", APIS, list[ApiSpec]),
    "routes API": (["routes", "shop"], "/system/apis/shop", APIS[0], ApiSpec),
    "status": (["status"], "/system/status", STATUS, PlatformStatus),
    "usage": (["usage"], "/system/usage?since=86400.0", USAGE, Usage),
    "usage -o json": (["usage", "-o", "json"], "/system/usage?since=86400.0", USAGE, Usage),  # a bill, not the answer
}
ANSWER_SHOWN = sorted(name for name in CASES if not name.startswith("usage"))  # -o json: the answer as it came


def _golden() -> dict[str, str]:
    text = (Path(__file__).parent / "read_commands.golden").read_text()
    _, *parts = re.split(r"^== (.+)\n", text, flags=re.M)  # the preamble, then each name and its output
    return dict(zip(parts[::2], parts[1::2], strict=True))


GOLDEN = _golden()


@pytest.fixture
def utc(monkeypatch) -> Any:
    """The tables show local times: UTC here, so that they read the same on any machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()  # TZ as it was, for tzset to read again
    time.tzset()


def as_sent(model: Any, answer: Any) -> Any:
    """The answer as the server sends it: its model's JSON, every field there."""
    adapter = TypeAdapter(model)
    return adapter.dump_python(adapter.validate_python(answer), mode="json")


def run(scripted, argv: list[str], answer: tuple[int, Any], capsys) -> tuple[int, str, str]:
    handler, url = scripted
    handler.answer = answer
    code = main(["--gateway", url, "--token", TOKEN, *argv])
    out, err = capsys.readouterr()
    return code, out.replace(url, "GATEWAY_URL"), err.replace(url, "GATEWAY_URL")


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_table_is_the_one_the_model_based_command_printed(scripted, capsys, name):
    argv, path, answer, model = CASES[name]
    assert run(scripted, argv, (200, as_sent(model, answer)), capsys)[:2] == (0, GOLDEN[name])
    assert scripted[0].seen == [(path, f"Bearer {TOKEN}")]


def test_usage_by_version_has_a_line_per_version_and_the_total(scripted, capsys):
    code, out, _ = run(scripted, ["usage", "--by", "version"], (200, as_sent(Usage, USAGE)), capsys)
    assert code == 0
    table = [line.split() for line in out.splitlines()[1:-1]]
    assert table == [
        ["FUNCTION", "VERSION", "INVOCATIONS", "GB-SECONDS", "COST", "(USD)"],
        ["hello", "1", "1000", "12.5000", "0.000408"],
        ["hello", "2", "500", "2.2500", "0.000138"],
        ["shop", "1", "3", "0.0625", "0.000002"],
        ["total", "1503", "14.8125", "0.000547"],
    ]


@pytest.mark.parametrize("name", ANSWER_SHOWN)
def test_json_is_what_fx_client_s_models_printed(scripted, capsys, name):
    argv, _, answer, model = CASES[name]
    code, out, _ = run(scripted, [*argv, "-o", "json"], (200, as_sent(model, answer)), capsys)
    adapter = TypeAdapter(model)
    printed = json.loads(out)
    if name == "status":  # the controller's answer, beside the gateway and the CLI
        printed = printed["controller"]
    if name == "routes API":  # one API, listed as `fx routes` lists them all
        (printed,) = printed
    assert code == 0
    assert printed == adapter.dump_python(adapter.validate_python(answer), mode="json")


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    "answer",
    [
        (404, {"error": {"code": "NotFound", "message": "no such thing", "function": "hello"}}),
        (401, {"error": {"code": "Unauthorized", "message": "missing bearer"}}),
        (503, "upstream gone"),
    ],
)
def test_an_error_and_its_exit_code_are_fx_client_s(scripted, monkeypatch, capsys, name, answer):
    """The same answer through fx.reads and through fx.Client (which a proxy setting makes the command use)."""
    argv = CASES[name][0]
    light = run(scripted, argv, answer, capsys)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert run(scripted, argv, answer, capsys) == light
    assert light[0] != 0


LOG = "2026-01-02T03:04:05Z START RequestId: 1\r\n2026-01-02T03:04:05Z à la ligne\n\n- last, with no line end".encode()


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "argv", [["logs", "hello"], ["logs", "hello", "--tail", "3", "--timestamps"], ["logs", "hello", "-o", "json"]]
)
def test_logs_are_the_lines_fx_client_printed(scripted, monkeypatch, capsys, chunked, argv):
    """The same log answer (its lines, the header saying earlier ones were cut) through fx.reads and fx.Client."""
    handler, _ = scripted
    handler.fields, handler.chunked = {"Fx-Logs-Cut": "3"}, chunked
    light = run(scripted, argv, (200, LOG), capsys)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert run(scripted, argv, (200, LOG), capsys) == light
    assert light[0] == 0 and light[2] == "(last 3 lines; --tail N or --since 10m for more)\n"
    assert len(light[1].splitlines()) == 4
    assert handler.seen[0] == handler.seen[1]  # the same query


def test_a_logs_error_is_fx_client_s(scripted, monkeypatch, capsys):
    answer = (404, {"error": {"code": "FunctionNotFound", "message": "no function nope", "function": "nope"}})
    light = run(scripted, ["logs", "nope"], answer, capsys)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert (
        run(scripted, ["logs", "nope"], answer, capsys)
        == light
        == (2, "", "fx: nope: FunctionNotFound: no function nope\n")
    )
