"""The backstop: a request a replica holds past its function's timeout plus a grace is answered 504 by the
gateway (the replica's own watchdog should have answered by then). One sweep checks every version's
requests at a replica a few times a second, so no timer is armed per request."""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fx_gateway.proxy.dispatch import VersionDispatcher

GRACE_S = 2.0  # on top of the function timeout, in case the replica's own watchdog does not answer
SWEEP_S = 0.25


class Backstop:
    def __init__(self) -> None:
        self.dispatchers: weakref.WeakSet[VersionDispatcher] = weakref.WeakSet()  # incl. retired ones

    def watch(self, dispatcher: VersionDispatcher) -> None:
        self.dispatchers.add(dispatcher)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for dispatcher in list(self.dispatchers):
                if dispatcher.sent:
                    dispatcher.expire_sent(now)
