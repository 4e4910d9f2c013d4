"""`--metrics-listen`: /metrics alone on a listener of its own, without the admin token, for scrapers.

The admin port keeps its token (and, on Kubernetes, its NetworkPolicy: the gateway alone reaches it), so a
Prometheus is let in to this port only. A standby controller answers here too, with the controller's metric
families and no function series, so every pod a scraper finds answers and the leader-missing alert can sum
`fx_controller_is_leader` over all of them."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from ..backends.kubernetes.side_server import SideServer
from .auth import App, Receive, Scope, Send


def metrics_app(render: Callable[[], bytes]) -> App:
    """GET /metrics answers `render()`; anything else 404 (this port serves nothing of the admin API)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, kind, body = 200, CONTENT_TYPE_LATEST, render()
        else:
            status, kind, body = 404, "text/plain; charset=utf-8", b"only /metrics is served on this port\n"
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


def metrics_listener(listen: str, render: Callable[[], bytes]) -> SideServer:
    return SideServer(metrics_app(render), listen)
