"""What lets a restarted controller adopt the replicas of one that died (`fx up`: zygotes with a lifeline).

A zygote started with a lifeline outlives its controller and listens on a control socket (`.zygote/` in
the run directory, 0700: sandboxed functions see the run directory but cannot enter it). The controller
keeps a record of each ready replica there (`replicas.jsonl`, 0600, Records): its pid and that pid's start time, its
endpoint and a digest of its token. The next controller connects to the zygotes, hears which replicas they
still have, and adopts one only if the record vouches for it: same pid, same start time (a pid is reused,
a start time with it is not), same endpoint (a Unix socket that still exists), and, checked against the
function store by the fleet, a version that still exists and a token that is that version's. Any other
replica is killed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .base import token_digest

CONTROL_DIR = ".zygote"
RECORDS_FILE = "replicas.jsonl"
COMPACT_SLACK = 64  # log lines beyond twice the live records before a compaction (none for a handful of changes)


@dataclass(frozen=True)
class Record:
    pid: int
    start_time: int
    endpoint: str
    function: str
    version: int
    token_sha256: str


def control_dir(run_dir: Path) -> Path:
    path = run_dir / CONTROL_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def control_path(run_dir: Path, interpreter: str) -> Path:
    """The control socket of `interpreter`'s zygote (short: a Unix socket path has 107 bytes)."""
    return control_dir(run_dir) / f"{hashlib.sha256(interpreter.encode()).hexdigest()[:12]}.sock"


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone."""
    try:  # os.read, not Path.read_text: a text file's opening was most of the 0.2 ms a cold start waited for it
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Records:
    """The ready replicas of this controller, on disk for the next one: a log of JSON lines, each a record
    (`{"id", "pid", ...}`) or a removal (`{"id", "gone": true}`), appended at each replica ready and exit (one
    write; the whole file rewritten at each was 1.5 ms a time at 1,000 replicas), and compacted (rewritten with
    the live records, then renamed over the log) once it holds more than twice as many lines as live records.
    A controller killed at any point leaves a log whose complete lines say every record it had written: a
    line cut short by the kill is skipped, and the log is never truncated in place."""

    def __init__(self, run_dir: Path) -> None:
        self._path = control_dir(run_dir) / RECORDS_FILE
        self._records: dict[str, str] = {}  # replica id -> its record's line
        self._lines = 0  # in the log now
        self._fd: int | None = None  # the log, opened for appending

    def previous(self) -> dict[str, Record]:
        """What the last controller left (what it wrote readably). The log stays as it is until `compact()`:
        a controller killed before then leaves the next one the same records."""
        found: dict[str, Record] = {}
        try:
            lines = self._path.read_bytes().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                entry = json.loads(line)
                replica_id = str(entry.pop("id"))
                if entry.pop("gone", False):
                    found.pop(replica_id, None)
                else:
                    found[replica_id] = Record(**entry)
            except (ValueError, TypeError, KeyError, AttributeError):
                continue  # cut short by a kill while being written, or not ours
        self._records = {}
        return found

    def keep(self, replica_id: str, record: Record) -> None:
        """A replica of the last controller's adopted by this one (on disk at the next `compact()`)."""
        self._records[replica_id] = _line(replica_id, asdict(record))

    def compact(self) -> None:
        """The log rewritten with the live records alone, and renamed over the old one."""
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(self._records.values()))
        os.replace(tmp, self._path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._lines = len(self._records)

    def add(self, replica_id: str, pid: int, endpoint: str, function: str, version: int, token: str) -> None:
        started = start_time(pid)
        if started is None:
            return  # already gone: its exit event follows
        record = Record(pid, started, endpoint, function, version, token_digest(token))
        self._records[replica_id] = line = _line(replica_id, asdict(record))
        self._append(line)

    def remove(self, replica_id: str) -> None:
        if self._records.pop(replica_id, None) is not None:
            self._append(_line(replica_id, {"gone": True}))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, line: str) -> None:
        if self._fd is None or self._lines >= 2 * len(self._records) + COMPACT_SLACK:
            return self.compact()  # includes this line's change
        os.write(self._fd, line.encode())  # one write of a short line: whole, or cut short only by a kill
        self._lines += 1


def _line(replica_id: str, fields: dict[str, object]) -> str:
    return json.dumps({"id": replica_id, **fields}) + "\n"


def vouches(record: Record | None, pid: int, endpoint: str) -> bool:
    """Is the process a zygote says is this replica the one the record describes?"""
    if record is None or record.pid != pid or record.endpoint != endpoint or not endpoint:
        return False
    if start_time(pid) != record.start_time:
        return False
    return not endpoint.startswith("unix:") or Path(endpoint.removeprefix("unix:")).exists()
