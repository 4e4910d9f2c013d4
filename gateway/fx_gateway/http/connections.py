"""The caller connections of every listener: capped by --max-connections, swept for timeouts, drained at exit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fx_gateway.config import Settings

if TYPE_CHECKING:
    from fx_gateway.http.server import ClientConnection

log = logging.getLogger("fx_gateway")

SWEEP_S = 1.0  # timeouts of heads, bodies and keep-alive waits fire up to this late
SHED_GRACE_S = 1.0  # for the 503s of a drain's end to be written before the connections left are cut


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

    async def drain(self, timeout: float, shed: Callable[[], int]) -> None:
        """Finish what is in flight (bounded), closing each caller connection once it is idle. At the deadline the
        requests still waiting for a replica are answered 503 (`shed`: they never ran, so a retry is safe) and
        given SHED_GRACE_S to be written; then what is left, requests at a replica, is cut."""
        self.draining = True
        if await self._closed_by(time.monotonic() + timeout):
            return
        held = shed()
        if held:
            log.warning("drain: %d requests still waiting for a replica after %g s answered 503", held, timeout)
            if await self._closed_by(time.monotonic() + SHED_GRACE_S):
                return
        log.warning("drain: %d connections still busy at a replica after %g s; closing them", len(self.open), timeout)
        for conn in list(self.open):
            conn.abort()

    async def _closed_by(self, deadline: float) -> bool:
        """Close connections as they become idle until none is left (True) or the deadline (False)."""
        while True:
            for conn in [c for c in self.open if c.idle()]:
                conn.close()
            if not self.open:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
