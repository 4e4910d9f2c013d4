"""Child processes that do not outlive their launcher: Linux's parent-death signal, asked for between fork and exec.

Only the returned function runs in the child, and it imports nothing: libc is loaded in the parent (a fork of a
threaded process may not import or take locks before exec), and `fx --help` never loads ctypes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn asking Linux for `sig` when the launcher (the thread that started the child) dies; None
    elsewhere."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, sig)
