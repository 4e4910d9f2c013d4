"""Versions, aliases, traffic splits, promotes and rollbacks on the real platform, under load.

Each version answers with its own number, so every answer says which version served it.
"""

import asyncio
import json
import math
import re
import time
from collections import Counter

import httpx

from tests.integration.helpers import SteadyLoad, metric
from tests.waiting import wait_for

SETTLE_S = 0.3  # a route table reaches the gateway in about a millisecond; this is a wide margin
BODY = "import os; return {'statusCode': 200, 'body': os.environ['AWS_LAMBDA_FUNCTION_VERSION']}"
IMPORTS = "# {color}"  # a different comment makes different code, so a deploy makes a new version


def deploy(platform, make_function, name: str, color: str, *flags: str, **config) -> None:
    project = make_function(name, body=BODY, imports=IMPORTS.format(color=color), **config)
    result = platform.fx("deploy", *flags, cwd=project)
    assert result.returncode == 0, result.stderr


def describe(platform, name: str) -> dict:
    return json.loads(platform.fx("describe", name, "--output", "json").stdout)


# Change as replicas come and go, and as the autoscaler decides.
LIVE = ("replicas_ready", "replicas_starting", "requests", "errors", "replicas_desired", "panic")


def settings(platform, name: str) -> dict:
    """What a traffic or alias command may change: describe without the live counts and status."""
    info = describe(platform, name)
    info.pop("status")
    info["versions"] = [{k: v for k, v in version.items() if k not in LIVE} for version in info["versions"]]
    return info


def ready(platform, name: str, version: int) -> int:
    return next(v for v in describe(platform, name)["versions"] if v["version"] == version)["replicas_ready"]


def cold_starts(platform, name: str, version: int) -> float:
    text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    return metric(text, "fx_gateway_cold_starts_total", function=name, version=str(version))


