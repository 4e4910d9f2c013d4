"""Function pods' logs, copied into <state>/logs/<function>.log: the files `fx logs` reads in both backends.

Kubernetes drops a pod's log with the pod, and functions scale to zero; copying each replica's log while it
runs keeps `fx logs NAME` showing what ran after its pods are gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger("fx_controller.kubernetes")


class LogSource(Protocol):
    def follow_log(self, pod: str, on_chunk: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        """Stream the pod's function container log, chunk by chunk, in a thread; on_end when it ends."""


class LineWriter:
    """Appends whole lines only, so the streams of several pods of one function never cut into each other."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab", buffering=0)  # O_APPEND: each write lands whole at the end
        self._partial = b""

    def write(self, chunk: bytes) -> None:
        data = self._partial + chunk
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        if end:
            self._file.write(data[:end])

    def close(self) -> None:
        if self._partial:
            self._file.write(self._partial + b"\n")
        self._file.close()


class PodLogs:
    def __init__(self, source: LogSource, log_dir: Path) -> None:
        self._source = source
        self._dir = log_dir
        self._following: set[str] = set()

    def follow(self, pod: str, function: str) -> None:
        """Copy the pod's log from its start until its container ends; once per pod."""
        if pod in self._following:
            return
        try:
            writer = LineWriter(self._path(function))
        except OSError as e:
            log.warning("could not copy the log of pod %s: %s", pod, e)
            return
        self._following.add(pod)

        def ended() -> None:
            writer.close()
            self._following.discard(pod)

        self._source.follow_log(pod, writer.write, ended)

    def note(self, function: str, line: str) -> None:
        """A line of fx's own about the function, e.g. an init error read from a pod that is gone."""
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            with self._path(function).open("ab") as f:
                f.write(line.rstrip("\n").encode() + b"\n")
        except OSError as e:  # a log line is not worth failing the replica's bookkeeping for
            log.warning("could not write to the log of %s: %s", function, e)

    def _path(self, function: str) -> Path:
        return self._dir / f"{function}.log"
