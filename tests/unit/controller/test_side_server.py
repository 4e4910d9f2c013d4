"""The controller's second listener (code for pods, the admission webhook) stops in bounded time."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fx_controller.backends.kubernetes import side_server
from fx_controller.backends.kubernetes.side_server import SideServer

from tests.loopback import free_port


async def test_a_request_that_never_finishes_does_not_hold_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod deleted mid-download leaves its request open; uvicorn alone would wait for it without end, and the
    controller's pod would end SIGKILLed after its grace."""
    monkeypatch.setattr(side_server, "GRACEFUL_SHUTDOWN_S", 0.5)
    entered = asyncio.Event()

    async def never_answers(scope, receive, send) -> None:
        entered.set()
        await asyncio.Event().wait()

    port = free_port()
    server = SideServer(never_answers, f"127.0.0.1:{port}")
    await server.start()
    async with httpx.AsyncClient(timeout=30) as client:
        call = asyncio.ensure_future(client.get(f"http://127.0.0.1:{port}/artifacts/x"))
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.wait_for(server.stop(), 5)  # TimeoutError here: the stop waits for the request
        (ended,) = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 5)
        assert isinstance(ended, httpx.HTTPError) or ended.status_code == 500, ended  # told, not left to hang