def assert_split(bodies: list[str], weights: dict[str, int]) -> None:
    """Each version got its share within 5 binomial standard deviations, and no other version answered."""
    n, counts = len(bodies), Counter(bodies)
    assert set(counts) <= {v for v, w in weights.items() if w}, counts
    for version, percent in weights.items():
        p = percent / 100
        assert abs(counts[version] - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9, (counts, weights)


def test_no_traffic_version_is_warm_and_reachable_only_when_pinned(platform, make_function):
    deploy(platform, make_function, "pinned", "blue")
    deploy(platform, make_function, "pinned", "green", "--no-traffic")
    base = platform.gateway_url + "/function/pinned"

    # Warm: its replica is up before anyone calls it.
    wait_for(lambda: ready(platform, "pinned", 2), 10, "the no-traffic version's warm replica")
    assert {httpx.get(base, timeout=30).text for _ in range(50)} == {"1"}
    assert httpx.get(f"{base}@2", timeout=30).text == "2"
    assert platform.fx("alias", "pinned", "green", "2").returncode == 0
    assert httpx.get(f"{base}@green/x", timeout=30).text == "2"
    assert httpx.get(base, headers={"X-Fx-Version": "green"}, timeout=30).text == "2"
    assert cold_starts(platform, "pinned", 2) == 0

    versions = json.loads(platform.fx("versions", "pinned", "--output", "json").stdout)
    assert [(v["version"], v["traffic"], v["aliases"]) for v in versions] == [(1, 100, []), (2, 0, ["green"])]
    assert versions[1]["warm_until"] is not None
    table = platform.fx("versions", "pinned").stdout
    assert "green" in table and "0%" in table

    # A deleted alias or a version that does not exist: a clear 404 from the gateway and the admin API.
    assert platform.fx("alias", "pinned", "green", "--delete").returncode == 0
    gone = httpx.get(f"{base}@green", timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "VersionNotFound"
    admin = httpx.get(
        f"{platform.gateway_url}/system/functions/pinned/versions/green",
        headers={"Authorization": f"Bearer {platform.token}"},
        timeout=10,
    )
    assert admin.status_code == 404 and "green" in admin.json()["error"]["message"]


def test_shift_promote_and_rollback_under_load_answer_every_request_from_the_chosen_version(platform, make_function):
    # Generous per-replica concurrency, so one replica per version serves the whole load and every
    # cold start counted is a real one. idle_timeout 2 s: without keep-warm, version 1 would be gone
    # long before the rollback.
    scale = {"concurrency": 32, "idle_timeout": 2}
    deploy(platform, make_function, "shifty", "blue", scale=scale)
    deploy(platform, make_function, "shifty", "green", "--no-traffic", scale=scale)
    wait_for(lambda: ready(platform, "shifty", 2), 10, "version 2's warm replica")
    url = platform.gateway_url + "/function/shifty"
    assert httpx.get(url, timeout=30).text == "1"

    phases = []  # (when the change took effect, when the next one began, the weights in between)

    def change(*args: str, weights: dict[str, int], hold: float = 2.0) -> None:
        begun = time.monotonic()
        if phases:
            phases[-1][1] = begun
        result = platform.fx(*args)
        assert result.returncode == 0, result.stderr
        phases.append([time.monotonic(), 0.0, weights])
        time.sleep(hold)

    with SteadyLoad(url, callers=8, max_requests=50_000) as load:
        phases.append([time.monotonic(), 0.0, {"1": 100}])
        time.sleep(1.0)
        change("traffic", "shifty", "1=50", "2=50", weights={"1": 50, "2": 50})
        change("promote", "shifty", "2", weights={"2": 100}, hold=3.5)  # > idle_timeout + a reconcile pass
        cold_before = cold_starts(platform, "shifty", 1)
        change("rollback", "shifty", weights={"1": 50, "2": 50})
        change("rollback", "shifty", weights={"1": 100})
        phases[-1][1] = time.monotonic()

    statuses = Counter(a[2] for a in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    assert len(load.answers) >= 1000
    print(f"\n{len(load.answers)} requests, all 200; per phase:")
    for start, end, weights in phases:
        window = load.between(start + SETTLE_S, end)
        print(f"  weights {weights}: {dict(Counter(a[3] for a in window))}")
        assert len(window) >= 100, (weights, len(window))
        assert_split([a[3] for a in window], weights)
    assert cold_starts(platform, "shifty", 1) == cold_before, "the rollback waited for a cold start"


def test_sticky_header_keeps_each_user_on_one_version(platform, make_function):
    deploy(platform, make_function, "cohort", "blue", scale={"concurrency": 32})
    deploy(platform, make_function, "cohort", "green", scale={"concurrency": 32})
    result = platform.fx("traffic", "cohort", "1=50", "2=50", "--sticky", "header:X-User-Id")
    assert result.returncode == 0, result.stderr
    assert describe(platform, "cohort")["sticky"] == "header:x-user-id"
    url = platform.gateway_url + "/function/cohort"
    users = [f"user-{i}" for i in range(40)]

    async def calls() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {u: set() for u in users}
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(user: str) -> None:
                async with sem:
                    r = await client.get(url, headers={"X-User-Id": user})
                assert r.status_code == 200, r.text
                seen[user].add(r.text)

            await asyncio.gather(*(one(u) for u in users for _ in range(50)))
        return seen

    seen = asyncio.run(calls())
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert_split([next(iter(v)) for v in seen.values()], {"1": 50, "2": 50})


def test_bad_traffic_input_is_refused_clearly_and_changes_nothing(platform, make_function):
    deploy(platform, make_function, "strict", "blue")
    deploy(platform, make_function, "strict", "green")
    before = settings(platform, "strict")
    # Only what the platform decides: the CLI's own refusals (sums, shapes) are tests/unit/sdk/test_traffic_cli.py's.
    for args, exit_code, words in [
        (("traffic", "strict", "1=50", "9=50"), 2, "version 9"),
        (("alias", "strict", "live", "7"), 2, "version 7"),
        (("promote", "strict", "5"), 2, "version 5"),
        (("alias", "strict", "nope", "--delete"), 2, "no alias 'nope'"),
    ]:
        result = platform.fx(*args)
        assert result.returncode == exit_code, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)

    headers = {"Authorization": f"Bearer {platform.token}"}
    api = f"{platform.gateway_url}/system/functions/strict"
    r = httpx.put(f"{api}/traffic", json={"traffic": {"1": 70, "2": 20}}, headers=headers, timeout=10)
    assert r.status_code == 400 and "sum to 100" in r.json()["error"]["message"]
    r = httpx.put(f"{api}/traffic", json={"traffic": {"1": 50, "3": 50}}, headers=headers, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VersionNotFound"
    r = httpx.put(f"{api}/aliases/$LATEST", json={"version": 1}, headers=headers, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidAlias"
    assert settings(platform, "strict") == before


def test_stepwise_promote_rolls_back_by_itself_when_the_new_version_fails(platform, make_function):
    deploy(platform, make_function, "canary", "blue", scale={"concurrency": 32})
    failing = "return {'statusCode': 500, 'body': 'broken'}"
    project = make_function("canary", body=failing, scale={"concurrency": 32})
    assert platform.fx("deploy", "--no-traffic", cwd=project).returncode == 0
    url = platform.gateway_url + "/function/canary"

    with SteadyLoad(url, callers=4, max_seconds=30) as load:
        time.sleep(0.5)
        args = ["--step", "20", "--interval", "1s", "--max-error-rate", "0.1", "--min-requests", "5"]
        assert platform.fx("promote", "canary", "2", *args).returncode == 0
        fn = wait_for(
            lambda: (d := describe(platform, "canary"))["rollout"] is None and d, 15, "the automatic rollback"
        )
        rolled_back = time.monotonic()
        time.sleep(1.0)

    assert fn["traffic"] == {"1": 100}
    assert "rolled back at 20 %" in fn["last_rollout"], fn["last_rollout"]
    after = load.between(rolled_back + SETTLE_S, time.monotonic())
    assert after and {a[3] for a in after} == {"1"}


def test_a_rollout_step_is_judged_on_every_request_of_its_window(platform, make_function):
    """The gateways report their counts once a second: the step waits for reports that cover it, so a version
    failing every request goes back at its first step, judged on at least every answer given before the step's end."""
    deploy(platform, make_function, "fresh", "blue", scale={"concurrency": 32})
    project = make_function("fresh", body="return {'statusCode': 500, 'body': 'broken'}", scale={"concurrency": 32})
    assert platform.fx("deploy", "--no-traffic", cwd=project).returncode == 0
    interval = 2.0

    with SteadyLoad(platform.gateway_url + "/function/fresh", callers=4, max_seconds=30) as load:
        time.sleep(0.5)
        # Through the API rather than the CLI, whose start-up would blur when the rollout began.
        spec = {"version": 2, "step": 20, "interval": interval, "max_error_rate": 0.05, "min_requests": 5}
        promoted = time.monotonic()
        headers = {"Authorization": f"Bearer {platform.token}"}
        url = f"{platform.gateway_url}/system/functions/fresh/promote"
        assert httpx.post(url, json=spec, headers=headers, timeout=10).status_code == 200
        fn = wait_for(lambda: (d := describe(platform, "fresh"))["rollout"] is None and d, 15, "the rollback")

    assert fn["traffic"] == {"1": 100}
    assert "rolled back at 20 %" in fn["last_rollout"], fn["last_rollout"]
    judged = int(re.search(r"\((\d+) of (\d+) requests\)", fn["last_rollout"])[2])
    failed_in_step = [a for a in load.answers if a[2] == 500 and a[1] <= promoted + interval]
    assert failed_in_step and judged >= len(failed_in_step), (judged, len(failed_in_step))
