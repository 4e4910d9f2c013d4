"""X-Ray trace headers: the one an invocation runs under, as Lambda passes it to the function."""

from __future__ import annotations

import os
import time

ENV = "_X_AMZN_TRACE_ID"  # where Lambda's Python runtime puts the invocation's trace header (the X-Ray SDK reads it)


def new_trace_id() -> str:
    """An X-Ray-shaped trace header for a call that brought none: Root=1-<epoch hex>-<96 random bits>."""
    ids = os.urandom(20).hex()
    return f"Root=1-{int(time.time()):08x}-{ids[:24]};Parent={ids[24:]};Sampled=0"
