"""Run a command (the pytest tiers) while the harness's binaries and images build beside it, at idle priority.

`make test` runs the unit, integration, security and observability tiers, then the Kubernetes tier, whose
first run on a machine builds Kubernetes from source (~10-15 min of two cores) and the images (~3-5 min). Those
tiers mostly wait on sockets and subprocesses, so the build fits in their idle time: it runs as SCHED_IDLE (the
kernel gives it a core only when nothing else wants one), so it cannot slow a test down. This command returns
only when the build has ended, so the Kubernetes tier then finds everything built (the binaries' build also
takes a lock, for a `tests.cluster.up` started by hand meanwhile).

    python -m tests.cluster.prebuild CMD [ARG...]     exits with CMD's status
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from tests.cluster import build, images, layout
from tests.cluster.shell import ensure_apt_packages, log


def _harness_will_run() -> bool:
    """What `make e2e-tier` decides: the harness (Linux, root), not a cluster named by FX_E2E_KUBECONFIG."""
    return sys.platform == "linux" and os.geteuid() == 0 and not os.environ.get("FX_E2E_KUBECONFIG")


def _idle() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _start_build() -> subprocess.Popen[bytes]:
    # apt first, in the foreground: dpkg has one lock, and pytest installs its own Debian tools as it starts.
    ensure_apt_packages()
    layout.CACHE.mkdir(parents=True, exist_ok=True)
    output = layout.CACHE / "prebuild.log"
    log(f"building the harness's binaries and images at idle priority while the tests run (log: {output})")
    argv = [sys.executable, "-m", "tests.cluster.prebuild", "--build"]
    if shutil.which("ionice"):  # the disk too: idle class, served when no test reads or writes
        argv = ["ionice", "-c", "3", *argv]
    with output.open("wb") as sink:
        return subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_idle,
            start_new_session=True,
        )


def _build() -> None:
    """What tests.cluster.up and the e2e tier need: the binaries, fx's images and the e2e own-image, pause, CoreDNS."""
    build.main()
    images.own_image()
    images.all_archives()


def main(argv: list[str]) -> int:
    if not argv:
        sys.exit(__doc__)
    if argv == ["--build"]:
        _build()
        return 0
    build = _start_build() if _harness_will_run() else None
    began = time.monotonic()
    status = 1
    try:
        status = subprocess.call(argv)
    finally:
        if build is not None:
            if status != 0 and build.poll() is None:
                os.killpg(build.pid, signal.SIGTERM)  # the tests failed: make stops here, so must the build
            elif build.poll() is None:
                log("the tests are done; waiting for the harness's build")
            code = build.wait()
            # A failed build is not this command's failure: tests.cluster.up builds again and reports it.
            log(f"background build ended ({code}) {time.monotonic() - began:.0f} s after the tests started")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
