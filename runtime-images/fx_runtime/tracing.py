"""X-Ray trace headers: the one an invocation runs under, as Lambda passes it to the function."""

from __future__ import annotations

import os
import sys
import time

ENV = "_X_AMZN_TRACE_ID"  # where Lambda's Python runtime puts the invocation's trace header (the X-Ray SDK reads it)
_KEY = os.environ.encodekey(ENV)  # type: ignore[attr-defined]
_DATA = os.environ._data  # type: ignore[attr-defined]
_ENCODING = sys.getfilesystemencoding()


class TraceIds:
    """X-Ray-shaped trace headers for calls that brought none, `Root=1-<epoch hex>-<24 hex>;Parent=<16 hex>`:
    unique per replica (a random prefix, made after the zygote's fork) and cheap per call (a counter, no
    getrandom(2) per invocation)."""

    __slots__ = ("_count", "_prefix", "_root", "_second")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = 0
        self._second = -1
        self._root = ""  # "Root=1-<epoch hex>-<prefix>" of self._second: formatted once a second, not per call

    def __call__(self) -> str:
        self._count += 1
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._root = f"Root=1-{second:08x}-{self._prefix}"
        count = f"{self._count:012x}"  # Parent: 4 zeros and these 12 digits (2^48 calls: 9 years at 1M/s)
        return f"{self._root}{count};Parent=0000{count};Sampled=0"


def set_trace_id(value: str) -> None:
    """`os.environ[ENV] = value` for Python code (os.environ, os.getenv: Powertools, the X-Ray SDK), without
    putenv(3): glibc's setenv keeps every value it was ever given, so a new one per invocation would leak
    about 140 bytes a call and slow each call as its tree grows (measured: 41 MB and 12 µs a call after
    300,000). A subprocess the handler starts inherits the C environment, which has no trace id."""
    _DATA[_KEY] = value.encode(_ENCODING, "surrogateescape")  # os.environ.encodevalue's, without its calls
