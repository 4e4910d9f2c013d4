"""Upgrading a state dir from before NATS ran in operator mode: its functions are still there and answer."""

from __future__ import annotations

import shutil

import httpx

from tests.integration.conftest import RunningPlatform


def test_a_function_deployed_before_nats_auth_still_answers_after_it(platform: RunningPlatform, make_function):
    project = make_function("hello", "return {'statusCode': 200, 'body': 'hello from before'}")
    assert platform.fx("deploy", cwd=project).returncode == 0, "deploy"
    platform.stop()
    # Make the state dir what fx wrote before: JetStream's data under the global account, no NATS authority.
    jetstream = platform.state_dir / "nats" / "jetstream"
    [account] = [d for d in jetstream.iterdir() if d.name.startswith("A")]
    account.rename(jetstream / "$G")
    shutil.rmtree(platform.state_dir / "nats-auth")

    platform.restart()
    r = httpx.get(f"{platform.gateway_url}/function/hello", timeout=30)
    assert (r.status_code, r.text) == (200, "hello from before")
    assert not (jetstream / "$G").exists()
    assert "hello" in platform.fx("ls").stdout
