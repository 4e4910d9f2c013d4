"""The launcher with the real nats-server and small fake controller and gateway processes."""

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from fx import platform as fx_platform
from fx.nats_auth import Authority
from fx.platform import Platform, PlatformError, Restarts

from tests.nats_server import nats_server
from tests.processes import alive
from tests.waiting import wait_for

FAKE = textwrap.dedent(
    """
    import os
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    if "--controller" in args and os.path.exists(os.environ.get("FAKE_GATEWAY_CRASHES", "/nonexistent")):
        sys.exit(1)  # a gateway that crashes as it starts, while the file is there
    if args.get("--fail"):
        print("boom: " + args["--fail"], flush=True)
        sys.exit(3)
    health = "/system/health" if "--token-file" in args else "/healthz"
    print("fake up with", args, flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == health else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    host, port = args["--listen"].rsplit(":", 1)
    HTTPServer((host, int(port)), Handler).serve_forever()
    """
)


@pytest.fixture
def fakes(tmp_path, monkeypatch) -> Path:
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    monkeypatch.setattr(fx_platform, "_console_script", lambda name, module: [sys.executable, str(script)])
    return script


def test_start_runs_all_three_and_stop_ends_them(fakes, tmp_path):
    p = Platform(tmp_path / "state", ports="free")
    with p:
        pids = [r.proc.pid for r in p._running]
        assert [r.name for r in p._running] == ["nats", "controller", "gateway"]
        assert httpx.get(f"{p.gateway_url}/healthz", trust_env=False).status_code == 200
        assert httpx.get(f"{p.controller_url}/system/health", trust_env=False).status_code == 200
        with socket.create_connection(("127.0.0.1", int(p.nats_url.rsplit(":", 1)[1]))):
            pass
        assert stat.S_IMODE(p.token_file.stat().st_mode) == 0o600 and len(p.token) >= 32
        assert "--token-file" in (p.log_dir / "controller.log").read_text()
        assert p.exited() is None
    assert not any(alive(pid) for pid in pids)
    p.stop()  # idempotent


def test_the_token_survives_a_restart(fakes, tmp_path):
    p = Platform(tmp_path / "state", ports="free")
    with p:
        token = p.token
    with p:
        assert p.token == token


def test_a_component_that_fails_is_reported_with_its_log_and_the_rest_is_stopped(fakes, tmp_path, monkeypatch):
    real = fx_platform._console_script
    monkeypatch.setattr(
        fx_platform,
        "_console_script",
        lambda name, module: (
            [*real(name, module), "--fail", "no such flag"] if name == "fx-gateway" else real(name, module)
        ),
    )
    p = Platform(tmp_path / "state", ports="free")
    started = []
    spawn = p._spawn

    def spy(name, argv, ready):
        try:
            spawn(name, argv, ready)
        finally:
            started.extend(r.proc.pid for r in p._running if r.proc.pid not in started)

    monkeypatch.setattr(p, "_spawn", spy)
    with pytest.raises(PlatformError) as err:
        p.start()
    assert "gateway exited with code 3" in str(err.value) and "boom: no such flag" in str(err.value)
    assert len(started) == 3 and not any(alive(pid) for pid in started)


def test_a_busy_gateway_port_is_refused_before_anything_starts(fakes, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        p = Platform(tmp_path / "state", gateway_port=busy.getsockname()[1])
        with pytest.raises(PlatformError, match="in use"):
            p.start()
    assert not (tmp_path / "state" / "nats").exists()


LAUNCHER = textwrap.dedent(
    """
    import sys
    from fx import platform
    platform._console_script = lambda name, module: [sys.executable, {fake!r}]
    from fx.cli import main
    sys.exit(main(["up", "--state-dir", {state!r}, "--port", sys.argv[1]]))
    """
)


def start_fx_up(tmp_path: Path, fakes: Path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER.format(fake=str(fakes), state=str(tmp_path / "state")))
    (port,) = fx_platform._free_ports(1)
    env = {**os.environ, "FX_CONFIG": str(tmp_path / "fx-config.json")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def started() -> list[int] | None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if len(children) == 3 and (tmp_path / "fx-config.json").exists():
            return [int(c) for c in children]
        assert proc.poll() is None, proc.communicate()
        return None

    try:
        return proc, wait_for(started, 30, "fx up to start its three processes", interval=0.05)
    except AssertionError:
        proc.kill()
        raise


def test_ctrl_c_on_fx_up_stops_everything_cleanly(fakes, tmp_path):
    proc, children = start_fx_up(tmp_path, fakes)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not any(alive(pid) for pid in children)


def test_a_killed_launcher_leaves_no_orphans(fakes, tmp_path):
    proc, children = start_fx_up(tmp_path, fakes)
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in children), 10, "the launcher's children gone", interval=0.05)


