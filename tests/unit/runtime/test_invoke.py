"""Raw invokes over /_fx/invoke: results, errors, context, limits, timeouts, logs, and SIGTERM."""

import base64
import json
import re
import signal
import socket
import threading
import time

import httpx

from tests.waiting import wait_for

CONTEXT = {
    "handler.py": """
        import os
        calls = 0
        def handler(event, context):
            global calls
            calls += 1
            cc = context.client_context
            return {
                "calls": calls,
                "aws_request_id": context.aws_request_id,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "identity": context.identity.cognito_identity_id,
                "client_custom": cc.custom if cc else None,
                "tenant_id": context.tenant_id,
                "remaining": context.get_remaining_time_in_millis(),
                "event": event,
                "env": {k: os.environ.get(k) for k in (
                    "LAMBDA_TASK_ROOT", "AWS_EXECUTION_ENV", "AWS_REGION", "AWS_DEFAULT_REGION", "TZ", "LANG",
                    "AWS_LAMBDA_INITIALIZATION_TYPE", "LAMBDA_RUNTIME_DIR")},
                "cwd": os.getcwd(),
            }
    """
}


def test_context_fields_env_and_module_state(start):
    replica = start(CONTEXT, FX_TIMEOUT_MS="5000", AWS_REGION="eu-west-1")
    custom = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    r = httpx.post(
        f"{replica.base}/_fx/invoke",
        content=b'{"a": 1}',
        headers={"X-Fx-Request-Id": "req-1", "X-Amz-Client-Context": custom},
    )
    assert r.status_code == 200 and "x-amz-function-error" not in r.headers
    out = r.json()
    assert out["event"] == {"a": 1}
    assert out["aws_request_id"] == "req-1"
    assert (out["function_name"], out["function_version"], out["memory_limit_in_mb"]) == ("fn", "3", "256")
    assert out["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:000000000000:function:fn"
    assert out["log_group_name"] == "/aws/lambda/fn" and "[3]" in out["log_stream_name"]
    assert out["identity"] is None and out["tenant_id"] is None
    assert out["client_custom"] == {"k": "v"}
    assert 4000 < out["remaining"] <= 5000
    env = out["env"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    assert (env["TZ"], env["LANG"], env["AWS_LAMBDA_INITIALIZATION_TYPE"]) == (":UTC", "en_US.UTF-8", "on-demand")
    assert out["cwd"] == env["LAMBDA_TASK_ROOT"] and env["LAMBDA_RUNTIME_DIR"]
    second = httpx.post(f"{replica.base}/_fx/invoke", content=b"{}").json()
    assert second["calls"] == 2  # init once; module globals survive
    assert second["aws_request_id"] != out["aws_request_id"]


def test_handler_error_has_lambda_shape_and_header(start):
    replica = start({"handler.py": "def handler(e, c):\n    raise RuntimeError('broken: ' + e['why'])\n"})
    r = httpx.post(f"{replica.base}/_fx/invoke", content=b'{"why": "because"}', headers={"X-Fx-Request-Id": "r-9"})
    assert r.status_code == 200 and r.headers["x-amz-function-error"] == "Unhandled"
    err = r.json()
    assert (err["errorType"], err["errorMessage"], err["requestId"]) == ("RuntimeError", "broken: because", "r-9")
    assert any("handler.py" in frame for frame in err["stackTrace"])
    assert "[ERROR] RuntimeError: broken: because" in replica.log_text("[ERROR]")


def test_marshal_error(start):
    replica = start({"handler.py": "def handler(e, c):\n    return {1, 2}\n"})
    r = httpx.post(f"{replica.base}/_fx/invoke", content=b"{}")
    assert r.headers["x-amz-function-error"] == "Unhandled" and r.json()["errorType"] == "Runtime.MarshalError"


def test_health_and_unknown_paths(start):
    replica = start({"handler.py": "def handler(e, c):\n    return 1\n"})
    assert httpx.get(f"{replica.base}/_fx/health").json() == {"status": "ready"}
    assert httpx.get(f"{replica.base}/elsewhere").status_code == 404
    assert httpx.get(f"{replica.base}/_fx/httpx").status_code == 404


def test_request_and_response_size_limits(start):
    replica = start(
        {"handler.py": "def handler(e, c):\n    return 'x' * e if isinstance(e, int) else 'ok'\n"},
        FX_MAX_REQUEST_BYTES="1000",
        FX_MAX_RESPONSE_BYTES="500",
    )
    with httpx.Client(base_url=replica.base) as client:
        too_big = client.post("/_fx/invoke", content=b"[" + b"1," * 600 + b"1]")
        assert too_big.status_code == 413 and too_big.json()["errorType"] == "RequestTooLargeException"
        assert client.post("/_fx/http/", content=b"y" * 1001).status_code == 413
        assert client.post("/_fx/invoke", content=b"400").status_code == 200  # same connection still usable
        r = client.post("/_fx/invoke", content=b"600")
        assert r.headers["x-amz-function-error"] == "Unhandled"
        assert r.json()["errorType"] == "Function.ResponseSizeTooLarge"
        http_r = client.post("/_fx/http/", content=b"")
        assert http_r.status_code == 200
        assert client.post("/_fx/invoke", content=b"not json").status_code == 400


def test_an_http_results_size_is_its_json_whatever_its_body_holds(start):
    """Lambda's limit is on the result's JSON: escaped and non-ASCII characters count as they are written there."""
    replica = start(
        {
            "handler.py": (
                "def handler(e, c):\n"
                "    count, char = e['rawPath'][1:].split('-')\n"
                "    return {'statusCode': 200, 'body': chr(int(char)) * int(count)}\n"
            )
        },
        FX_MAX_RESPONSE_BYTES="500",
    )
    # The JSON is '{"statusCode": 200, "body": "..."}': 31 bytes and the body's, escaped (\u0001: 6), UTF-8 (é: 2).
    with httpx.Client(base_url=replica.base, headers={"X-Fx-Error-Detail": "1"}) as client:
        for count, char, fits in ((469, "x", True), (470, "x", False), (78, "\x01", True), (79, "\x01", False)):
            r = client.get(f"/_fx/http/{count}-{ord(char)}")
            if fits:
                assert r.status_code == 200 and r.text == char * count
            else:
                assert r.status_code == 502 and r.json()["errorType"] == "Function.ResponseSizeTooLarge"
        assert client.get(f"/_fx/http/234-{ord('é')}").text == "é" * 234
        assert client.get(f"/_fx/http/235-{ord('é')}").json()["errorType"] == "Function.ResponseSizeTooLarge"


def test_timeout_answers_like_lambda_then_the_replica_exits(start):
    replica = start(
        {"handler.py": "import time\ndef handler(e, c):\n    print('working')\n    time.sleep(30)\n"},
        FX_TIMEOUT_MS="300",
    )
    started = time.monotonic()
    r = httpx.post(f"{replica.base}/_fx/invoke", content=b"{}", headers={"X-Fx-Request-Id": "slow-1"}, timeout=10)
    assert 0.25 < time.monotonic() - started < 3
    assert r.status_code == 200 and r.headers["x-amz-function-error"] == "Unhandled"
    assert r.json() == {
        "errorMessage": "RequestId: slow-1 Error: Task timed out after 0.30 seconds",
        "errorType": "Sandbox.Timedout",
    }
    assert replica.wait_exit() != 0
    log = replica.log_text()
    assert log.index("working") < log.index("slow-1 Task timed out after 0.30 seconds")
    assert "REPORT RequestId: slow-1" in log and "Status: timeout" in log


def test_http_timeout_is_apigateways_502(start):
    replica = start({"handler.py": "import time\ndef handler(e, c):\n    time.sleep(30)\n"}, FX_TIMEOUT_MS="200")
    timed_out = httpx.get(f"{replica.base}/_fx/http/", timeout=10)
    assert (timed_out.status_code, timed_out.json()) == (502, {"message": "Internal Server Error"})
    replica.wait_exit()


def test_log_lines(start):
    code = "import logging\ndef handler(e, c):\n    print('hello')\n    logging.getLogger().warning('careful')\n"
    replica = start({"handler.py": code})
    for rid in ("a-1", "a-2"):
        httpx.post(f"{replica.base}/_fx/invoke", content=b"{}", headers={"X-Fx-Request-Id": rid})
    replica.proc.send_signal(signal.SIGTERM)
    assert replica.wait_exit() == 0
    log = replica.log_text()
    # In the file (only), START and INIT_START follow the time they began: what fx logs --since reads.
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    assert re.search(f"^{stamp}INIT_START Runtime Version: python:3\\.\\d+\n", log, re.M)
    assert re.search(f"^{stamp}START RequestId: a-1 Version: 3\nhello\n", log, re.M)
    assert re.search(r"\[WARNING\]\t\S+Z\ta-1\tcareful\n", log)
    assert "END RequestId: a-1\n" in log
    report = re.compile(
        r"REPORT RequestId: (\S+)\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\t"
        r"Max Memory Used: \d+ MB(\tInit Duration: [\d.]+ ms)?\n"
    )
    reports = report.findall(log)
    assert [(rid, bool(init)) for rid, init in reports] == [("a-1", True), ("a-2", False)]


def test_max_memory_used_is_the_peak_at_the_invocations_end_whichever_thread_grew_it(start):
    """REPORT's Max Memory Used counts what the invocation itself touched, also from a thread it started."""
    code = """
        import threading

        def touch(mb):
            block = bytearray(mb << 20)
            block[::4096] = b"\\1" * (len(block) // 4096)

        def handler(event, context):
            if event.get("grow_mb"):
                worker = threading.Thread(target=touch, args=(event["grow_mb"],))
                worker.start()
                worker.join()
    """
    replica = start({"handler.py": code})
    report = r"REPORT RequestId: {}\t.*\tMax Memory Used: (\d+) MB"

    def used(rid: str, event: dict) -> int:
        httpx.post(f"{replica.base}/_fx/invoke", json=event, headers={"X-Fx-Request-Id": rid})
        return int(re.findall(report.format(rid), replica.log_text(f"REPORT RequestId: {rid}\t"))[0])

    # A process's peak RSS starts at its parent's (Linux keeps it across fork and exec): here the test runner's,
    # which can be hundreds of MB, so the thread touches more than the peak reported before it.
    before = used("m-1", {})
    assert used("m-2", {"grow_mb": before + 96}) >= before + 96


def test_a_burst_of_invocations_reaches_the_log_in_order_without_a_further_call(start):
    """The log is written at most every few ms while calls follow each other: the last of a burst still gets
    there on its own, each invocation's lines between its START and its REPORT."""
    replica = start({"handler.py": "def handler(e, c):\n    print('ran', c.aws_request_id)\n"})
    with httpx.Client(base_url=replica.base) as client:
        for i in range(50):
            client.post("/_fx/invoke", content=b"{}", headers={"X-Fx-Request-Id": f"b-{i}"})
    log = replica.log_text("REPORT RequestId: b-49\t")
    assert replica.proc.poll() is None  # not a log written at exit
    lines = [line.split(" ", 1)[1] if line[:1].isdigit() else line for line in log.splitlines()]
    for i in range(50):
        start_at = lines.index(f"START RequestId: b-{i} Version: 3")
        assert lines[start_at + 1 : start_at + 3] == [f"ran b-{i}", f"END RequestId: b-{i}"]
        assert lines[start_at + 3].startswith(f"REPORT RequestId: b-{i}\tDuration: ")


HELD = """
import os, time

def handler(event, context):
    open(os.environ["BEGAN"], "w").close()
    while not os.path.exists(os.environ["RELEASE"]):  # held until the test has sent SIGTERM
        time.sleep(0.01)
    return "done"
"""


def test_sigterm_finishes_the_invocation_in_progress(start, tmp_path):
    began, release = tmp_path / "began", tmp_path / "release"
    replica = start({"handler.py": HELD}, BEGAN=str(began), RELEASE=str(release))
    answers = []
    caller = threading.Thread(target=lambda: answers.append(httpx.post(f"{replica.base}/_fx/invoke", content=b"{}")))
    caller.start()
    wait_for(began.exists, 5, "the invocation to begin")
    replica.proc.send_signal(signal.SIGTERM)
    release.touch()  # the handler returns only now, after the SIGTERM
    caller.join(5)
    assert answers and answers[0].json() == "done"
    assert replica.wait_exit() == 0


def test_handler_calling_sys_exit_is_answered_then_the_replica_exits(start):
    replica = start({"handler.py": "import sys\ndef handler(e, c):\n    sys.exit(3)\n"})
    r = httpx.post(f"{replica.base}/_fx/invoke", content=b"{}", headers={"X-Fx-Request-Id": "bye"})
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert r.json()["errorType"] == "Runtime.ExitError"
    assert r.json()["errorMessage"] == "RequestId: bye Error: Runtime exited with error: exit status 3"
    assert replica.wait_exit() == 3


def test_handlers_may_run_their_own_event_loop(start):
    """As on Lambda, no loop is running in the handler's thread: the get_event_loop().run_until_complete()
    that adapters such as Mangum use works on every call, and so does asyncio.run()."""
    replica = start(
        {
            "handler.py": """
            import asyncio

            async def double(n):
                await asyncio.sleep(0)
                return n * 2

            def handler(event, context):
                if event["mode"] == "run":
                    return asyncio.run(double(event["n"]))
                return asyncio.get_event_loop().run_until_complete(double(event["n"]))
            """
        }
    )
    for mode, n in (("loop", 1), ("loop", 5), ("run", 7), ("run", 8)):
        r = httpx.post(f"{replica.base}/_fx/invoke", json={"mode": mode, "n": n})
        assert r.status_code == 200 and r.json() == 2 * n, r.text
    # Pipelined, so that the replica reads them at once and runs them one after the other in one loop callback.
    # (Not "loop": asyncio.run() leaves the thread no current loop, on Lambda too.)
    host, port = replica.endpoint.split(":")
    calls = [{"mode": "run", "n": n} for n in (2, 3, 4)]
    bodies = [json.dumps(call).encode() for call in calls]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"".join(b"POST /_fx/invoke HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies)
        )
        answers = b""
        while answers.count(b"HTTP/1.1 ") < len(calls) or not answers.endswith(b"8"):
            answers += sock.recv(65536)
    assert [line.split(b"\r\n\r\n")[1][:1] for line in answers.split(b"HTTP/1.1 ")[1:]] == [b"4", b"6", b"8"]


TALKATIVE = {
    "handler.py": """
        import logging
        def handler(event, context):
            print("printed " + "x" * event.get("pad", 0))
            logging.getLogger().warning("logged %s", event.get("n"))
            if event.get("fail"):
                raise ValueError("asked to fail")
            return {"n": event.get("n")}
    """
}


def test_log_type_tail_returns_this_invocations_log_base64(start):
    replica = start(TALKATIVE)
    httpx.post(f"{replica.base}/_fx/invoke", content=b'{"n": 1}')  # another invocation's lines stay out
    r = httpx.post(
        f"{replica.base}/_fx/invoke", content=b'{"n": 2}', headers={"X-Amz-Log-Type": "Tail", "X-Fx-Request-Id": "t-2"}
    )
    assert r.status_code == 200 and r.json() == {"n": 2}
    tail = base64.b64decode(r.headers["x-amz-log-result"]).decode()
    lines = tail.splitlines()
    assert lines[0] == "START RequestId: t-2 Version: 3"
    assert "printed " in tail and "logged 2" in tail and "t-2" in lines[2]  # the logger's line names the request
    assert lines[-2] == "END RequestId: t-2" and lines[-1].startswith("REPORT RequestId: t-2\tDuration: ")
    assert "logged 1" not in tail
    assert "logged 2" in replica.log_text("logged 2")  # the log itself still has everything
    plain = httpx.post(f"{replica.base}/_fx/invoke", content=b'{"n": 3}')
    assert "x-amz-log-result" not in plain.headers  # not asked, not made


def test_the_tail_is_the_last_4_kb_and_comes_with_errors_too(start):
    replica = start(TALKATIVE)
    big = httpx.post(f"{replica.base}/_fx/invoke", content=b'{"pad": 10000}', headers={"X-Amz-Log-Type": "Tail"})
    tail = base64.b64decode(big.headers["x-amz-log-result"])
    assert len(tail) == 4096 and tail.decode().splitlines()[-1].startswith("REPORT RequestId: ")
    failed = httpx.post(f"{replica.base}/_fx/invoke", content=b'{"fail": true}', headers={"X-Amz-Log-Type": "Tail"})
    assert failed.headers["x-amz-function-error"] == "Unhandled"
    assert "[ERROR] ValueError: asked to fail" in base64.b64decode(failed.headers["x-amz-log-result"]).decode()


def test_a_body_passed_by_reference_is_taken_up_to_its_own_limit(start):
    """The gateway read it from the blob store (X-Fx-Body-Ref): FX_MAX_BLOB_BYTES bounds it, not the request limit."""
    replica = start(
        {"handler.py": "def handler(e, c):\n    return len(e)\n"},
        FX_MAX_REQUEST_BYTES="1000",
        FX_MAX_BLOB_BYTES="3000",
    )
    ref = {"X-Fx-Body-Ref": "sha256:" + "0" * 64}
    event = b'"' + b"x" * 2000 + b'"'
    with httpx.Client(base_url=replica.base) as client:
        assert client.post("/_fx/invoke", content=event, headers=ref).json() == 2000
        assert client.post("/_fx/invoke", content=event).status_code == 413  # the next request: its own limit again
        over = client.post("/_fx/invoke", content=b'"' + b"x" * 3000 + b'"', headers=ref)
        assert over.status_code == 413


def test_every_answer_of_a_handler_that_ran_reports_its_duration_and_memory_first(start):
    """The X-Fx-Report line the gateway reads for billing and strips: right after the status line, on a result,
    a function error and an HTTP answer alike, and on nothing the handler did not run for."""
    source = "def handler(e, c):\n    if e.get('fail'):\n        raise ValueError\n    return 1\n"
    replica = start({"handler.py": source})
    with httpx.Client() as http:
        answers = [
            http.post(f"{replica.base}/_fx/invoke", content=b"{}"),
            http.post(f"{replica.base}/_fx/invoke", content=b'{"fail": 1}'),
            http.get(f"{replica.base}/_fx/http/anything"),
        ]
        for r in answers:
            first = next(iter(r.headers.raw))
            assert first[0].lower() == b"x-fx-report"
            duration, memory = first[1].split()
            assert float(duration) > 0 and int(memory) >= 128
        assert "x-fx-report" not in http.get(f"{replica.base}/_fx/health").headers


def test_each_invocation_runs_under_its_own_trace_id_or_the_callers(start):
    replica = start({"handler.py": "import os\ndef handler(e, c):\n    return os.environ['_X_AMZN_TRACE_ID']\n"})
    shape = re.compile(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0")
    with httpx.Client(base_url=replica.base) as client:
        made = [client.post("/_fx/invoke", content=b"{}").json() for _ in range(3)]
        given = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        assert client.post("/_fx/invoke", content=b"{}", headers={"X-Amzn-Trace-Id": given}).json() == given
    assert all(shape.fullmatch(trace) for trace in made) and len(set(made)) == 3
