"""The Python SDK on the real platform: fx.Client and fx.AsyncClient, and plain functions deployed by value with
@fx.function (closures, lambdas, local helpers), called with .remote(), .spawn() and .map()."""

from __future__ import annotations

import asyncio
import time

import fx
import pytest
from fx import by_value


@pytest.fixture
def client(platform, monkeypatch) -> fx.Client:
    """fx.Client() with no arguments, finding the platform as the CLI would: FX_GATEWAY and FX_TOKEN."""
    monkeypatch.setenv("FX_GATEWAY", platform.gateway_url)
    monkeypatch.setenv("FX_TOKEN", platform.token)
    monkeypatch.setenv("FX_CONFIG", str(platform.config))
    with fx.Client() as c:
        yield c


def test_a_closure_over_local_state_runs_remotely_with_its_helpers(client):
    rates = {"EUR": 0.9, "GBP": 0.8}  # local state the closure captures

    def rounded(value: float) -> float:  # a helper defined here, not importable on the replica
        return round(value, 2)

    @fx.function(timeout=30)
    def convert(amount: float, currency: str = "EUR") -> dict:
        return {"amount": rounded(amount * rates[currency]), "currency": currency}

    assert convert(10) == {"amount": 9.0, "currency": "EUR"}  # called directly, it runs here
    assert convert.remote(10, currency="GBP") == {"amount": 8.0, "currency": "GBP"}
    deployed = client.describe("convert")
    assert deployed.name == "convert"

    square = fx.function(name="square", client=client)(lambda x: x * x)
    assert square.spawn(12).get(timeout=60) == 144
    with pytest.raises(fx.BadRequest, match=r"RequestTooLarge: .* \(the arguments are 8\.0 MB pickled: pass large"):
        square.remote(bytes(8 * 2**20))  # over the gateway's request limit

    with pytest.raises(fx.FunctionError) as raised:
        convert.remote(1, currency="JPY")
    assert raised.value.error_type == "KeyError" and "JPY" in raised.value.error_message
    assert any("convert" in line for line in raised.value.stack_trace)


def test_map_over_10000_inputs_returns_every_result_in_order_and_reports_the_failures(client, capsys):
    failing = {1234, 5000, 9999}

    @fx.function(name="double", scale={"max": 4, "concurrency": 2}, client=client)
    def double(x: int) -> int:
        if x in failing:
            raise ValueError(f"injected failure for {x}")
        return 2 * x

    double.deploy()
    started = time.monotonic()
    with pytest.raises(fx.MapError) as raised:
        double.map(range(10_000), retries=1, progress=False)
    took = time.monotonic() - started
    with capsys.disabled():
        print(f"\nmap of 10,000 inputs (concurrency {double.default_concurrency()}): {took:.1f} s")
    error = raised.value
    assert [i for i, _ in error.failures] == sorted(failing)
    assert all(isinstance(e, fx.FunctionError) and "injected failure" in str(e) for _, e in error.failures)
    assert len(error.results) == 10_000
    assert all(error.results[x] == (None if x in failing else 2 * x) for x in range(10_000))

    with_errors = double.map([1, 1234, 3], retries=0, return_exceptions=True, progress=False)
    assert with_errors[0] == 2 and with_errors[2] == 6 and isinstance(with_errors[1], fx.FunctionError)


def test_a_function_pickled_by_another_python_is_refused_naming_both_versions(client, monkeypatch):
    @fx.function(name="elsewhere", client=client)
    def elsewhere() -> str:
        return "ran"

    theirs = {"python": "3.99", "cloudpickle": by_value.versions()["cloudpickle"]}
    with monkeypatch.context() as m:  # as if deployed from a Python 3.99 notebook onto a python3.11 runtime
        m.setattr(by_value, "versions", lambda: theirs)
        with pytest.raises(fx.FunctionError) as raised:
            elsewhere.deploy()
    message = raised.value.error_message
    assert raised.value.error_type == "VersionMismatch"
    assert f"pickled by Python 3.99 with cloudpickle {theirs['cloudpickle']}" in message
    assert f"this runtime is Python {by_value.python_version()}" in message

    elsewhere.deploy()  # from this Python: it runs
    assert elsewhere.remote() == "ran"
    monkeypatch.setattr(by_value, "versions", lambda: {"python": by_value.python_version(), "cloudpickle": "0.1"})
    with pytest.raises(fx.FunctionError) as raised:  # arguments pickled by another cloudpickle
        elsewhere.remote()
    assert raised.value.error_type == "VersionMismatch"
    assert "arguments were pickled by" in raised.value.error_message and "cloudpickle 0.1" in raised.value.error_message


def test_the_client_invokes_sync_async_and_with_asyncio_and_raises_typed_errors(client, platform, make_function):
    project = make_function("echo", "return {'got': event}")
    [deployed] = client.deploy_project(project / "fx.yaml")
    assert (deployed.function, deployed.state, deployed.traffic) == ("echo", "Ready", {1: 100})
    assert client.invoke("echo", {"a": 1}) == {"got": {"a": 1}}
    call_id = client.invoke("echo", {"a": 2}, async_=True)
    assert isinstance(call_id, str) and call_id

    with pytest.raises(fx.NotFound):
        client.invoke("no-such-function", {})
    with fx.Client(platform.gateway_url, "wrong-token") as stranger, pytest.raises(fx.Unauthorized):
        stranger.list_functions()

    async def from_asyncio() -> list:
        async with fx.AsyncClient() as aio:
            return await asyncio.gather(*(aio.invoke("echo", {"n": n}) for n in range(5)))

    assert asyncio.run(from_asyncio()) == [{"got": {"n": n}} for n in range(5)]


def test_bad_settings_are_refused_when_decorated_naming_the_setting():
    with pytest.raises(fx.InputError, match=r"@fx.function 'big': memory: Input should be less than or equal"):
        fx.function(name="big", memory=999_999)(lambda: None)
    with pytest.raises(fx.InputError, match=r"give one, @fx.function\(name="):
        fx.function(lambda: None)