def test_nats_runs_in_operator_mode_with_one_authority_and_a_user_per_component(fakes, tmp_path):
    p = Platform(tmp_path / "state", ports="free")
    with p:
        seed = (p.nats_auth_dir / "operator.nk").read_text()
        assert stat.S_IMODE(p.nats_auth_dir.stat().st_mode) == 0o700
        for who in ("controller", "gateway", "admin"):
            assert stat.S_IMODE((p.nats_auth_dir / f"{who}.creds").stat().st_mode) == 0o600
        assert f"--nats-creds {p.nats_auth_dir / 'controller.creds'}" in (p.log_dir / "controller.log").read_text()
        assert f"--nats-auth-dir {p.nats_auth_dir}" in (p.log_dir / "controller.log").read_text()
        assert f"--nats-creds {p.nats_auth_dir / 'gateway.creds'}" in (p.log_dir / "gateway.log").read_text()

        async def connect(creds: Path | None) -> None:
            nc = await nats.connect(
                p.nats_url, user_credentials=str(creds) if creds else None, allow_reconnect=False, connect_timeout=2
            )
            await nc.jetstream().account_info()  # JetStream is on for the admin's (the fx) account
            await nc.close()

        asyncio.run(connect(p.admin_creds))
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
            asyncio.run(connect(None))
    with p:
        assert (p.nats_auth_dir / "operator.nk").read_text() == seed  # the authority is made once


def test_a_global_account_jetstream_store_is_adopted_by_the_fx_account(tmp_path):
    """A state dir from before operator mode: its streams, written by an anonymous client, stay readable."""
    store = tmp_path / "nats"

    async def write() -> None:
        nc = await nats.connect(url)
        await (await nc.jetstream().create_key_value(bucket="fx_functions")).put("hello", b"v1")
        await nc.close()

    with nats_server(store) as url:
        asyncio.run(write())
    assert (store / "jetstream" / "$G").is_dir()

    authority = Authority.create()
    fx_platform.adopt_global_jetstream(store, authority.account_public)
    fx_platform.adopt_global_jetstream(store, authority.account_public)  # once only
    (tmp_path / "server.conf").write_text(authority.server_config())
    (tmp_path / "admin.creds").write_text(authority.signer.mint("admin"))

    async def read() -> bytes:
        nc = await nats.connect(url, user_credentials=str(tmp_path / "admin.creds"))
        value = (await (await nc.jetstream().key_value("fx_functions")).get("hello")).value
        await nc.close()
        return value

    with nats_server(store, tmp_path / "server.conf") as url:
        assert asyncio.run(read()) == b"v1"
    assert not (store / "jetstream" / "$G").exists()


def test_a_component_that_crashes_is_restarted_with_a_growing_delay_and_stop_still_ends_everything(
    fakes, tmp_path, monkeypatch
):
    crashes = tmp_path / "crashes"
    monkeypatch.setenv("FAKE_GATEWAY_CRASHES", str(crashes))
    heard: list[str] = []
    p = Platform(tmp_path / "state", ports="free", restarts=Restarts(0.05, 0.2, 60), on_restart=heard.append)
    with p:
        crashes.touch()  # from now on it crashes as it starts: a crash loop
        os.kill(p.pid("gateway"), signal.SIGKILL)
        wait_for(lambda: len(heard) >= 4, 10, "four restarts")
        crashes.unlink()
        wait_for(lambda: fx_platform._http_ok(f"{p.gateway_url}/healthz"), 10, "the gateway")
        pids = [p.pid(name) for name in ("nats", "controller", "gateway")]
    assert heard[:4] == [
        "gateway exited (signal 9); restarted in 0.05 s (restart 1)",
        "gateway exited (code 1); restarted in 0.1 s (restart 2)",
        "gateway exited (code 1); restarted in 0.2 s (restart 3)",
        "gateway exited (code 1); restarted in 0.2 s (restart 4)",  # at the limit
    ]
    assert "--- fx: gateway exited (signal 9); restarted in 0.05 s (restart 1)" in p.log_tail("gateway", 100)
    assert p.restart_count("controller") == 0 and not any(alive(pid) for pid in pids)


def test_a_component_that_ran_long_enough_is_restarted_after_the_first_delay_again(fakes, tmp_path):
    heard: list[str] = []
    p = Platform(tmp_path / "state", ports="free", restarts=Restarts(0.05, 10, 0.5), on_restart=heard.append)
    with p:
        for n in range(1, 3):
            started = p.pid("gateway")
            wait_for(lambda: _up_for(p, "gateway") >= 0.5, 10, "the gateway to be stable")
            os.kill(started, signal.SIGKILL)
            wait_for(lambda: p.restart_count("gateway") == n, 10, "the restart")  # noqa: B023
    assert heard == [
        "gateway exited (signal 9); restarted in 0.05 s (restart 1)",
        "gateway exited (signal 9); restarted in 0.05 s (restart 2)",
    ]


def _up_for(p: Platform, name: str) -> float:
    started = next(r.started_at for r in p._running if r.name == name)
    return time.monotonic() - started
