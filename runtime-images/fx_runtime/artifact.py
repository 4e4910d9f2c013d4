"""Code zips: verified against their sha256 before anything in them is loaded, extracted once per digest.

The extracted tree is sealed: directories 0555, files 0444 (0555 when executable), no setuid, setgid or
sticky bit; made by root when fx runs as root, so no function can change it. A code directory is only
reused when it is still sealed; anything else (a tree from an older fx, or one someone made writable) is
extracted again from the verified zip.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import socket
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from .faults import Fault

INVALID_ARTIFACT = "Runtime.InvalidArtifact"
FETCH_TIMEOUT_S = 60.0
UNAVAILABLE_S = 20.0
# A new pod's first connections are refused, then dropped, until the cluster's NetworkPolicy engine admits it
# (kube-router on the test cluster: 30-800 ms after the container started, measured). A dropped SYN would hold a
# plain connect for the kernel's 1 s retransmission, so in its process's first seconds the runtime knocks (connects,
# closes) with a short timeout, often, and downloads once a knock is answered. A pool pod, long started, does not.
NEW_S, KNOCK_TIMEOUT_S, KNOCK_PAUSE_S = 2.0, 0.05, 0.02
_STARTED = time.monotonic()  # about when this process started: the runtime imports this module as it starts
MAX_ENTRIES = 20_000  # FX_MAX_ARTIFACT_ENTRIES
_SPECIAL = {stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket"}


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, artifact: str, unavailable_for: float = UNAVAILABLE_S) -> None:
    """Download the zip to `artifact` (atomically); it is verified by prepare() like any other zip.

    A server that is not there yet (refused, not answering a knock, 502-504) is tried again for `unavailable_for`
    seconds: a controller that has just started serves its artifacts a moment after it starts function pods, and
    a new pod may not reach it at first (NEW_S)."""
    parent = os.path.dirname(artifact) or "."
    os.makedirs(parent, exist_ok=True)
    deadline, pause = time.monotonic() + unavailable_for, 0.1
    while True:
        new = time.monotonic() - _STARTED < NEW_S
        try:
            if new:
                _knock(url)
            _download(url, artifact, parent)
            return
        except (urllib.error.URLError, OSError, ValueError) as e:
            if not _unavailable(e) or time.monotonic() + pause > deadline:
                raise Fault(INVALID_ARTIFACT, f"Cannot fetch artifact from {url}: {getattr(e, 'reason', e)}") from None
        if new:
            time.sleep(KNOCK_PAUSE_S)
            continue
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


class _Unanswered(OSError):
    """A knock not answered in KNOCK_TIMEOUT_S: its SYN dropped (or the server farther away than that)."""


def _knock(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=KNOCK_TIMEOUT_S).close()
    except TimeoutError:
        raise _Unanswered(f"no answer to a connection within {KNOCK_TIMEOUT_S * 1000:.0f} ms") from None


def _download(url: str, artifact: str, parent: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        os.replace(tmp, artifact)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unavailable(error: Exception) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (502, 503, 504)
    reason = getattr(error, "reason", error)
    return isinstance(reason, ConnectionRefusedError | ConnectionResetError | _Unanswered)


def entry_problem(zf: zipfile.ZipFile, max_entries: int) -> str | None:
    """Why this zip may not be code (too many entries, a special file, a link leaving the tree), or None."""
    entries = zf.infolist()
    if len(entries) > max_entries:
        return f"the artifact has {len(entries)} entries; the limit is {max_entries}"
    for info in entries:
        mode = info.external_attr >> 16
        kind = _SPECIAL.get(stat.S_IFMT(mode))
        if kind:
            return (
                f"zip entry {info.filename!r} is {kind}; only files, directories and links inside the code are allowed"
            )
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode(errors="replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(info.filename), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                return f"zip entry {info.filename!r} is a link to {target!r}, outside the code directory"
    return None


def sealed(code_dir: str) -> bool:
    """Was this tree made by prepare() and left as it made it (read-only, owned by us or root)?"""
    try:
        st = os.lstat(code_dir)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o222 and st.st_uid in (0, os.geteuid())


def prepare(artifact: str, expected_sha256: str | None, code_dir: str, url: str | None = None) -> None:
    """Make `code_dir` hold the zip's content, fetching the zip from `url` first when it is not on disk.

    A digest-named code_dir is only ever created by renaming a sealed extraction of a verified zip into
    place, so a sealed one is reused as is: replicas after the first skip both hashing and unzipping.
    """
    if sealed(code_dir):
        return
    if not expected_sha256:
        raise Fault(INVALID_ARTIFACT, f"FX_ARTIFACT_SHA256 is required with FX_ARTIFACT {artifact}")
    if url and not os.path.exists(artifact):
        fetch(url, artifact)
    try:
        actual = sha256_of(artifact)
    except OSError as e:
        raise Fault(INVALID_ARTIFACT, f"Cannot read artifact {artifact}: {e.strerror}") from None
    if actual != expected_sha256:
        raise Fault(INVALID_ARTIFACT, f"Artifact {artifact} has sha256 {actual}, expected {expected_sha256}")
    parent = os.path.dirname(code_dir)
    os.makedirs(parent, exist_ok=True)
    if os.path.lexists(code_dir):
        if sealed(code_dir):  # another replica of the digest placed it since the look above; replicas run from it
            return
        discard(code_dir, parent)  # not sealed: never trusted, extracted anew
    staging = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    try:
        _extract(artifact, staging)
        os.rename(staging, code_dir)
    except OSError:
        # Another replica of the same digest won the rename: its extraction is as good as ours.
        if not sealed(code_dir):
            raise
    except zipfile.BadZipFile as e:
        raise Fault(INVALID_ARTIFACT, f"Artifact {artifact} is not a valid zip: {e}") from None
    finally:
        if os.path.lexists(staging):
            _remove_tree(staging)


def _extract(artifact: str, target: str) -> None:
    limit = int(os.environ.get("FX_MAX_ARTIFACT_ENTRIES") or MAX_ENTRIES)
    with zipfile.ZipFile(artifact) as zf:
        problem = entry_problem(zf, limit)
        if problem:
            raise Fault(INVALID_ARTIFACT, f"Artifact {artifact}: {problem}")
        for info in zf.infolist():
            path = zf.extract(info, target)  # zipfile strips absolute paths and '..'
            if not info.is_dir():  # read-only; executable bits of bundled binaries kept; no setuid/setgid/sticky
                os.chmod(path, 0o555 if (info.external_attr >> 16) & 0o111 else 0o444)
    for root, dirs, _ in os.walk(target, topdown=False):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o555)
    os.chmod(target, 0o555)


def discard(code_dir: str, parent: str) -> None:
    """Move an untrusted tree out of the way (atomically), then delete it."""
    stale = tempfile.mkdtemp(prefix=".stale-", dir=parent)
    with contextlib.suppress(FileNotFoundError):  # another replica moved it first
        os.rename(code_dir, os.path.join(stale, "tree"))
    _remove_tree(stale)


def _remove_tree(path: str) -> None:
    """rmtree, also for a sealed tree that only its owner may open up."""
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    os.chmod(path, 0o755)
    shutil.rmtree(path, ignore_errors=True)
