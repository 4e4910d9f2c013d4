"""What a deleted function leaves goes: its code tree, its zip (disk and object store), its logs; a zip another
live function shares stays; and a controller killed halfway through leaves nothing once the next one swept."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest
import yaml
from nats.js.errors import NotFoundError

from tests.waiting import wait_for


def deploy_three(platform, tmp_path) -> dict[str, str]:
    """a and b share one zip, c has its own; each is called once (a code tree, a log); name -> digest."""
    for folder, names, text in (("ab", ["a", "b"], "shared"), ("c", ["c"], "own")):
        project = tmp_path / folder
        project.mkdir()
        (project / "handler.py").write_text(f"def handler(event, context):\n    print('{text}')\n    return 1\n")
        spec = {"functions": {name: {"handler": "handler.handler"} for name in names}}
        (project / "fx.yaml").write_text(yaml.safe_dump(spec))
        assert platform.fx("deploy", cwd=project).returncode == 0
    digests = {}
    for name in ("a", "b", "c"):
        assert httpx.post(f"{platform.gateway_url}/2015-03-31/functions/{name}/invocations", timeout=30).json() == 1
        info = httpx.get(f"{platform.controller_url}/system/functions/{name}", headers=auth(platform)).json()
        digests[name] = info["versions"][0]["digest"]
    assert digests["a"] == digests["b"] != digests["c"]
    return digests


def auth(platform) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform.token}"}


def code_tree(platform, digest: str):
    return platform.state_dir / "code" / digest.split(":", 1)[1]


def zip_on_disk(platform, digest: str):
    return platform.state_dir / "artifacts" / f"{digest.replace(':', '-', 1)}.zip"


async def in_object_store(platform, digest: str) -> bool:
    nc = await platform.nats()
    try:
        store = await nc.jetstream().object_store("fx_artifacts")
        try:
            await store.get_info(digest.replace(":", "-", 1))
        except NotFoundError:
            return False
        return True
    finally:
        await nc.close()


def left_of(platform, name: str, digest: str) -> list[str]:
    """What of function `name` (and its zip) is still on disk or in NATS."""
    logs = [p.name for p in (platform.state_dir / "logs").glob(f"{name}.log*")]
    return [
        *logs,
        *(["code tree"] if code_tree(platform, digest).exists() else []),
        *(["zip on disk"] if zip_on_disk(platform, digest).exists() else []),
        *(["zip in NATS"] if asyncio.run(in_object_store(platform, digest)) else []),
    ]


@pytest.fixture
def short_grace(monkeypatch):
    """The controller's --gc-grace and --gc-interval, from its environment: zips go at a sweep 2 s after their
    upload or release (not 0: fx deploy uploads, then deploys)."""
    monkeypatch.setenv("FX_GC_GRACE", "2")
    monkeypatch.setenv("FX_GC_INTERVAL", "0.5")


def test_delete_collects_code_zip_and_logs_but_keeps_a_zip_another_function_uses(short_grace, platform, tmp_path):
    digests = deploy_three(platform, tmp_path)
    wait_for(lambda: len(left_of(platform, "c", digests["c"])) == 4, 30, "c's log, code tree and zips")

    assert platform.fx("rm", "c").returncode == 0
    assert left_of(platform, "c", digests["c"]) in (["zip on disk", "zip in NATS"], [])  # its zips: at a sweep
    wait_for(lambda: left_of(platform, "c", digests["c"]) == [], 30, "c's zips collected by a sweep")

    assert platform.fx("rm", "a").returncode == 0
    assert left_of(platform, "b", digests["b"]) == ["b.log", "code tree", "zip on disk", "zip in NATS"]
    assert not (platform.state_dir / "logs" / "a.log").exists()
    assert httpx.post(f"{platform.gateway_url}/2015-03-31/functions/b/invocations", timeout=30).json() == 1


def test_a_deleted_function_s_zip_outlives_it_by_the_grace_so_a_deploy_of_it_again_needs_no_upload(platform, tmp_path):
    digests = deploy_three(platform, tmp_path)
    assert platform.fx("rm", "c").returncode == 0
    assert left_of(platform, "c", digests["c"]) == ["zip on disk", "zip in NATS"]  # --gc-grace is an hour
    head = httpx.head(f"{platform.controller_url}/system/artifacts/{digests['c']}", headers=auth(platform))
    assert head.status_code == 200
    assert platform.fx("deploy", cwd=tmp_path / "c").returncode == 0


def test_a_controller_killed_halfway_through_a_delete_leaves_nothing_after_its_restart(platform, tmp_path, monkeypatch):
    monkeypatch.setenv("FX_GC_GRACE", "0")  # the sweep at start is what collects
    digests = deploy_three(platform, tmp_path)
    wait_for(lambda: len(left_of(platform, "c", digests["c"])) == 4, 30, "c's log, code tree and zips")
    stale = platform.state_dir / "code" / ".stale-dead"  # a tree the controller was removing when it died
    (stale / "tree").mkdir(parents=True)
    (stale / "tree" / "handler.py").write_text("")

    # Killed right after the delete reached the store, before any collection: c is gone from NATS only.
    os.kill(platform._platform.pid("controller"), signal.SIGKILL)

    async def forget_c() -> None:
        nc = await platform.nats()
        try:
            await (await nc.jetstream().key_value("fx_functions")).delete("c")
        finally:
            await nc.close()

    asyncio.run(forget_c())
    platform.restart()

    wait_for(lambda: left_of(platform, "c", digests["c"]) == [], 30, "c's leftovers collected by the sweep")
    assert not stale.exists()
    assert left_of(platform, "a", digests["a"]) == ["a.log", "code tree", "zip on disk", "zip in NATS"]
    assert httpx.post(f"{platform.gateway_url}/2015-03-31/functions/a/invocations", timeout=30).json() == 1
