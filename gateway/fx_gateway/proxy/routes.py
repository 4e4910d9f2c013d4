"""A function's route table as the gateway uses it: which version a request goes to."""

from __future__ import annotations

import random
import zlib
from bisect import bisect_right
from collections.abc import Callable

from fx.protocol import INVOKED_QUALIFIER, RUNS_AS_LATEST, RouteTable

from fx_gateway.http import responses
from fx_gateway.proxy.dispatch import VersionDispatcher

LATEST = "$LATEST"  # Lambda's qualifier for the newest version
LATEST_LINE = b"%s: 1\r\n" % RUNS_AS_LATEST.encode()
QUALIFIER_LINE = INVOKED_QUALIFIER.encode() + b": %s\r\n"
EXECUTED_LATEST = b"X-Amz-Executed-Version: $LATEST\r\n"


class FunctionRoutes:
    def __init__(self, table: RouteTable, make: Callable[[str, str], VersionDispatcher]) -> None:
        self.name = table.function
        self._make = make
        self.dispatchers: dict[str, VersionDispatcher] = {}
        self.update(table)

    def update(self, table: RouteTable) -> None:
        self.table = table
        self.timeout = table.timeout_ms / 1000
        self.max_request_bytes = table.max_request_bytes
        for version in list(self.dispatchers):
            if version not in table.versions:
                self.dispatchers.pop(version).close(responses.version_not_found(self.name, version), 404)
        for version, route in table.versions.items():
            dispatcher = self.dispatchers.get(version) or self._make(self.name, version)
            self.dispatchers[version] = dispatcher
            hold_timeout = table.hold_timeout_ms / 1000 if table.hold_timeout_ms is not None else None
            dispatcher.update(
                route.endpoints, route.concurrency, hold_timeout, table.hold_queue, route.token, route.standby
            )
        self.newest = self.dispatchers[max(self.dispatchers, key=_number)] if self.dispatchers else None
        # Ascending version order puts the newest version's share last, so while a canary's weight grows the
        # sticky users it already has keep landing on it.
        self._split = self._weights(table.traffic)
        # The usual table: one version takes all the traffic, so a call naming no version needs no draw, and the
        # lines telling its replica how it was named are the same for every such call.
        only = self._split[1][0] if len(self._split[1]) == 1 else None
        self.unqualified = None if only is None else (only, self.invoked(only, ""))
        # An alias with a split of its own (the Lambda API's RoutingConfig) draws among its versions likewise.
        self._alias_splits = {alias: self._weights(split) for alias, split in table.alias_traffic.items()}
        kind, _, key = (table.sticky or "").partition(":")
        self._sticky = (kind, key.lower().encode("latin-1")) if key else None

    def _weights(self, traffic: dict[str, int]) -> tuple[list[int], list[VersionDispatcher]]:
        """Cumulative weights for a bisect, and their dispatchers; versions missing from the table take none."""
        bounds: list[int] = []
        weighted: list[VersionDispatcher] = []
        total = 0
        for version, percent in sorted(traffic.items(), key=lambda item: _number(item[0])):
            if percent > 0 and version in self.dispatchers:
                total += percent
                bounds.append(total)
                weighted.append(self.dispatchers[version])
        return bounds, weighted

    def pick(self, qualifier: str = "", headers: dict[bytes, bytes] | None = None) -> VersionDispatcher | None:
        """The pinned version (number, alias or $LATEST), else one chosen by traffic weight; None if none fits.
        An alias with a split of its own is chosen among its versions by weight.

        With a sticky key in the table and in `headers`, the choice is a stable hash of the key's value, so
        a user keeps their version for as long as the split stays the same.
        """
        if qualifier:
            split = self._alias_splits.get(qualifier)
            if split is not None:
                return self._draw(*split, headers)
            version = self.table.aliases.get(qualifier, qualifier)
            if version == LATEST and self.dispatchers:
                version = max(self.dispatchers, key=_number)
            return self.dispatchers.get(version)
        return self.unqualified[0] if self.unqualified is not None else self._draw(*self._split, headers)

    def _draw(
        self, bounds: list[int], weighted: list[VersionDispatcher], headers: dict[bytes, bytes] | None
    ) -> VersionDispatcher | None:
        if len(weighted) == 1:
            return weighted[0]
        if not weighted:
            return None
        cohort = self._cohort(headers) if self._sticky and headers else None
        draw = random.random() if cohort is None else zlib.crc32(cohort) / 0x1_0000_0000
        return weighted[bisect_right(bounds, draw * bounds[-1])]

    def invoked(self, dispatcher: VersionDispatcher, qualifier: str) -> bytes:
        """Header lines telling `dispatcher`'s replica how the caller named the function, for Lambda's context:
        the qualifier (its invoked ARN ends with it), and whether it runs as $LATEST (the caller named no
        version, or $LATEST, and the newest version runs; a traffic split to an older one runs it by number).
        `qualifier` is one `pick` resolved, so a name from the route table: nothing a caller could inject."""
        lines = QUALIFIER_LINE % qualifier.encode("latin-1") if qualifier else b""
        if dispatcher is self.newest and (not qualifier or qualifier == LATEST):
            lines += LATEST_LINE
        return lines

    def _cohort(self, headers: dict[bytes, bytes]) -> bytes | None:
        kind, key = self._sticky  # type: ignore[misc]
        if kind == "header":
            return headers.get(key)
        for pair in headers.get(b"cookie", b"").split(b";"):
            name, _, value = pair.strip().partition(b"=")
            if name.lower() == key:
                return value
        return None

    def close(self) -> None:
        """The function was deleted: held requests learn so, in-flight ones finish."""
        for dispatcher in self.dispatchers.values():
            dispatcher.close(responses.function_not_found(self.name), 404)


def _number(version: str) -> int:
    return int(version) if version.isdigit() else -1
