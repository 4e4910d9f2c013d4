"""/_fx/batch: several events in one request, each its own invocation (result, error, log lines)."""

import json
import re

import httpx

HANDLER = {
    "handler.py": """
        import sys
        import time
        def handler(event, context):
            print("handling", event["n"])
            if event.get("fail"):
                raise ValueError(f"bad event {event['n']}")
            if event.get("exit"):
                sys.exit(3)
            if event.get("slow"):
                time.sleep(30)
            return {"n": event["n"], "id": context.aws_request_id}
    """
}


def items(r: httpx.Response) -> list[tuple[str, str, bytes]]:
    """(request id, function error or "-", payload) per invocation of a batch's answer."""
    body, pos, out = r.content, 0, []
    while pos < len(body):
        end = body.index(b"\n", pos)
        request_id, flag, ms, size = body[pos:end].decode().split(" ")
        assert float(ms) >= 0
        pos = end + 1 + int(size)
        out.append((request_id, flag, body[end + 1 : pos]))
    assert r.headers["x-fx-batch"] == f"{len(out)} 256"  # and the memory size, to bill each invocation
    assert "x-fx-report" not in r.headers  # which would count the batch as one invocation
    return out


def test_a_failing_event_fails_alone_and_each_invocation_has_its_log_lines(start):
    replica = start(HANDLER)
    events = [{"n": 0}, {"n": 1, "fail": True}, {"n": 2}]
    r = httpx.post(f"{replica.base}/_fx/batch", content=json.dumps(events))
    assert r.status_code == 200
    (id0, ok0, out0), (id1, flag1, err1), (id2, ok2, out2) = items(r)
    assert (ok0, ok2) == ("-", "-")
    assert json.loads(out0) == {"n": 0, "id": id0} and json.loads(out2) == {"n": 2, "id": id2}
    assert flag1 == "Unhandled"
    err = json.loads(err1)
    assert (err["errorType"], err["errorMessage"], err["requestId"]) == ("ValueError", "bad event 1", id1)
    assert len({id0, id1, id2}) == 3
    log = replica.log_text(f"REPORT RequestId: {id2}")
    for n, request_id in enumerate((id0, id1, id2)):  # START, the handler's output, END, REPORT: in this order
        pattern = (
            rf"START RequestId: {request_id} Version: 3\n(.*\n)*?.*handling {n}\n(.*\n)*?"
            rf"END RequestId: {request_id}\nREPORT RequestId: {request_id}\t"
        )
        assert re.search(pattern, log), log
    assert "[ERROR] ValueError: bad event 1" in log
    # The replica goes on serving plain invokes.
    assert httpx.post(f"{replica.base}/_fx/invoke", content=b'{"n": 9}').json()["n"] == 9


def test_a_handler_that_exits_ends_the_batch_after_its_own_invocation(start):
    replica = start(HANDLER)
    events = [{"n": 0}, {"n": 1, "exit": True}, {"n": 2}]
    r = httpx.post(f"{replica.base}/_fx/batch", content=json.dumps(events))
    answered = items(r)
    assert [flag for _, flag, _ in answered] == ["-", "Unhandled"]  # the third never ran
    assert json.loads(answered[1][2])["errorType"] == "Runtime.ExitError"
    assert replica.wait_exit() == 3
    assert "handling 2" not in replica.log_text()


def test_a_timeout_ends_the_batch_with_its_own_error_after_the_results_before_it(start):
    """The watchdog's answer is the batch's: the events before the one that timed out keep their results (they
    ran), and the ones after it are not answered, so the gateway knows they never started."""
    replica = start(HANDLER, FX_TIMEOUT_MS="300")
    events = [{"n": 0}, {"n": 1, "slow": True}, {"n": 2}]
    r = httpx.post(f"{replica.base}/_fx/batch", content=json.dumps(events), timeout=10)
    assert r.status_code == 200
    (id0, ok0, out0), (id1, flag1, err1) = items(r)
    assert ok0 == "-" and json.loads(out0) == {"n": 0, "id": id0}
    assert flag1 == "Unhandled" and json.loads(err1) == {
        "errorMessage": f"RequestId: {id1} Error: Task timed out after 0.30 seconds",
        "errorType": "Sandbox.Timedout",
    }
    assert replica.wait_exit() != 0
    log = replica.log_text()
    assert f"REPORT RequestId: {id1}" in log and "Status: timeout" in log and "handling 2" not in log


def test_a_body_that_is_not_an_array_is_refused(start):
    replica = start(HANDLER)
    for body in (b'{"n": 1}', b"[1, "):
        r = httpx.post(f"{replica.base}/_fx/batch", content=body)
        assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "START RequestId" not in replica.log_text()


def test_the_request_ids_the_gateway_names_are_the_invocations(start):
    replica = start(HANDLER)
    events = [{"n": 0}, {"n": 1, "fail": True}, {"n": 2}]
    r = httpx.post(
        f"{replica.base}/_fx/batch", content=json.dumps(events), headers={"X-Fx-Request-Id": "call-a,,call-c"}
    )
    (id0, _, out0), (id1, _, err1), (id2, _, out2) = items(r)
    assert (id0, id2) == ("call-a", "call-c")  # an async call's id is its aws_request_id, batched or not
    assert json.loads(out0)["id"] == "call-a" and json.loads(out2)["id"] == "call-c"
    assert id1 not in ("", "call-a", "call-c") and json.loads(err1)["requestId"] == id1  # none named: the replica's
    assert "START RequestId: call-c " in replica.log_text("REPORT RequestId: call-c")
    wrong = httpx.post(f"{replica.base}/_fx/batch", content=json.dumps(events), headers={"X-Fx-Request-Id": "a,b"})
    assert wrong.status_code == 400 and "2 request ids for a batch of 3" in wrong.json()["errorMessage"]
