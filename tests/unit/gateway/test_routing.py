"""Version choice (weights, pins, aliases), replica choice and the per-replica concurrency limit."""

import asyncio
from collections import Counter

from fx.protocol import ActivationReply

from tests.unit.gateway.conftest import FakeActivator, table


async def test_traffic_weights_are_honoured(gateway):
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [], "2": [], "3": []}, traffic={"1": 70, "2": 30, "3": 0}))
    routes = gw.gateway.book.functions["hello"]
    picks = Counter(routes.pick().version for _ in range(20000))
    assert set(picks) == {"1", "2"}  # 0 % and absent versions get nothing unpinned
    assert 0.67 < picks["1"] / 20000 < 0.73


async def test_sticky_cohorts_keep_each_user_on_one_version_and_spread_users_by_weight(gateway):
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [], "2": []}, traffic={"1": 80, "2": 20}, sticky="header:X-User-Id"))
    routes = gw.gateway.book.functions["hello"]

    def version_of(user: str, header: bytes = b"x-user-id") -> str:
        return routes.pick("", {header: user.encode()}).version

    users = [f"user-{i}" for i in range(5000)]
    first = {u: version_of(u) for u in users}
    assert all(version_of(u) == first[u] for u in users[:200] for _ in range(5))
    assert 0.17 < Counter(first.values())["2"] / len(users) < 0.23
    # A user without the header is not pinned: both versions keep coming up.
    assert {routes.pick("", {}).version for _ in range(200)} == {"1", "2"}

    # The canary grows to 50 %: every user it had stays on it.
    gw.gateway.book.apply(
        table(revision=2, versions={"1": [], "2": []}, traffic={"1": 50, "2": 50}, sticky="header:x-user-id")
    )
    assert all(version_of(u) == "2" for u in users if first[u] == "2")

    gw.gateway.book.apply(
        table(revision=3, versions={"1": [], "2": []}, traffic={"1": 50, "2": 50}, sticky="cookie:uid")
    )
    cookie = {b"cookie": b"theme=dark; uid=user-7; lang=en"}
    assert {routes.pick("", cookie).version for _ in range(20)} == {routes.pick("", {b"cookie": b"uid=user-7"}).version}


async def test_pins_by_number_alias_header_and_latest(gateway, replicas):
    one, two = await replicas("one"), await replicas("two")
    gw = await gateway()
    gw.gateway.book.apply(
        table(versions={"1": [one.endpoint], "2": [two.endpoint]}, traffic={"1": 100}, aliases={"canary": "2"})
    )
    assert (await gw.client.get("/function/hello")).json()["name"] == "one"
    assert (await gw.client.get("/function/hello@2")).json()["name"] == "two"
    assert (await gw.client.get("/function/hello@canary/x")).json()["path"] == "/_fx/http/x"
    assert (await gw.client.get("/function/hello", headers={"X-Fx-Version": "canary"})).json()["name"] == "two"
    invoke = "/2015-03-31/functions/hello/invocations"
    assert (await gw.client.post(invoke + "?Qualifier=canary")).headers["X-Amz-Executed-Version"] == "2"
    assert (await gw.client.post("/2015-03-31/functions/hello%3A2/invocations")).json()["name"] == "two"
    assert (await gw.client.post(invoke + "?Qualifier=$LATEST")).json()["name"] == "two"


async def test_route_table_updates_apply_and_older_revisions_are_dropped(gateway, replicas):
    one, two = await replicas("one"), await replicas("two")
    gw = await gateway()
    gw.gateway.book.apply(table(revision=5, versions={"1": [one.endpoint]}))
    gw.gateway.book.apply(table(revision=6, versions={"1": [one.endpoint], "2": [two.endpoint]}, traffic={"2": 100}))
    assert (await gw.client.get("/function/hello")).json()["name"] == "two"
    gw.gateway.book.apply(table(revision=4, versions={"1": [one.endpoint]}))
    assert (await gw.client.get("/function/hello")).json()["name"] == "two"
    gw.gateway.book.remove("hello")
    assert (await gw.client.get("/function/hello")).status_code == 404


