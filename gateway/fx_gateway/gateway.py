"""The gateway's parts, built in order, each given what it needs: the NATS link, the route book (proxy), the
event engines, the route feed, and the HTTP side (connections, pages, router)."""

from __future__ import annotations

import asyncio
import time

from fx_gateway.api.api_keys import ApiKeys
from fx_gateway.api.authorizers.jwt import JwtAuthorizer
from fx_gateway.api.authorizers.lambda_function import LambdaAuthorizer
from fx_gateway.api.feed import ApiFeed
from fx_gateway.api.http_upstream import Upstreams
from fx_gateway.api.limits import Limits
from fx_gateway.api.metrics import ApiMetrics
from fx_gateway.api.services import ApiServices
from fx_gateway.config import Settings
from fx_gateway.events.callback_policy import CallbackPolicy
from fx_gateway.events.engines import Events
from fx_gateway.http.connections import Connections
from fx_gateway.http.pages import MetricsSide, Pages
from fx_gateway.http.router import Router
from fx_gateway.http.server import ClientConnection
from fx_gateway.nats_link import NatsLink
from fx_gateway.proxy.body_refs import BlobReader
from fx_gateway.proxy.dispatch import Activator
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import NatsState
from fx_gateway.route_feed import RouteFeed
from fx_gateway.tasks import spawn


class Gateway:
    def __init__(self, settings: Settings, activator: Activator | None = None) -> None:
        """`activator`: how dispatchers ask for replicas; the NATS link's (the controller) unless given."""
        self.settings = settings
        self.link = NatsLink(settings)
        self.book = RouteBook(settings, activator or self.link.activate)
        self.events = Events(settings, self.book, CallbackPolicy.from_settings(settings))
        self.feed = RouteFeed(self.link, self.book, self.events)
        self.upstreams = Upstreams(settings)
        self.api_keys = ApiKeys(settings, self.link)
        self.limits = Limits(settings, self.link, self.api_keys)  # reads each key's limits from api_keys
        self.api_services = ApiServices(
            settings, self.book, ApiMetrics(), self.api_keys, self.limits, upstreams=self.upstreams
        )
        self.apis = ApiFeed(self.link, self.api_services, {"jwt": JwtAuthorizer, "lambda": LambdaAuthorizer})
        self.connections = Connections(settings)
        nats_state = NatsState(lambda: self.link.connected)
        stats = (self.book.stats, self.events.async_stats, self.events.event_stats, nats_state)
        stats += (self.api_services.metrics, self.upstreams, self.limits)
        self.pages = Pages(stats, self.loaded)
        blobs = BlobReader(lambda: self.link.nc, settings.blobs_max_bytes)
        router = (settings, self.book, self.events.enqueue, self.events.policy, self.pages, blobs)
        self.router = Router(*router, self.apis, self.api_services)
        self._tasks: list[asyncio.Task] = []

    def loaded(self) -> bool:
        """The initial route tables, APIs and API keys are in (/healthz ready; see RouteFeed.healthy)."""
        return self.feed.healthy() and self.apis.loaded and self.api_keys.loaded

    def connection(self) -> ClientConnection:
        """A caller connection to the main listener."""
        return ClientConnection(self.router, self.connections)

    def metrics_connection(self) -> ClientConnection:
        """A connection to --metrics-listen: /metrics and /healthz only."""
        return ClientConnection(MetricsSide(self.pages), self.connections)

    def start_sweeps(self) -> None:
        """Start the timers every request relies on: the backstop, and the caller connections' timeouts."""
        self._tasks += [spawn(self.book.backstop.run()), spawn(self.connections.run())]

    async def start(self) -> None:
        """Connect to NATS (retrying until it is up), then follow the route tables and serve events."""
        nc = await self.link.connect()
        await self.feed.bucket(nc)  # made by the controller: the async-call streams are there too
        await self.events.start(nc)
        self._tasks += [spawn(self.feed.watch(nc)), spawn(self.apis.watch(nc)), spawn(self.api_keys.watch(nc))]
        self._tasks.append(spawn(self.limits.report()))
        self._tasks.append(spawn(self.link.report(self.book.stats)))
        self._tasks.append(spawn(self.link.report_usage(self.book.stats, self.settings.usage_interval)))

    async def stop(self, drain_timeout: float) -> None:
        """Finish the requests in flight, then the event work under way, within one drain timeout; leave NATS."""
        deadline = time.monotonic() + drain_timeout
        await self.connections.drain(drain_timeout, self.book.shed)
        await self.close(max(0.0, deadline - time.monotonic()))

    async def close(self, work_timeout: float | None = None) -> None:
        """`work_timeout`: what the async calls under way get to finish (default --drain-timeout)."""
        for task in self._tasks:
            task.cancel()
        self.upstreams.close()
        await self.events.close(self.settings.drain_timeout if work_timeout is None else work_timeout)
        await self.link.close()
