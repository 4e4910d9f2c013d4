"""Run a command (the pytest tiers) while the harness's binaries build beside it, at idle priority.

`make test` runs the unit, integration, security and observability tiers, then the Kubernetes tier, whose
first run on a machine builds Kubernetes from source (~10-15 min of two cores). Those tiers mostly wait on
sockets and subprocesses, so the build fits in their idle time: it runs as SCHED_IDLE (the kernel gives it a
core only when nothing else wants one), so it cannot slow a test down. `python -m tests.cluster.build` takes
the build lock, so the Kubernetes tier's own `tests.cluster.up` waits for it and then finds everything built.

    python -m tests.cluster.prebuild CMD [ARG...]     exits with CMD's status
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.cluster import layout
from tests.cluster.shell import ensure_apt_packages, log


def _harness_will_run() -> bool:
    """What `make e2e-tier` decides: the harness (Linux, root), not a cluster named by FX_E2E_KUBECONFIG."""
    return sys.platform == "linux" and os.geteuid() == 0 and not os.environ.get("FX_E2E_KUBECONFIG")


def _idle() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _start_build() -> subprocess.Popen[bytes]:
    # apt first, in the foreground: dpkg has one lock, and the observability tier installs Prometheus.
    ensure_apt_packages()
    layout.CACHE.mkdir(parents=True, exist_ok=True)
    output = layout.CACHE / "prebuild.log"
    log(f"building the harness's binaries at idle priority while the tests run (log: {output})")
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.build"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_idle,
            start_new_session=True,
        )


def main(argv: list[str]) -> int:
    if not argv:
        sys.exit(__doc__)
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