async def test_least_outstanding_replica_is_chosen_within_the_concurrency_limit(gateway, replicas):
    a, b = await replicas("a"), await replicas("b")
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [a.endpoint, b.endpoint]}, concurrency=2))
    answers = await asyncio.gather(*(gw.client.get("/function/hello/sleep/0.1") for _ in range(12)))
    assert [r.status_code for r in answers] == [200] * 12
    assert a.max_in_flight == b.max_in_flight == 2  # both used, neither above its limit
    assert a.requests == b.requests == 6


async def test_requests_beyond_every_replicas_limit_are_held_fifo_then_served(gateway, replicas):
    only = await replicas()
    activator = FakeActivator()
    gw = await gateway(activator)
    gw.gateway.book.apply(table(versions={"1": [only.endpoint]}, concurrency=1))
    answers = await asyncio.gather(*(gw.client.get(f"/function/hello/sleep/0.02?n={i}") for i in range(10)))
    assert [r.status_code for r in answers] == [200] * 10
    assert only.max_in_flight == 1
    assert activator.requests == []  # busy is not "at zero": no activation


async def test_unlimited_concurrency_sends_everything_at_once(gateway, replicas):
    only = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [only.endpoint]}, concurrency=0))
    await asyncio.gather(*(gw.client.get("/function/hello/sleep/0.1") for _ in range(10)))
    assert only.max_in_flight == 10


async def test_a_full_hold_queue_answers_503_at_once(gateway, replicas):
    only = await replicas()
    gw = await gateway(hold_queue=2)
    gw.gateway.book.apply(table(versions={"1": [only.endpoint]}, concurrency=1))
    answers = await asyncio.gather(*(gw.client.get("/function/hello/sleep/0.2") for _ in range(5)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 200, 503, 503]
    full = next(r for r in answers if r.status_code == 503)
    assert full.json()["error"]["code"] == "QueueFull" and full.json()["error"]["function"] == "hello"


async def test_the_route_tables_hold_queue_overrides_the_gateways(gateway, replicas):
    only = await replicas()
    gw = await gateway(hold_queue=100)
    gw.gateway.book.apply(table(versions={"1": [only.endpoint]}, hold_queue=0))
    answers = await asyncio.gather(*(gw.client.get("/function/hello/sleep/0.2") for _ in range(3)))
    assert sorted(r.status_code for r in answers) == [200, 503, 503]


async def test_activation_reply_endpoints_are_used_before_any_route_table(gateway, replicas):
    replica = await replicas()
    activator = FakeActivator()
    activator.reply = lambda req: ActivationReply(ok=True, endpoints=[replica.endpoint])
    gw = await gateway(activator)
    gw.gateway.book.apply(table(versions={"1": []}))
    r = await gw.client.get("/function/hello")
    assert r.status_code == 200
    assert [(q.function, q.version) for q in activator.requests] == [("hello", "1")]


async def test_an_alias_with_a_split_of_its_own_draws_among_its_versions(gateway):
    gw = await gateway()
    gw.gateway.book.apply(
        table(
            versions={"1": [], "2": [], "3": []},
            traffic={"3": 100},
            aliases={"live": "1", "beta": "2"},
            alias_traffic={"live": {"1": 90, "2": 10}},
        )
    )
    routes = gw.gateway.book.functions["hello"]
    picks = Counter(routes.pick("live").version for _ in range(20000))
    assert set(picks) == {"1", "2"} and 0.08 < picks["2"] / 20000 < 0.12
    assert {routes.pick("beta").version for _ in range(100)} == {"2"}  # an alias without a split: its version
    assert {routes.pick().version for _ in range(100)} == {"3"}  # unqualified calls keep the function's split
