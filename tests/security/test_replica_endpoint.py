"""A replica names the socket it listens on, and runs the function's code: a function that says another
function's socket, or a local port, must not have the gateway send its callers (with its replica token) there."""

import httpx
import pytest

CLAIMS = {  # what the attacker's replica says it listens on, built from the socket it was given
    "another function's socket": '"unix:" + os.path.join(os.path.dirname(mine), "victim", "x.sock")',
    "a local port": '"127.0.0.1:4222"',
}


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_replica_claiming_a_socket_outside_its_directory_fails_its_init(platform, make_function, claim):
    victim = make_function("victim", body="return {'statusCode': 200, 'body': 'victim'}")
    assert platform.fx("deploy", cwd=victim).returncode == 0
    # the function's own code, at import, makes its replica report another endpoint than the one it binds
    lie = f"""import os
import fx_runtime.server as server
_listen = server.Server.listen
async def listen(self):
    endpoint = await _listen(self)
    mine = os.path.dirname(self.settings.listen_path)
    return {CLAIMS[claim]}
server.Server.listen = listen
"""
    attacker = make_function("attacker", body="return {'statusCode': 200, 'body': 'attacker'}", imports=lie)
    result = platform.fx("deploy", cwd=attacker)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Runtime.ListenError" in result.stderr and "not a socket in its function's directory" in result.stderr
    r = httpx.get(f"{platform.gateway_url}/function/attacker", timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "Runtime.ListenError"
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"
