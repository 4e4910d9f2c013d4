"""A request whose replica connection broke before the answer came: sent again, or answered 502 ReplicaLost.

Whether the handler may have run is read from how the connection ended, at no cost to the hot path. A replica
reads a request whole before it calls the handler (fx_runtime.server dispatches on the parser's message
complete), and the gateway sends one request per connection and nothing more until it is answered. When a
process dies, or closes a socket, with bytes it never read, the kernel resets the connection (TCP: RST;
Unix sockets: ECONNRESET on the peer) instead of ending it cleanly. So a reset (or EPIPE: the gateway's own
write hit a socket that was already gone) with no byte of an answer proves the replica never had the whole
request, so the handler never saw it. A clean end (EOF) proves nothing: the handler may have run, and only a
request that is safe to repeat is sent again. A connection that never opened is not a loss: the dispatcher
routes that request again as before (`VersionDispatcher.retry`), whatever its method.

The proof holds while the gateway's connection ends at the runtime itself: an L7 proxy in between (a service
mesh sidecar) would read the request and answer the reset on its own.
"""

from __future__ import annotations

# RFC 9110 §9.2.1's safe methods: repeating them changes nothing the caller asked for. PUT and DELETE are
# idempotent on paper, but a function's handler is not held to it, so they are not repeated.
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def unread(exc: BaseException | None) -> bool:
    """Whether a connection that ended with `exc` proves the replica left the request unread."""
    return isinstance(exc, (ConnectionResetError, BrokenPipeError))


def send_again(safe: bool, unread: bool, heard_back: bool, retried: int, limit: int) -> bool:
    """Whether to send a request again after its replica was lost.

    `safe`: its method is safe to repeat; `unread`: the replica provably never read it whole; `heard_back`: a
    byte of the replica's answer came (it was answering, and part of it may be with the caller already);
    `retried`: how often it was sent again already; `limit`: how often it may be (--replica-retries)."""
    return not heard_back and retried < limit and (safe or unread)
