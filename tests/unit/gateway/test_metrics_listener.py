"""--metrics-listen: /metrics leaves the public listener for a port of its own."""

import asyncio

import httpx


async def test_metrics_are_served_only_on_their_own_listener(gateway):
    gw = await gateway(metrics_host="127.0.0.1", metrics_port=1)  # the port is only a flag here: served below
    server = await asyncio.get_running_loop().create_server(gw.gateway.metrics_connection, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url) as metrics:
            assert "fx_gateway_requests_total" in (await metrics.get("/metrics")).text
            assert (await metrics.get("/healthz")).status_code == 200
            assert (await metrics.get("/function/hello")).status_code == 404  # no function calls there
        public = await gw.client.get("/metrics")
        assert public.status_code == 404
        assert (await gw.client.get("/healthz")).status_code == 200
    finally:
        server.close()


async def test_without_the_flag_metrics_stay_on_the_main_listener(gateway):
    gw = await gateway()
    assert "fx_gateway_requests_total" in (await gw.client.get("/metrics")).text
