"""Answers the gateway makes itself (errors, /metrics, /healthz), as call objects of a caller connection."""

from __future__ import annotations

import time
from collections.abc import Callable

from fx_gateway.http import responses
from fx_gateway.http.server import ClientConnection
from fx_gateway.proxy.stats import VersionStats

ANSWER_MAX_BODY = 64 * 1024  # a body the gateway's own answers ignore is read up to this, else refused


class Answer:
    """A response the gateway makes itself; `make` is called when the request's turn comes."""

    __slots__ = ("client", "keep_alive", "make", "size", "started", "stats", "status")
    streaming = False

    def __init__(
        self, client: ClientConnection, make: bytes | Callable[[], bytes], stats: VersionStats | None = None
    ) -> None:
        self.client = client
        self.make = make
        self.stats = stats  # counted in the request metrics when set
        self.keep_alive = True
        self.started = time.monotonic()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)  # a body the answer does not need: read and dropped, up to a bound
        if self.size > ANSWER_MAX_BODY:
            self.client.refuse(responses.with_close(self.make if isinstance(self.make, bytes) else self.make()))

    def begin(self) -> None:
        data = self.make if isinstance(self.make, bytes) else self.make()
        if self.stats is not None:
            self.stats.record(int(data[9:12]), time.monotonic() - self.started)
        self.client.write(data)
        self.client.done(self.keep_alive)

    def client_gone(self) -> None:
        pass
