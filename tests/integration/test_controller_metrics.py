"""`fx up --controller-metrics HOST:PORT`: the controller's /metrics at a fixed address without the token, for a
Prometheus (its admin port changes at each start); bad values refused before anything starts."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.loopback import free_port
from tests.waiting import wait_for

FX = str(Path(sys.executable).with_name("fx"))


def _up(tmp_path: Path, *flags: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "FX_CONFIG": str(tmp_path / "config.json")}
    argv = [FX, "up", "--state-dir", str(tmp_path / "state"), "--port", str(free_port()), *flags]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, text=True, **kwargs)


def test_the_controllers_metrics_answer_at_the_address_given_without_a_token(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    out = tmp_path / "up.log"
    up = _up(tmp_path, "--controller-metrics", listen, stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "gateway on" in out.read_text() or up.poll() is not None, 90, "fx up to start")
        scraped = httpx.get(f"http://{listen}/metrics", timeout=10)
        assert scraped.status_code == 200, scraped.text
        families = {family.name for family in text_string_to_metric_families(scraped.text)}
        assert {"fx_controller_replicas", "fx_controller_activations"} <= families
        assert httpx.get(f"http://{listen}/system/functions", timeout=10).status_code == 404  # metrics alone
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0, out.read_text()
    assert "Traceback" not in out.read_text()


def test_a_bad_or_taken_address_is_refused_before_anything_starts(tmp_path: Path) -> None:
    up = _up(tmp_path, "--controller-metrics", "9091", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = up.communicate(timeout=60)
    assert up.returncode == 2 and "--controller-metrics '9091' is not HOST:PORT" in stderr
    assert not (tmp_path / "state").exists()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = _up(tmp_path, "--controller-metrics", f"127.0.0.1:{port}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, stderr = up.communicate(timeout=60)
    assert up.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in stderr, stderr
    assert "Traceback" not in stderr
