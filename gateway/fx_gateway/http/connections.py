"""The caller connections of every listener: capped by --max-connections, swept for timeouts, drained at exit."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from fx_gateway.config import Settings

if TYPE_CHECKING:
    from fx_gateway.http.server import ClientConnection

log = logging.getLogger("fx_gateway")

SWEEP_S = 1.0  # timeouts of heads, bodies and keep-alive waits fire up to this late


class Connections:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.open: set[ClientConnection] = set()
        self.draining = False

    def __len__(self) -> int:
        return len(self.open)

    def add(self, conn: ClientConnection) -> None:
        self.open.add(conn)

    def discard(self, conn: ClientConnection) -> None:
        self.open.discard(conn)

    async def run(self) -> None:
        """End connections whose callers are late with a head, a body or their next request."""
        while True:
            await asyncio.sleep(SWEEP_S)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        for conn in list(self.open):
            conn.overdue(now)

    async def drain(self, timeout: float) -> None:
        """Finish what is in flight (bounded), closing each caller connection once it is idle."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for conn in [c for c in self.open if c.idle()]:
                conn.close()
            if not self.open:
                return
            await asyncio.sleep(0.05)
        log.warning("%d connections still busy after %g s; closing them", len(self.open), timeout)
        for conn in list(self.open):
            conn.abort()
