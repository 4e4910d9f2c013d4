"""Cold starts from a function's template: its init runs once, each replica is a fork of it, and after a deploy
only the new version's code ever answers."""

import httpx
from fx.client import Client

from tests.waiting import wait_for

IMPORTS = """\
import random, uuid
from snapshot_restore_py import register_after_restore

INIT = uuid.uuid4().hex  # once per init (pids say nothing: in the sandbox each template is PID 1 of its own)
RESTORES = []
register_after_restore(lambda: RESTORES.append(uuid.uuid4().hex))
"""


BODY = (
    "return {'statusCode': 200, 'body': __import__('json').dumps({'version': VERSION, 'init': INIT, "
    "'restores': RESTORES, 'random': random.random()})}"
)


SNAP = {"snap_start": True}


def imports(version: str) -> str:
    return IMPORTS + f"VERSION = {version!r}\n"


def cold_call(platform, name: str, version: int) -> dict:
    """Call `version` of `name` once it has no replica left (a replica of an older version may linger)."""

    def at_zero() -> bool:
        with Client(platform.gateway_url, platform.token) as fx:
            found = [v for v in fx.describe(name).versions if v.version == version]
            return not (found[0].replicas_ready + found[0].replicas_starting)

    wait_for(at_zero, 30, f"{name} version {version} at zero")
    return httpx.get(f"{platform.gateway_url}/function/{name}", timeout=30).json()


def test_cold_starts_fork_the_template_and_a_deploy_brings_a_new_one(platform, make_function):
    project = make_function("snap", body=BODY, imports=imports("v1"), scale={"idle_timeout": 2}, config=SNAP)
    assert platform.fx("deploy", cwd=project).returncode == 0
    first, second = cold_call(platform, "snap", 1), cold_call(platform, "snap", 1)
    # two replicas, one init (the template's): each ran the after-restore hook once, in itself
    assert first["init"] == second["init"]
    assert len(first["restores"]) == len(second["restores"]) == 1 and first["restores"] != second["restores"]
    assert first["random"] != second["random"]

    make_function("snap", body=BODY, imports=imports("v2"), scale={"idle_timeout": 2}, config=SNAP)
    assert platform.fx("deploy", cwd=project).returncode == 0
    third, fourth = cold_call(platform, "snap", 2), cold_call(platform, "snap", 2)
    assert third["version"] == fourth["version"] == "v2"  # never the old template's code
    assert third["init"] == fourth["init"] != first["init"]
    logs = platform.fx("logs", "snap").stdout
    assert logs.count("INIT_START") >= 2 and "REPORT RequestId" in logs
