"""One platform per state directory: an exclusive flock on `<state>/lock`, and clear errors for a state dir
that cannot be used at all (read-only, not a folder, no permission).

The lock is a `flock` on an open file, so it dies with the processes holding it: no stale lock after a crash.
`fx up` takes it and hands the open file to the nats-server and fx-controller it starts (the fd number in
FX_STATE_LOCK_FD), so the state dir stays locked until the last of them has exited. The controller *adopts*
that lock; a controller started on its own takes the lock itself. Either way a second `fx up` or controller
on the same directory is refused, naming the PID that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"
LOCK_FD_ENV = "FX_STATE_LOCK_FD"
# The read end of a pipe whose write end only `fx up` holds: EOF once it is gone, however it ended. Given it,
# the controller's zygotes (and so the replicas) outlive a controller crash but never `fx up`.
LIFELINE_FD_ENV = "FX_LIFELINE_FD"
PROTECTIONS_FILE = "protections.txt"  # the controller's start-up report on the function sandbox


class StateDirError(Exception):
    """The state dir is held by another platform, or cannot be written."""


def unusable(state_dir: Path, exc: OSError) -> StateDirError:
    """One line saying what is wrong with the state dir, where, and how to fix it."""
    where = exc.filename or state_dir
    if exc.errno == errno.EROFS:
        why = f"the state dir {state_dir} is on a read-only file system (cannot write {where})"
        fix = "mount it read-write, or choose a writable one with --state-dir"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = f"no permission to write the state dir {state_dir} ({where})"
        fix = "run fx as the user who owns it, or choose another with --state-dir"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = f"the disk holding the state dir {state_dir} is full (cannot write {where})"
        fix = "free some space, or choose another with --state-dir"
    else:
        why = f"cannot use the state dir {state_dir}: {exc.strerror or exc} ({where})"
        fix = "fix it, or choose another with --state-dir"
    return StateDirError(f"{why}; {fix}")


def private(path: Path) -> Path:
    """`path` (a folder of the state dir's: function code, logs, artifacts) made if missing and kept 0700: other
    local users get nothing of the state dir (docs/security.md), even where it sits in folders anyone may enter
    (`make up`'s `.fx` in a checkout). A folder an older fx made 0755 is tightened too."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def acquire(state_dir: Path, role: str) -> int:
    """Lock `state_dir` for this process (and whoever inherits the returned fd), or raise StateDirError."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # an existing one is the operator's choice
        # O_NOFOLLOW: a planted symlink must not make fx truncate the file it points to.
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise unusable(state_dir, exc) from None
    try:
        _lock(fd, state_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise unusable(state_dir, exc) from None
    except StateDirError:
        os.close(fd)
        raise
    return fd


def adopt(state_dir: Path, role: str, inherited: str | None) -> int:
    """The controller's lock: the one its launcher passed down (FX_STATE_LOCK_FD), else its own.

    flock on an open file that already holds the lock succeeds, so an inherited fd is checked by locking it
    again; an fd that is not this state dir's lock file is ignored."""
    if inherited and inherited.isdigit():
        fd = int(inherited)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(state_dir / LOCK_FILE))
        except OSError:
            same = False
        if same:
            os.set_inheritable(fd, False)  # the zygote and its replicas must not hold it
            _lock(fd, state_dir)
            return fd
    return acquire(state_dir, role)


def release(fd: int) -> None:
    os.close(fd)  # closing the last fd of the open file drops the flock


def _lock(fd: int, state_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        raise StateDirError(_held_by(state_dir, holder)) from None


def _held_by(state_dir: Path, holder: str) -> str:
    pid, _, role = holder.partition(" ")
    who = f"PID {pid} ({role})" if pid.isdigit() else "another process"
    gone = ""
    if pid.isdigit() and not Path(f"/proc/{pid}").exists():
        gone = f"; PID {pid} has exited but the processes it started are still stopping: try again in a few seconds"
    return (
        f"the state dir {state_dir} is in use by {who}{gone}; stop it first,"
        " or give this one another --state-dir (one platform per state dir)"
    )
