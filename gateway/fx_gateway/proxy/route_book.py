"""The route tables this gateway follows: one FunctionRoutes per function, and the dispatchers they make.

The HTTP router and the event engines get a RouteBook, not the gateway: they look functions up (`get`) and read
the settings the tables are bounded by.
"""

from __future__ import annotations

import logging
import time

from fx.protocol import RouteTable

from fx_gateway.config import Settings
from fx_gateway.proxy.backstop import Backstop
from fx_gateway.proxy.dispatch import Activator, VersionDispatcher
from fx_gateway.proxy.routes import FunctionRoutes
from fx_gateway.proxy.stats import Stats

log = logging.getLogger("fx_gateway")


class RouteBook:
    def __init__(self, settings: Settings, activator: Activator) -> None:
        self.settings = settings
        self.activator = activator
        self.functions: dict[str, FunctionRoutes] = {}
        self.stats = Stats()
        self.backstop = Backstop()

    def get(self, function: str) -> FunctionRoutes | None:
        return self.functions.get(function)

    def apply(self, table: RouteTable) -> None:
        ahead = (table.revision - time.time_ns()) / 1e9
        if ahead > self.settings.max_revision_skew:
            # The controller numbers revisions by its clock's nanoseconds: one this far ahead was not made by
            # it, and once adopted it would outrank every real update (a hijack surviving redeploys).
            log.warning(
                "function %s: refused route table revision %d, %.0f s ahead of this gateway's clock"
                " (--max-revision-skew %g s); it was not written by the controller",
                table.function,
                table.revision,
                ahead,
                self.settings.max_revision_skew,
            )
            return
        routes = self.functions.get(table.function)
        if routes is None:
            self.functions[table.function] = FunctionRoutes(table, self._dispatcher)
            log.info("function %s: route table revision %d", table.function, table.revision)
        elif table.revision > routes.table.revision:
            routes.update(table)
        else:
            log.info(
                "function %s: ignored stale route table %d <= %d", table.function, table.revision, routes.table.revision
            )

    def shed(self) -> int:
        """Answer every request still waiting for a replica 503 (the gateway is stopping); how many there were."""
        return sum(dispatcher.shed() for dispatcher in list(self.backstop.dispatchers))

    def remove(self, name: str) -> None:
        routes = self.functions.pop(name, None)
        if routes is not None:
            routes.close()
            log.info("function %s: removed", name)

    def _dispatcher(self, function: str, version: str) -> VersionDispatcher:
        settings = self.settings
        dispatcher = VersionDispatcher(
            function,
            version,
            self.stats.get(function, version),
            self.activator,
            settings.hold_timeout,
            settings.hold_queue,
            settings.replica_retries,
        )
        self.backstop.watch(dispatcher)
        return dispatcher
