"""`fx-gateway`: serve until SIGTERM/SIGINT, then stop accepting, finish in-flight requests and exit 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import sys

import uvloop

from fx_gateway.config import Settings, parse
from fx_gateway.gateway import Gateway
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")


def _raise_fd_limit(connections: int) -> None:
    """Room for --max-connections callers and a replica connection each, so the cap is what refuses a caller
    (with a 503), not accept(2) failing with EMFILE."""
    want = 2 * connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < want:
        log.warning(
            "open files limited to %d: fewer than --max-connections %d callers can be served", soft, connections
        )


async def _routes_loaded(gateway: Gateway, within: float, stop: asyncio.Event) -> None:
    """Wait (up to `within` s) for the initial route tables and APIs: a caller of a restarted gateway is refused
    a connection meanwhile (and retries), instead of getting a 404 for a function or route it has not loaded yet."""
    deadline = asyncio.get_running_loop().time() + within
    while not gateway.loaded() and not stop.is_set() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    if not gateway.loaded():
        log.warning("route tables or APIs not loaded after %g s: listening anyway (404 until then)", within)


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _raise_fd_limit(settings.max_connections)
    gateway = Gateway(settings)
    servers = []
    if settings.metrics_port:
        host, port = settings.metrics_host, settings.metrics_port
        servers.append(await loop.create_server(gateway.metrics_connection, host, port))
        log.info("serving /metrics on http://%s:%d only", host, port)
    gateway.start_sweeps()
    starting = spawn(gateway.start())
    await _routes_loaded(gateway, settings.routes_wait, stop)
    # What start-up made (imports, route tables: ~50,000 objects) is exempt from garbage collection: a full
    # collection walked it all, 15-25 ms with the event loop stopped, in the path of whichever request was in.
    gc.freeze()
    server = await loop.create_server(gateway.connection, settings.host, settings.port, backlog=2048)
    log.info("listening on http://%s:%d (gateway id %s)", settings.host, settings.port, settings.gateway_id)
    servers.append(server)
    await stop.wait()
    log.info("stopping: no new connections, finishing in-flight requests (up to %g s)", settings.drain_timeout)
    for listener in servers:
        listener.close()
    starting.cancel()
    await gateway.stop(settings.drain_timeout)
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    settings = parse(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s fx-gateway %(levelname)s %(message)s"
    )
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
