"""The admin port of a controller that does not lead (yet): Ready for Kubernetes, serving nothing else.

A standby answers its health check so `helm --wait` and rolling updates see it Ready (the Services reach only
the leader, by its label: leader.py), and /metrics with `fx_controller_is_leader 0` only (a pod monitor scraping
every controller finds each one up, and counts the leaders); anything else gets 503 NotLeader. Once this process
leads and its controller has started, `app` is set and every request goes to the admin API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH = "/system/health"
METRICS = (
    b"# HELP fx_controller_is_leader 1 on the controller that holds the lease or runs alone\n"
    b"# TYPE fx_controller_is_leader gauge\nfx_controller_is_leader 0.0\n"
)


class StandbyGate:
    def __init__(self) -> None:
        self.app: App | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            if scope["path"] == HEALTH:
                await _answer(send, 200, {"status": "standby"})
            elif scope["path"] == "/metrics":
                headers = [(b"content-type", b"text/plain; version=0.0.4"), (b"content-length", b"%d" % len(METRICS))]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": METRICS})
            else:
                message = "this controller is a standby: the leader serves the admin API; retry in a few seconds"
                await _answer(send, 503, {"error": {"code": "NotLeader", "message": message}})


async def _answer(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
