"""Functions by value without a platform: the SDK's code folder loaded by the runtime's shim half, its version
checks, and f.map()'s retries and failures against a gateway faked with that same shim."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import cloudpickle
import fx
import httpx
import pytest
from fx import by_value
from fx.remote import Function
from fx_runtime import by_value as runtime


def test_the_sdk_and_the_runtime_name_the_same_files_and_keys():
    assert (by_value.PAYLOAD, by_value.META, by_value.PICKLE) == (runtime.PAYLOAD, runtime.META, runtime.PICKLE)
    assert by_value.python_version() == runtime.python_version()


def handler_of(folder: Path, function, modules=()) -> object:
    folder.mkdir(exist_ok=True)
    by_value.write_code(folder, function, modules, [])
    return runtime.load(folder)


def test_a_closure_and_a_lambda_round_trip_through_the_shim(tmp_path: Path):
    offset = 40

    def add(x, y=0):
        return x + y + offset

    answer = handler_of(tmp_path / "a", add)(by_value.event((1,), {"y": 1}), None)
    assert by_value.result(json.loads(json.dumps(answer))) == 42  # it travels as JSON
    assert by_value.result(handler_of(tmp_path / "b", lambda: "λ")(by_value.event((), {}), None)) == "λ"
    shipped = {p.name for p in (tmp_path / "b").iterdir()}
    assert {"fx_function.py", "fx_function.pkl", "fx_function.json", "cloudpickle"} <= shipped


def test_the_runtime_refuses_a_function_pickled_by_another_python_naming_both(tmp_path: Path):
    by_value.write_code(tmp_path, lambda: 1, (), [])
    (tmp_path / runtime.META).write_text(json.dumps({"python": "3.7", "cloudpickle": "1.0.0"}))
    with pytest.raises(runtime.VersionMismatch) as raised:
        runtime.load(tmp_path)
    here = f"Python {runtime.python_version()} with cloudpickle {cloudpickle.__version__}"
    assert f"pickled by Python 3.7 with cloudpickle 1.0.0; this runtime is {here}" in str(raised.value)


def test_the_runtime_refuses_arguments_of_another_cloudpickle_and_events_that_are_not_calls(tmp_path: Path):
    handler = handler_of(tmp_path, lambda: 1)
    with pytest.raises(runtime.VersionMismatch, match=r"arguments were pickled by .* with cloudpickle 0\.9"):
        handler({**by_value.event((), {}), "cloudpickle": "0.9"}, None)
    with pytest.raises(TypeError, match=r"use f\.remote"):
        handler({"plain": "event"}, None)


def fake_gateway(tmp_path: Path, fail: dict[int, int], status: int = 502) -> fx.Client:
    """A gateway whose function is the real shim; item x fails `fail[x]` times first (status, or a function error
    with status 200)."""
    handler = handler_of(tmp_path, lambda x: x * 10)
    seen: dict[int, int] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        event = json.loads(request.content)
        (x,), _ = cloudpickle.loads(base64.b64decode(event[by_value.PAYLOAD]))
        seen[x] = seen.get(x, 0) + 1
        if seen[x] <= fail.get(x, 0):
            if status == 200:
                shape = {"errorType": "ValueError", "errorMessage": f"bad {x}", "stackTrace": []}
                return httpx.Response(200, json=shape, headers={"X-Amz-Function-Error": "Unhandled"})
            return httpx.Response(status, json={"error": {"code": "Oops", "message": f"failed {x}"}})
        return httpx.Response(200, json=handler(event, None))

    return fx.Client("http://fx.test", "tok", transport=httpx.MockTransport(answer))


def mapped(client: fx.Client, monkeypatch) -> Function:
    f = fx.function(name="times-ten", client=client)(lambda x: x * 10)
    monkeypatch.setattr(f, "deploy", lambda *a, **k: None)  # the fake gateway has it already
    monkeypatch.setattr("fx.remote.RETRY_BACKOFF_S", 0)
    return f


def test_map_retries_failed_items_and_keeps_input_order(tmp_path: Path, monkeypatch):
    f = mapped(fake_gateway(tmp_path, {3: 2, 7: 1}), monkeypatch)
    assert f.map(range(10), concurrency=3, retries=2, progress=False) == [x * 10 for x in range(10)]


def test_items_that_keep_failing_give_the_other_results_and_the_failures(tmp_path: Path, monkeypatch):
    f = mapped(fake_gateway(tmp_path, {2: 9, 5: 9}, status=200), monkeypatch)
    with pytest.raises(fx.MapError) as raised:
        f.map(range(6), concurrency=2, retries=1, progress=False)
    assert raised.value.results == [0, 10, None, 30, 40, None]
    assert [(i, e.error_type) for i, e in raised.value.failures] == [(2, "ValueError"), (5, "ValueError")]
    assert "2 of 6 items failed: #2: ValueError: bad 2" in str(raised.value)


def test_a_refusal_as_bad_input_is_not_tried_again(tmp_path: Path, monkeypatch):
    f = mapped(fake_gateway(tmp_path, {1: 1}, status=413), monkeypatch)
    results = f.map([0, 1], concurrency=1, retries=3, return_exceptions=True, progress=False)
    assert results[0] == 0 and isinstance(results[1], fx.BadRequest)


def test_map_refuses_a_concurrency_below_one(tmp_path: Path, monkeypatch):
    f = mapped(fake_gateway(tmp_path, {}), monkeypatch)
    with pytest.raises(fx.InputError, match="concurrency must be 1 or more"):
        f.map([1], concurrency=-1)


def test_an_argument_that_cannot_be_pickled_stops_the_map_naming_it(tmp_path: Path, monkeypatch):
    f = mapped(fake_gateway(tmp_path, {}), monkeypatch)
    with pytest.raises(fx.InputError, match=r"cannot pickle the arguments: TypeError: cannot pickle '_thread\.lock'"):
        f.map(iter([1, threading.Lock(), 3]), concurrency=1, progress=False)
