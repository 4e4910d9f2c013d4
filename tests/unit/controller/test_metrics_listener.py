"""`--metrics-listen`: /metrics on a port of its own without the admin token, and nothing else there."""

from __future__ import annotations

import httpx
import pytest
from fx_controller.api.metrics_listener import metrics_listener
from fx_controller.metrics import Metrics
from fx_controller.settings import parse

from tests.loopback import free_port


async def test_serves_metrics_without_a_token_and_nothing_else() -> None:
    metrics = Metrics()
    metrics.deploys.labels("created").inc()
    listen = f"127.0.0.1:{free_port()}"
    server = metrics_listener(listen, metrics.render)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{listen}") as client:
            scraped = await client.get("/metrics")
            admin = await client.get("/system/functions")
    finally:
        await server.stop()
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    assert 'fx_controller_deploys_total{result="created"} 1.0' in scraped.text
    assert admin.status_code == 404


def test_the_flag_and_its_variable() -> None:
    assert parse([]).metrics_listen == ""
    assert parse([], {"FX_METRICS_LISTEN": "0.0.0.0:9090"}).metrics_listen == "0.0.0.0:9090"


def test_a_bad_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse(["--metrics-listen", "9090"], {})
    assert exit.value.code == 2
    assert "--metrics-listen '9090' is not host:port" in capsys.readouterr().err
