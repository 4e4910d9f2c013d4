"""APIs in: the fx_apis bucket followed as route_feed follows fx_routes (the same propagation, the watch started
again after every NATS reconnect, the APIs held serving meanwhile). Each change recompiles the route index as a
whole (a deploy's pace, not a request's) and remakes the changed API's authorizers, closing the old ones."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fx import kv_watch, nats_client
from fx.protocol import KV_APIS

from fx_gateway.api import table
from fx_gateway.api.matching import RouteIndex
from fx_gateway.api.services import ApiServices, Authorizer
from fx_gateway.nats_link import NatsLink
from fx_gateway.route_feed import follow_bucket

log = logging.getLogger("fx_gateway")

# An authorizer kind of the wire JSON ("jwt", "lambda") -> its class, called as kind(name, spec, services).
AuthorizerKinds = dict[str, Callable[[str, dict, ApiServices], Authorizer]]


class ApiFeed:
    def __init__(self, link: NatsLink, services: ApiServices, kinds: AuthorizerKinds) -> None:
        self.link = link
        self.services = services
        self.kinds = kinds
        self.apis: dict[str, table.Api] = {}
        self.authorizers: dict[tuple[str, str], Authorizer] = {}  # (api, authorizer name)
        self.index = RouteIndex()
        self.loaded = False  # the initial APIs are in

    async def watch(self, nc: nats_client.Client) -> None:
        async for entry in kv_watch.follow(nc, lambda: follow_bucket(self.link, nc, KV_APIS)):
            if entry is None:
                if not self.loaded:
                    self.loaded = True
                    log.info("APIs loaded: %d", len(self.apis))
                continue
            if entry.operation in kv_watch.DELETED:
                self.remove(entry.key)
            else:
                self.apply(entry.key, entry.value)

    def apply(self, name: str, value: bytes) -> None:
        """Serve the API stored under `name`; an unreadable one is logged and the one held kept."""
        try:
            api = table.parse(name, value, self.services.metrics)
        except ValueError as exc:
            log.error("API %r unreadable, ignored: %s", name, exc)
            return
        self._close_authorizers(name)
        for auth_name, spec in api.authorizers.items():
            authorizer = self._make(api.name, auth_name, spec)
            if authorizer is not None:
                self.authorizers[(name, auth_name)] = authorizer
        self.apis[name] = api
        self._compile()
        log.info("API %s: %d routes on %s", name, len(api.routes), ", ".join(api.hosts) or "any host")

    def remove(self, name: str) -> None:
        if self.apis.pop(name, None) is not None:
            self._close_authorizers(name)
            self._compile()
            log.info("API %s: removed", name)

    def authorizer(self, api: str, name: str) -> Authorizer | None:
        return self.authorizers.get((api, name))

    def _make(self, api: str, name: str, spec: dict) -> Authorizer | None:
        kind = next(iter(spec), "")
        make = self.kinds.get(kind)
        if make is None:
            log.error("API %s: authorizer %s is of kind %r, which this gateway does not have", api, name, kind)
            return None
        try:
            return make(name, spec[kind], self.services)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("API %s: authorizer %s unusable: %s", api, name, exc)
            return None

    def _close_authorizers(self, api: str) -> None:
        for key in [key for key in self.authorizers if key[0] == api]:
            self.authorizers.pop(key).close()

    def _compile(self) -> None:
        index = RouteIndex(self.apis.values())
        for kept, dropped in index.clashes:
            log.error(
                "API %s: route %r not served: API %s's %r takes the same requests",
                dropped.api.name,
                dropped.key,
                kept.api.name,
                kept.key,
            )
        self.index = index
