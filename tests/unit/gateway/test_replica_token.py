"""The gateway shows each replica its version's token (X-Fx-Replica-Token) and never passes on a caller's."""

from fx.protocol import RouteTable, VersionRoute
from fx_gateway.http.router import scan

from tests.unit.gateway.conftest import table

HEADER = "x-fx-replica-token"


def with_tokens(endpoints: dict[str, list[str]], traffic: dict[str, int]) -> RouteTable:
    plain = table(versions=endpoints, traffic=traffic)
    plain.versions = {v: VersionRoute(e, 1, token=f"token-of-{v}") for v, e in endpoints.items()}
    return plain


async def test_every_request_carries_its_versions_token_once_and_never_the_callers(gateway, replicas):
    one, two = await replicas("one"), await replicas("two")
    gw = await gateway()
    gw.gateway.book.apply(with_tokens({"1": [one.endpoint], "2": [two.endpoint]}, {"1": 100}))
    forged = {"X-Fx-Replica-Token": "forged"}

    answers = [
        await gw.client.get("/function/hello/x", headers=forged),
        await gw.client.post("/2015-03-31/functions/hello/invocations", content=b"{}", headers=forged),
        await gw.client.post("/2015-03-31/functions/hello/invocations?Qualifier=2", content=b"{}", headers=forged),
    ]
    for answer, version in zip(answers, ("1", "1", "2"), strict=True):
        seen = answer.json()
        assert answer.status_code == 200
        assert seen["headers"][HEADER] == f"token-of-{version}"
        assert seen["header_names"].count(HEADER) == 1


async def test_a_table_without_tokens_sends_none(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    seen = (await gw.client.get("/function/hello", headers={"X-Fx-Replica-Token": "forged"})).json()
    assert HEADER not in seen["header_names"]


def test_a_callers_token_is_not_kept_for_async_calls_either():
    _, kept = scan([(b"X-Fx-Replica-Token", b"forged"), (b"X-Custom", b"yes")])
    assert kept == b"X-Custom: yes\r\n"
