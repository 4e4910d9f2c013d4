"""What a cached Lambda authorizer answer costs a request, in-process: the identity read, the cache look-up and,
for an IAM policy, its evaluation against the request's ARN. The function itself is never called (its answer
is cached by the first request), so this is the gateway's own per-request cost on an authorized route.

    .venv/bin/python -m bench.lambda_authorizer [--requests 200000] [--statements 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from fx_gateway.api.authorizers.lambda_function import LambdaAuthorizer
from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings
from fx_gateway.proxy.internal import Result

ARN = "arn:aws:execute-api:us-east-1:000000000000:shop"


class _Services:
    def __init__(self, answer: dict) -> None:
        self.settings = Settings()
        self.body = json.dumps(answer).encode()

    async def invoke(self, function_ref: str, payload: bytes, timeout: float) -> Result:
        return Result(200, self.body)


def _request() -> ApiRequest:
    return ApiRequest(
        api="shop",
        route_key="GET /users/{id}",
        method="GET",
        path="/users/42",
        query="",
        headers={b"host": b"shop.example.com", b"authorization": b"Bearer " + b"x" * 800},
        source_ip="127.0.0.1",
        host="shop.example.com",
        stage="prod",
        path_parameters={"id": "42"},
    )


def _policy(statements: int) -> dict:
    # The match is the last Allow, after `statements - 1` that name other routes, behind one Deny checked first.
    allows = [f"{ARN}/*/GET/other{i}/*" for i in range(statements - 1)] + [f"{ARN}/*/GET/users/*"]
    document = {
        "Statement": [
            {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": f"{ARN}/*/DELETE/*"},
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": allows},
        ]
    }
    return {"principalId": "u", "policyDocument": document, "context": {"user": "ann"}}


async def _measure(spec: dict, answer: dict, requests: int) -> float:
    """CPU µs per authorize() of a cached answer (process time: other load on the machine does not count), the
    median of 5 runs."""
    spec = {"function": "authz", "identity_source": ["$request.header.Authorization"], "ttl": 300, **spec}
    authorizer = LambdaAuthorizer("bench", spec, _Services(answer))
    request = _request()
    await authorizer.authorize(request, [])  # fills the cache
    runs = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(requests):
            await authorizer.authorize(request, [])
        runs.append((time.process_time() - started) / requests * 1e6)
    return statistics.median(runs)


async def _main(requests: int, statements: int) -> None:
    simple = await _measure({"payload": "2.0", "simple_responses": True}, {"isAuthorized": True}, requests)
    policy = await _measure({"payload": "1.0", "simple_responses": False}, _policy(statements), requests)
    print(f"cached simple answer:                      {simple:.2f} µs per request")
    print(f"cached IAM policy ({statements} Allow resources, 1 Deny): {policy:.2f} µs per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--statements", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(_main(args.requests, args.statements))


if __name__ == "__main__":
    main()
