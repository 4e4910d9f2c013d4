"""Cold starts from a function's template: its init runs once, each replica is a fork of it, and after a deploy
only the new version's code ever answers."""

import httpx
from fx.client import Client

from tests.integration.helpers import metric
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
RESULTS = ("ok", "notfound", "failed", "backoff")  # fx_controller_activations_total's


def imports(version: str) -> str:
    return IMPORTS + f"VERSION = {version!r}\n"


def replicas(platform, name: str, version: int) -> tuple[int, int]:
    """The version's replicas now (any state) and how many have ever been ready, as the controller counts them."""
    auth = {"Authorization": f"Bearer {platform.token}"}
    text = httpx.get(f"{platform.controller_url}/metrics", headers=auth, timeout=10).text
    labels = {"function": name, "version": str(version)}
    now = sum(metric(text, "fx_controller_replicas", state=s, **labels) for s in ("starting", "ready", "draining"))
    return int(now), int(metric(text, "fx_controller_replica_start_seconds_count", **labels))


def cold_call(platform, name: str, version: int) -> dict:
    """Call `version` of `name` once it has no replica left (a replica of an older version may linger), and wait
    until the controller has counted the replica that answered: a standby the gateway sent the call to is known to
    the controller only once the zygote has told it, and until then it is still the standby of the route table, so
    a call right after would reach the same replica (a draining one, too, answers what it was sent)."""

    def at_zero() -> list[int] | None:  # how many have ever been ready, once none is left
        now, ever = replicas(platform, name, version)
        return None if now else [ever]

    [before] = wait_for(at_zero, 30, f"{name} version {version} at zero")
    answer = httpx.get(f"{platform.gateway_url}/function/{name}", timeout=30).json()
    wait_for(lambda: replicas(platform, name, version)[1] > before, 30, f"{name} version {version}'s replica counted")
    return answer


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


def test_a_cold_start_at_the_versions_standby_asks_the_controller_nothing_and_is_counted(platform, make_function):
    """With a template, the version's next replica (a spare) is made before it is needed and named in the route
    table: the gateway sends a cold start straight to it. No activation is asked for; `fx describe` counts the
    replica it became; it goes back to zero as any; and the next cold start finds the next spare."""
    project = make_function("snap", body=BODY, imports=imports("v1"), scale={"idle_timeout": 2}, config=SNAP)
    assert platform.fx("deploy", cwd=project).returncode == 0
    first = cold_call(platform, "snap", 1)
    with Client(platform.gateway_url, platform.token) as fx:
        assert fx.describe("snap").versions[0].replicas_ready == 1
    second = cold_call(platform, "snap", 1)
    assert first["init"] == second["init"] and first["restores"] != second["restores"]
    auth = {"Authorization": f"Bearer {platform.token}"}
    controller = httpx.get(f"{platform.controller_url}/metrics", headers=auth, timeout=10).text
    assert sum(metric(controller, "fx_controller_activations_total", function="snap", result=r) for r in RESULTS) == 0
    assert platform.fx("logs", "snap").stdout.count("Init Duration") == 2  # each cold start's first invocation
