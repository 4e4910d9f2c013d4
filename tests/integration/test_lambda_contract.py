"""The Lambda contract through the whole platform: Invoke API, function errors, timeouts."""

import json

import httpx


def test_invoke_api_returns_the_result_and_flags_function_errors(platform, make_function):
    project = make_function(
        "picky",
        body="if event.get('fail'): raise ValueError('no thanks')\n    return {'got': event['n'] * 2}",
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/2015-03-31/functions/picky/invocations"

    ok = httpx.post(url, json={"n": 21}, timeout=30)
    assert ok.status_code == 200 and ok.json() == {"got": 42}
    assert "X-Amz-Function-Error" not in ok.headers

    failed = httpx.post(url, json={"fail": True}, timeout=30)
    assert failed.status_code == 200
    assert failed.headers["X-Amz-Function-Error"] == "Unhandled"
    error = failed.json()  # Lambda's error shape for Python: errorMessage, errorType, requestId, stackTrace
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "no thanks"
    assert isinstance(error["stackTrace"], list) and any(
        "raise ValueError('no thanks')" in f for f in error["stackTrace"]
    )

    cli = platform.fx("invoke", "picky", "--data", '{"n": 1}', "--output", "json")
    assert cli.returncode == 0 and json.loads(cli.stdout) == {"got": 2}
    cli_failed = platform.fx("invoke", "picky", "--data", '{"fail": true}')
    assert cli_failed.returncode == 1 and "no thanks" in cli_failed.stdout + cli_failed.stderr


def test_http_trigger_gets_a_v2_event_and_a_function_error_is_a_502(platform, make_function):
    project = make_function(
        "mirror",
        body=(
            "if event['rawPath'] == '/boom': raise RuntimeError('boom')\n"
            "    return {'path': event['rawPath'], 'q': event.get('queryStringParameters'),"
            " 'method': event['requestContext']['http']['method'], 'version': event['version']}"
        ),
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    r = httpx.post(f"{platform.gateway_url}/function/mirror/a/b?x=1", content=b"hi", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"path": "/a/b", "q": {"x": "1"}, "method": "POST", "version": "2.0"}

    boom = httpx.get(f"{platform.gateway_url}/function/mirror/boom", timeout=30)
    assert boom.status_code == 502
    assert boom.json() == {"message": "Internal Server Error"}  # API Gateway's body: nothing of the error leaks


def test_a_timed_out_invocation_gets_lambdas_timeout_error_and_the_next_call_works(platform, make_function):
    project = make_function(
        "slowpoke",
        body="import time\n    if event.get('sleep'): time.sleep(event['sleep'])\n    return 'ok'",
        config={"timeout": 1},
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/2015-03-31/functions/slowpoke/invocations"

    timed_out = httpx.post(url, json={"sleep": 5}, timeout=30)
    assert timed_out.status_code == 200 and timed_out.headers["X-Amz-Function-Error"] == "Unhandled"
    assert timed_out.json()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out.json()["errorMessage"]
    assert httpx.post(url, json={}, timeout=30).json() == "ok"
