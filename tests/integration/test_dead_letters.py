"""Dead letters on the real platform: what they say about the failure, and the `fx dlq` verbs that list, show
and redrive them without a NATS client."""

import asyncio
import json

import httpx
from fx.protocol import DEAD_ATTEMPTS, DEAD_ERROR, DEAD_MESSAGE, DEAD_STATUS, STREAM_ASYNC

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import dead_letters, report_file
from tests.waiting import wait_for

BAD_ORDER = 'raise ValueError("bad order")'


def test_a_dead_letter_names_the_functions_error_on_both_async_paths(fast_platform, make_function):
    project = make_function("orders", BAD_ORDER)
    assert fast_platform.fx("deploy", cwd=project).returncode == 0
    gateway = fast_platform.gateway_url
    by_http = httpx.post(f"{gateway}/async-function/orders/new", content=b'{"id": 1}')
    by_invoke = httpx.post(
        f"{gateway}/2015-03-31/functions/orders/invocations",
        content=b'{"id": 2}',
        headers={"X-Amz-Invocation-Type": "Event"},
    )
    assert by_http.status_code == by_invoke.status_code == 202

    letters = wait_for(lambda: len(dead_letters(fast_platform)) == 2 and dead_letters(fast_platform), 30, "2 letters")
    by_body = {json.loads(letter.data)["id"]: letter.headers for letter in letters}
    for headers in by_body.values():
        assert headers[DEAD_ERROR] == "ValueError"
        assert headers[DEAD_MESSAGE] == "bad order"
        assert headers[DEAD_ATTEMPTS] == "3"
    assert by_body[1][DEAD_STATUS] == "502"  # what the HTTP trigger answers a failed function
    assert by_body[2][DEAD_STATUS] == "200"  # the Invoke API's: the error is in X-Amz-Function-Error
    # A synchronous caller of the HTTP trigger still gets API Gateway's opaque 502, even when asking for more.
    sync = httpx.post(f"{gateway}/function/orders", headers={"X-Fx-Error-Detail": "1"})
    assert sync.status_code == 502 and sync.json() == {"message": "Internal Server Error"}


def test_fx_dlq_lists_shows_and_redrives_the_calls_of_a_fixed_function_once(fast_platform, make_function):
    out = report_file(fast_platform, "orders")
    project = make_function("orders", BAD_ORDER)
    assert fast_platform.fx("deploy", cwd=project).returncode == 0
    r = httpx.post(f"{fast_platform.gateway_url}/async-function/orders", content=b'{"n": 1}')
    assert r.status_code == 202

    def listed() -> list:
        return json.loads(fast_platform.fx("dlq", "ls", "-o", "json").stdout)

    [letter] = wait_for(listed, 30, "the dead letter")
    assert (letter["function"], letter["error"], letter["attempts"]) == ("orders", "ValueError", 3)
    assert letter["call_id"] == r.headers["X-Fx-Call-Id"] and letter["source"] == "async"
    table = fast_platform.fx("dlq", "ls").stdout.splitlines()
    assert table[0].split() == ["ID", "FUNCTION", "SOURCE", "ERROR", "ATTEMPTS", "TIME", "MESSAGE"]
    assert table[1].split()[:5] == [str(letter["id"]), "orders", "async", "ValueError", "3"]
    shown = fast_platform.fx("dlq", "show", str(letter["id"]))
    assert shown.returncode == 0 and "error:     ValueError: bad order" in shown.stdout
    assert shown.stdout.rstrip().endswith('body:\n{"n": 1}')

    unknown = fast_platform.fx("dlq", "redrive", "999")
    assert unknown.returncode == 2 and "no dead letter 999" in unknown.stderr  # 404: bad input (COMMON-19)
    assert fast_platform.fx("dlq", "redrive").returncode == 2  # which letters?
    assert len(listed()) == 1

    fixed = "with open(os.environ['OUT'], 'a') as f:\n        f.write(event['body'] + '\\n')"
    project = make_function("orders", fixed, imports="import os", config={"env": {"OUT": str(out)}})
    assert fast_platform.fx("deploy", cwd=project).returncode == 0
    redriven = fast_platform.fx("dlq", "redrive", "--function", "orders")
    assert redriven.returncode == 0, redriven.stderr
    assert redriven.stdout == f"{letter['id']} orders: redriven (async call {letter['call_id']})\n"
    assert listed() == []  # removed once the copy was stored
    wait_for(lambda: out.exists() and out.read_text() == '{"n": 1}\n', 30, "the redriven call to run")
    wait_for(lambda: async_backlog(fast_platform) == 0, 10, "the call to be acked")
    assert out.read_text() == '{"n": 1}\n' and listed() == []  # once, and it did not fail again
    assert fast_platform.fx("dlq", "redrive", "--all").stdout == "no dead letters to redrive\n"


def async_backlog(platform: RunningPlatform) -> int:
    """Calls stored in FX_ASYNC not yet acked."""

    async def read() -> int:
        nc = await platform.nats()
        messages = (await nc.jetstream().stream_info(STREAM_ASYNC)).state.messages
        await nc.close()
        return messages

    return asyncio.run(read())
