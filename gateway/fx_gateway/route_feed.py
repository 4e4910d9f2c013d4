"""Route tables in: the fx_routes bucket watched, each change applied to the route book and to the event
engines' subscriptions. The watch starts again after every NATS reconnect (kv_watch.follow): the tables held
keep serving meanwhile, and those the controller publishes again once NATS is back are picked up."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors
from fx import kv_watch, nats_client
from fx.protocol import KV_ROUTES, RouteTable
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from fx_gateway.events.engines import Events
from fx_gateway.nats_link import CONNECT_RETRY_S, NatsLink
from fx_gateway.proxy.route_book import RouteBook

log = logging.getLogger("fx_gateway")


class RouteFeed:
    def __init__(self, link: NatsLink, book: RouteBook, events: Events) -> None:
        self.link = link
        self.book = book
        self.events = events
        self.loaded = False  # the initial route tables are in

    def healthy(self) -> bool:
        """Ready (/healthz 200) once the initial route tables are in, and still while NATS is away: it serves
        with the tables it holds, and a Kubernetes Service must keep sending it callers meanwhile. An outage
        that made every gateway unready would leave the Service without endpoints (connection refused)."""
        return self.loaded

    async def watch(self, nc: nats_client.Client) -> None:
        async for entry in kv_watch.follow(nc, lambda: self.bucket(nc)):
            if entry is None:  # everything that existed when the watch began has been delivered
                if not self.loaded:
                    self.loaded = True
                    log.info("route tables loaded: %d functions", len(self.book.functions))
                    self.events.loaded()  # only now: a call for a function not yet loaded is not lost
                continue
            if entry.operation in kv_watch.DELETED:
                self.book.remove(entry.key)
            else:
                try:
                    table = RouteTable.from_json(entry.value)
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("route table %r unreadable, ignored: %s", entry.key, exc)
                    continue
                self.book.apply(table)
            try:
                await self.events.sync(entry.key)
            except nats.errors.Error as exc:
                log.error("function %s: cannot subscribe to its triggers: %s", entry.key, exc)

    async def bucket(self, nc: nats_client.Client) -> KeyValue:
        return await follow_bucket(self.link, nc, KV_ROUTES)


async def follow_bucket(link: NatsLink, nc: nats_client.Client, name: str) -> KeyValue:
    """A bucket the gateway follows (made by the controller). Only on a NATS without auth may a gateway create
    it; with its own user it waits for the controller to (start order does not matter, nor NATS coming back
    without its store)."""
    js = nc.jetstream()
    warned = False
    while True:
        try:
            return await js.key_value(name)
        except nats.js.errors.BucketNotFoundError as exc:
            why: Exception = exc
            if not link.creds:
                return await _create(js, name)
        except nats.errors.Error as exc:  # NATS away
            why = exc
        if not warned:
            log.warning("waiting for the controller to create KV %s (%s)", name, why)
            warned = True
        await asyncio.sleep(CONNECT_RETRY_S)


async def _create(js: JetStreamContext, name: str) -> KeyValue:
    try:
        return await js.create_key_value(bucket=name, history=1)
    except nats.js.errors.Error:  # the controller made it meanwhile
        return await js.key_value(name)
