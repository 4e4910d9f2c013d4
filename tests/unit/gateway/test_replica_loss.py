"""A replica lost mid-request: which requests are sent again, and what the others answer."""

import httpx
import pytest
from fx.protocol import ActivationReply
from fx_gateway.proxy.replica_loss import send_again, unread

from tests.unit.gateway.conftest import FakeActivator, table


@pytest.mark.parametrize(
    ("safe", "unread_", "heard_back", "retried", "limit", "again"),
    [
        (True, False, False, 0, 1, True),  # a GET whose replica may have run it: safe to repeat
        (False, True, False, 0, 1, True),  # a POST the replica provably never read whole
        (False, False, False, 0, 1, False),  # a POST that may have run: never repeated
        (True, True, True, 0, 1, False),  # part of an answer came: too late for anything
        (False, True, True, 0, 1, False),
        (True, False, False, 1, 1, False),  # once is the default limit
        (True, False, False, 1, 2, True),
        (True, True, False, 0, 0, False),  # --replica-retries 0: never
    ],
)
def test_what_is_sent_again(safe, unread_, heard_back, retried, limit, again):
    assert send_again(safe, unread_, heard_back, retried, limit) is again


def test_only_a_reset_or_a_broken_pipe_proves_the_request_unread():
    assert unread(ConnectionResetError())
    assert unread(BrokenPipeError())
    assert not unread(None)  # a clean end: the replica read the request and may have run it
    assert not unread(ConnectionAbortedError())  # this side's own doing
    assert not unread(TimeoutError())


def vouching(endpoint: str) -> FakeActivator:
    """An activator that names `endpoint`, as the controller does for a replica that is still alive."""
    activator = FakeActivator()
    activator.reply = lambda request: ActivationReply(ok=True, endpoints=[endpoint])
    return activator


def assert_replica_lost(r) -> None:
    assert r.status_code == 502
    body = r.json()
    assert set(body) == {"errorType", "errorMessage"}
    assert body["errorType"] == "Runtime.ReplicaLost"
    assert "hello" in body["errorMessage"] and "may have run" in body["errorMessage"]


async def assert_counted(gw, retries: int, lost: int) -> None:
    """/metrics counts the requests sent again and those answered Runtime.ReplicaLost."""
    metrics = (await gw.client.get("/metrics")).text
    assert f'fx_gateway_replica_retries_total{{function="hello",version="1"}} {retries}.0' in metrics
    assert f'fx_gateway_replica_lost_total{{function="hello",version="1"}} {lost}.0' in metrics


async def test_a_get_whose_replica_closed_is_sent_again_once_then_answered_replica_lost(gateway, replicas):
    replica = await replicas()
    gw = await gateway(vouching(replica.endpoint))
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    assert_replica_lost(await gw.client.get("/function/hello/close"))
    assert replica.requests == 2  # the first try and one retry (--replica-retries 1)
    await assert_counted(gw, retries=1, lost=1)
    assert (await gw.client.get("/function/hello")).status_code == 200  # the replica is used again


async def test_a_post_whose_replica_may_have_run_it_is_never_sent_again(gateway, replicas):
    replica = await replicas()
    gw = await gateway(vouching(replica.endpoint))
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    assert_replica_lost(await gw.client.post("/function/hello/close", content=b"order"))
    assert replica.requests == 1
    await assert_counted(gw, retries=0, lost=1)


async def test_a_request_the_replica_left_unread_goes_to_another_replica(gateway, replicas):
    dying, alive = await replicas("dying"), await replicas("alive")
    dying.resets = 1
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [dying.endpoint, alive.endpoint]}))  # the first is picked first
    r = await gw.client.post("/2015-03-31/functions/hello/invocations", content=b'{"n": 1}')
    assert r.status_code == 200
    assert r.json()["name"] == "alive" and r.json()["body"] == '{"n": 1}'  # the whole request, replayed
    assert r.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert (dying.requests, alive.requests) == (1, 1)
    await assert_counted(gw, retries=1, lost=0)


async def test_an_activation_answer_still_naming_the_lost_replica_does_not_bring_it_back(gateway, replicas):
    """The controller learns of a replica's exit after the gateway sees its connection break: its first answer
    still names the dead replica, which must not get the request again (it would reset it too: 502)."""
    dying, alive = await replicas("dying"), await replicas("alive")
    dying.resets = 2  # dead: every connection that reaches it is reset
    activator = FakeActivator()
    answers = iter([[dying.endpoint]])  # first out of date, then the replica the controller started instead
    activator.reply = lambda request: ActivationReply(ok=True, endpoints=next(answers, [alive.endpoint]))
    gw = await gateway(activator)
    gw.gateway.book.apply(table(versions={"1": [dying.endpoint]}))
    r = await gw.client.get("/function/hello")
    assert (r.status_code, r.json()["name"]) == (200, "alive")
    assert (dying.requests, alive.requests, len(activator.requests)) == (1, 1, 2)
    await assert_counted(gw, retries=1, lost=0)


async def test_no_retry_with_replica_retries_zero(gateway, replicas):
    replica = await replicas()
    replica.resets = 1
    gw = await gateway(vouching(replica.endpoint), replica_retries=0)
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    assert_replica_lost(await gw.client.get("/function/hello"))
    assert replica.requests == 1


async def test_an_answer_cut_short_is_never_sent_again(gateway, replicas):
    replica = await replicas()
    gw = await gateway(vouching(replica.endpoint))
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    with pytest.raises(httpx.RemoteProtocolError):  # part of the answer is out: only a close can say it is cut
        await gw.client.get("/function/hello/partial")
    assert replica.requests == 1
    await assert_counted(gw, retries=0, lost=1)
