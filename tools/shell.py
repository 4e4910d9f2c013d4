"""Running commands and installing missing Debian packages, with a log line for each step (the image builds
in tools/ and the test harness in tests/cluster both use these)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def log(message: str) -> None:
    print(f"[fx] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(name: str) -> Iterator[None]:
    start = time.monotonic()
    log(f"{name} ...")
    yield
    log(f"{name}: {time.monotonic() - start:.1f} s")


def run(
    cmd: Sequence[str | Path], *, check: bool = True, quiet: bool = False, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command; `quiet` captures its output (shown only when it fails)."""
    argv = [str(c) for c in cmd]
    if quiet:
        kwargs.setdefault("capture_output", True)
    done = subprocess.run(argv, text=True, **kwargs)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        if quiet:
            sys.stderr.write((done.stdout or "") + (done.stderr or ""))
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return done


def ensure_apt_packages(packages: dict[str, str]) -> None:
    """apt-get install what is missing (policy-rc.d keeps Debian from starting etcd, containerd or prometheus).
    `packages`: probe (a command, or an absolute path) -> the package that provides it."""
    missing = sorted({pkg for probe, pkg in packages.items() if not _present(probe)})
    if not missing:
        return
    with step(f"apt-get install {' '.join(missing)}"):
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        policy = Path("/usr/sbin/policy-rc.d")
        added_policy = not policy.exists()
        if added_policy:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            run(["apt-get", "update", "-qq"], quiet=True, env=env)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], quiet=True, env=env)
        finally:
            if added_policy:
                policy.unlink()


def _present(probe: str) -> bool:
    return Path(probe).exists() if probe.startswith("/") else shutil.which(probe) is not None
