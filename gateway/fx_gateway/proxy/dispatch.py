"""Per-version dispatch: pick the least-loaded replica, else hold the request; activate a version at zero.

A VersionDispatcher is the sole owner of its version's counts: the requests at a replica (for the backstop),
the replicas' outstanding requests, the version's statistics. Exchanges and upstream connections report to it
(`finished`, `release`, `retry`) and never write its fields.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from fx.protocol import MEMORY_MB_MAX, MEMORY_MB_MIN, REPLICA_TOKEN, ActivationReply, ActivationRequest

from fx_gateway.http import responses
from fx_gateway.proxy import backstop, replica_loss
from fx_gateway.proxy.exchange import Exchange
from fx_gateway.proxy.stats import VersionStats
from fx_gateway.proxy.upstream import DOWN_S, MAX_IDLE, Replica, UpstreamConnection
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

NO_CONTROLLER_RETRY_S = 0.5
ASK_AGAIN_S = 0.05  # an activation answer named only replicas found down meanwhile: asked again this soon
TOKEN_HEADER = REPLICA_TOKEN.encode()


class NoController(Exception):
    """Nobody answers activation requests (the controller is not up yet): ask again until the hold expires."""


# Sends one ActivationRequest and waits at most `timeout` s for the reply; raises TimeoutError or NoController.
Activator = Callable[[ActivationRequest, float], Awaitable[ActivationReply]]


class VersionDispatcher:
    def __init__(
        self,
        function: str,
        version: str,
        stats: VersionStats,
        activator: Activator,
        hold_timeout: float,
        hold_queue: int,
        replica_retries: int = 1,
    ) -> None:
        self.function = function
        self.version = version
        self.executed = b"X-Amz-Executed-Version: %s\r\n" % version.encode()  # on the Invoke API's answers
        self.stats = stats
        self.activator = activator
        self.defaults = (hold_timeout, hold_queue)  # the gateway's, for tables that do not override them
        self.hold_timeout = hold_timeout
        self.hold_queue = hold_queue
        self.replica_retries = replica_retries  # times a request whose replica was lost may be sent again
        self.concurrency = 1
        self.token = ""
        self.auth = b""  # the version's X-Fx-Replica-Token header line, added to every request it sends
        self.replicas: dict[str, Replica] = {}
        self.standby = ""  # the route table's: where the version's next replica waits for a first request
        self.queue: deque[Exchange] = deque()
        self.sent: set[Exchange] = set()  # at a replica, for the backstop timeout
        self.activating = False
        self._timer: asyncio.TimerHandle | None = None

    # --- the route table's view ---

    def update(
        self,
        endpoints: list[str],
        concurrency: int,
        hold_timeout: float | None = None,
        hold_queue: int | None = None,
        token: str = "",
        standby: str = "",
    ) -> None:
        """Adopt a route table's endpoints; replicas keep their counts and pools, vanished ones lose idle sockets."""
        self.concurrency = concurrency
        if token != self.token:  # the header line is built once per version, not per request
            self.token = token
            self.auth = b"%s: %s\r\n" % (TOKEN_HEADER, token.encode("latin-1")) if token else b""
        self.hold_timeout = self.defaults[0] if hold_timeout is None else hold_timeout
        self.hold_queue = self.defaults[1] if hold_queue is None else hold_queue
        old = self.replicas
        self.replicas = {e: old.pop(e, None) or Replica(e, self) for e in endpoints}
        self.standby = standby if standby not in self.replicas else ""
        for gone in old.values():
            gone.removed = True
            gone.close_idle()
        self.pump()

    def add_endpoints(self, endpoints: list[str]) -> None:
        """An activation answer's replicas. One this gateway found down stays down for its DOWN_S: the controller
        learns of a replica's exit later than a gateway sees its connection refused or broken, so an answer
        naming it may be out of date (the route table, or the down time's end, settles it)."""
        for endpoint in endpoints:
            if endpoint not in self.replicas:
                self.replicas[endpoint] = Replica(endpoint, self)
        self.pump()

    def close(self, answer: bytes, status: int) -> None:
        """The version is gone: answer whoever waits, keep in-flight requests to their end."""
        self._fail_held(answer, status)
        self.update([], self.concurrency, self.hold_timeout, self.hold_queue, self.token)

    # --- requests ---

    def pick(self) -> Replica | None:
        """The replica with the fewest outstanding requests that is below its concurrency limit."""
        best, low, limit, now = None, 1 << 62, self.concurrency, 0.0
        for replica in self.replicas.values():
            n = replica.outstanding
            if n < low and (limit == 0 or n < limit):
                if replica.down_until:
                    now = now or time.monotonic()
                    if replica.down_until > now:
                        continue
                best, low = replica, n
        return best

    def usable(self) -> bool:
        now = time.monotonic()
        return any(r.down_until <= now for r in self.replicas.values())

    def submit(self, exchange: Exchange) -> None:
        if not self.queue:
            replica = self.pick()
            if replica is not None:
                self._send(replica, exchange)
                return
        if len(self.queue) >= self.hold_queue:
            exchange.fail(responses.queue_full(self.function, self.hold_queue), 503)
            return
        self._hold(exchange)

    def retry(self, failed: Replica, exchange: Exchange) -> None:
        """Route the request again: no connection to `failed` opened (so it was never sent), or `lost` found it
        may be sent again."""
        failed.outstanding -= 1
        self.stats.in_flight -= 1
        self.sent.discard(exchange)
        exchange.conn = None
        if exchange.gone:
            return
        if self.queue or self.pick() is None:  # it waited once already: do not make it queue behind newcomers
            self._hold(exchange, front=True)
        else:
            self._send(self.pick(), exchange)  # type: ignore[arg-type]

    def lost(self, replica: Replica, conn: UpstreamConnection, exchange: Exchange, exc: BaseException | None) -> None:
        """`replica`'s connection broke before `exchange` had its whole answer: sent again if that is safe
        (proxy.replica_loss), else answered 502 Runtime.ReplicaLost. The replica is skipped for a while, its
        idle connections closed: most likely it died, and the route table will say so."""
        replica.down_until = time.monotonic() + DOWN_S
        replica.close_idle()
        again = not exchange.gone and replica_loss.send_again(
            exchange.safe, replica_loss.unread(exc), exchange.heard_back, exchange.retried, self.replica_retries
        )
        if again:
            exchange.retried += 1
            self.stats.retries += 1
            self.retry(replica, exchange)
            return
        self.stats.lost += 1
        exchange.lost()
        self.release(replica, conn, False)

    def release(self, replica: Replica, conn: UpstreamConnection, reusable: bool) -> None:
        replica.outstanding -= 1
        self.stats.in_flight -= 1
        # Pooled unless it cannot carry another request; a pooled one closed meanwhile is skipped at `_send`.
        if reusable and not replica.removed and len(replica.idle) < MAX_IDLE:
            replica.idle.append(conn)
        else:
            conn.transport.close()  # type: ignore[union-attr]
        if self.queue:
            self.pump()

    def finished(self, exchange: Exchange, status: int) -> None:
        """`exchange` has its answer (the replica's, or the gateway's own): counted, and no longer at a replica."""
        self.sent.discard(exchange)
        self.stats.record(status, time.monotonic() - exchange.started)

    def reported(self, exchange: Exchange, report: bytes) -> None:
        """The replica's X-Fx-Report ("<ms> <MB>"): the handler's duration, never more than the gateway waited, and
        its memory size. The replica runs the function's code, which could write this line itself: a duration that
        is not a number from 0 up, or a memory size no function can have, is not counted."""
        duration, _, memory = report.partition(b" ")
        try:
            ms, mb = float(duration), int(memory)
        except ValueError:
            return
        if not (0 <= ms < math.inf and MEMORY_MB_MIN <= mb <= MEMORY_MB_MAX):  # NaN fails the first test too
            return
        waited = (time.monotonic() - exchange.started) * 1000
        self.stats.record_handler(ms if ms < waited else waited, mb)  # min() as a call costs more, on every answer

    def refused(self, status: int) -> None:
        """A request refused from its head, before it became an exchange."""
        self.stats.record(status, 0.0)

    def drop(self, exchange: Exchange) -> None:
        """A held caller went away."""
        try:
            self.queue.remove(exchange)
        except ValueError:
            return
        self.stats.held = len(self.queue)

    def pump(self) -> None:
        queue = self.queue
        while queue:
            replica = self.pick()
            if replica is None:
                if not self.activating and not self.usable():
                    self._cold()
                break
            exchange = queue.popleft()
            held = time.monotonic() - exchange.held_at
            self.stats.hold.observe(held)
            if exchange.cold:
                self.stats.record_cold_start(held)
            self._send(replica, exchange)
        self.stats.held = len(queue)

    def shed(self) -> int:
        """The gateway is stopping: the held requests are answered 503 (no replica saw them: safe to retry)."""
        held = len(self.queue)
        self._fail_held(responses.gateway_stopping(self.function), 503)
        return held

    def expire_sent(self, now: float) -> None:
        """Backstop: answer 504 for requests a replica has held past the function timeout plus a grace."""
        for exchange in [e for e in self.sent if e.deadline < now]:
            exchange.timed_out()

    @property
    def key(self) -> tuple[str, str]:
        return self.function, self.version

    def _send(self, replica: Replica, exchange: Exchange) -> None:
        replica.outstanding += 1
        self.stats.in_flight += 1
        exchange.deadline = time.monotonic() + exchange.timeout + backstop.GRACE_S  # when the backstop answers
        self.sent.add(exchange)
        idle = replica.idle
        while idle:
            conn = idle.pop()
            if not conn.transport.is_closing():  # type: ignore[union-attr]
                conn.send(exchange)
                return
        spawn(replica.connect(exchange))

    def _hold(self, exchange: Exchange, front: bool = False) -> None:
        exchange.held_at = exchange.held_at or time.monotonic()
        exchange.cold = not self.usable()
        if front:
            self.queue.appendleft(exchange)
        else:
            self.queue.append(exchange)
        self.stats.held = len(self.queue)
        self._arm()
        if exchange.cold and not self.activating:
            self._cold()

    def _arm(self) -> None:
        if self._timer is None and self.queue:
            delay = self.queue[0].held_at + self.hold_timeout - time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._expire)

    def _expire(self) -> None:
        self._timer = None
        now, queue = time.monotonic(), self.queue
        while queue and queue[0].held_at + self.hold_timeout <= now:
            exchange = queue.popleft()
            self.stats.held = len(queue)
            if exchange.cold:
                exchange.fail(responses.activation_timeout(self.function, self.hold_timeout), 504)
            else:
                exchange.fail(responses.queue_timeout(self.function, self.hold_timeout), 504)
        self._arm()

    def _fail_held(self, answer: bytes, status: int) -> None:
        queue = self.queue
        while queue:
            exchange = queue.popleft()
            self.stats.held = len(queue)
            exchange.fail(answer, status)

    def _cold(self) -> None:
        """No replica can take the held requests: the version's standby takes them if it has one (it becomes a
        replica as it accepts the first; refused, they are routed again, to an activation), else an activation."""
        if self.standby:
            endpoint, self.standby = self.standby, ""
            self.replicas[endpoint] = Replica(endpoint, self)
            self.pump()
        else:
            self._start_activation()

    def _start_activation(self) -> None:
        self.activating = True
        spawn(self._activate())

    async def _activate(self) -> None:
        """One activation request at a time per version, however many requests wait."""
        try:
            while self.queue and not self.usable():
                held_ms = (time.monotonic() - self.queue[0].held_at) * 1000
                request = ActivationRequest(self.function, self.version, len(self.queue), round(held_ms, 3))
                try:
                    reply = await self.activator(request, self.hold_timeout)
                except NoController:
                    await asyncio.sleep(NO_CONTROLLER_RETRY_S)
                    continue
                except TimeoutError:
                    log.warning("activation of %s/%s: no reply within %g s", *self.key, self.hold_timeout)
                    self._fail_held(responses.activation_timeout(self.function, self.hold_timeout), 504)
                    break
                if not reply.ok:
                    log.warning("activation of %s/%s failed: %s %s", *self.key, reply.error, reply.cause)
                    answer = responses.start_failed(self.function, reply.status, reply.error, reply.cause)
                    self._fail_held(answer, reply.status)
                    break
                self.add_endpoints(reply.endpoints)
                if not reply.endpoints:
                    await asyncio.sleep(NO_CONTROLLER_RETRY_S)
                elif not self.usable():
                    await asyncio.sleep(ASK_AGAIN_S)
            self.pump()  # a replica may have become usable while this waited (its down time over)
        finally:
            self.activating = False
