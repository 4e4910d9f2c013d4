"""What lets a restarted controller adopt the replicas of one that died (`fx up`: zygotes with a lifeline).

A zygote started with a lifeline outlives its controller and listens on a control socket (`.zygote/` in
the run directory, 0700: sandboxed functions see the run directory but cannot enter it). The controller
keeps a record of each ready replica there (`replicas.json`, 0600): its pid and that pid's start time, its
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
RECORDS_FILE = "replicas.json"


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
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Records:
    """The ready replicas of this controller, on disk for the next one."""

    def __init__(self, run_dir: Path) -> None:
        self._path = control_dir(run_dir) / RECORDS_FILE
        # Each record as its JSON object, made once: the file is rewritten at every replica start and exit, and
        # with 1,000 replicas asdict() and json.dump's Python encoder made that 9 ms a time (1.5 ms so).
        self._records: dict[str, dict[str, object]] = {}

    def previous(self) -> dict[str, Record]:
        """What the last controller left (nothing if it left nothing readable); this one starts empty."""
        try:
            raw = json.loads(self._path.read_text())
            found = {str(k): Record(**v) for k, v in raw.items()}
        except (OSError, ValueError, TypeError):
            found = {}
        self._records = {}
        self._save()
        return found

    def add(self, replica_id: str, pid: int, endpoint: str, function: str, version: int, token: str) -> None:
        started = start_time(pid)
        if started is None:
            return  # already gone: its exit event follows
        self._records[replica_id] = asdict(Record(pid, started, endpoint, function, version, token_digest(token)))
        self._save()

    def keep(self, replica_id: str, record: Record) -> None:
        self._records[replica_id] = asdict(record)
        self._save()

    def remove(self, replica_id: str) -> None:
        if self._records.pop(replica_id, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self._records))  # one shot: json.dump would take the Python encoder
        os.replace(tmp, self._path)


def vouches(record: Record | None, pid: int, endpoint: str) -> bool:
    """Is the process a zygote says is this replica the one the record describes?"""
    if record is None or record.pid != pid or record.endpoint != endpoint or not endpoint:
        return False
    if start_time(pid) != record.start_time:
        return False
    return not endpoint.startswith("unix:") or Path(endpoint.removeprefix("unix:")).exists()
