"""Response streaming on the real platform: boto3's invoke_with_response_stream gets each chunk of a streaming
handler as it is produced, the same function answers Invoke joined and streams on its HTTP route, and errors,
qualifiers and the size limit show as Lambda shows them."""

import base64
import json
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import report_file
from tests.integration.test_events import lambda_client

# Streams "first", then waits for the marker $OUT.<id> (the test creates it once it holds the first chunk; a
# runtime that held chunks back would time out first), then "second", then fails or streams "last". `runaway`
# streams 1 MiB chunks for ever. The HTTP route's query string is the event's parameters.
STREAMER = """\
import os
import time

# {tag}


def handler(event, context):
    params = event.get("queryStringParameters") or event
    if params.get("mode") == "runaway":
        def forever():
            while True:
                yield b"x" * (1 << 20)
        return forever()

    def chunks():
        yield f"first of {{os.environ['AWS_LAMBDA_FUNCTION_VERSION']}}\\n"  # the number, whatever the caller named
        marker = os.environ["OUT"] + "." + params["id"]
        while not os.path.exists(marker):  # bounded by the function's timeout
            time.sleep(0.01)
        yield "second\\n"
        if params.get("mode") == "fail":
            raise ValueError("broke after two chunks")
        yield b"last\\n"
    return chunks()
"""
MiB = 1 << 20


def deploy_streamer(platform: RunningPlatform, tmp_path: Path, tag: str = "v1") -> Path:
    """Deploy `streamer` (a new version per tag) and return the folder its markers go in."""
    project = tmp_path / f"streamer-{tag}"
    project.mkdir()
    out = report_file(platform, "streamer")
    (project / "handler.py").write_text(STREAMER.format(tag=tag))
    spec = {"handler": "handler.handler", "timeout": 10, "env": {"OUT": str(out)}}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"streamer": spec}}))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    return out


def release(out: Path, call: str) -> None:
    """Let the handler of call `call` go on past its first chunk."""
    out.with_name(f"{out.name}.{call}").touch()


def test_chunks_reach_the_boto3_caller_as_they_are_produced(platform, tmp_path):
    out = deploy_streamer(platform, tmp_path)
    client = lambda_client(platform)

    response = client.invoke_with_response_stream(FunctionName="streamer", Payload=json.dumps({"id": "a"}))
    assert response["StatusCode"] == 200
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    events = iter(response["EventStream"])
    # The handler is blocked until the marker exists, so this chunk came before it produced the last one.
    assert next(events) == {"PayloadChunk": {"Payload": b"first of 1\n"}}
    release(out, "a")
    assert list(events) == [
        {"PayloadChunk": {"Payload": b"second\n"}},
        {"PayloadChunk": {"Payload": b"last\n"}},
        {"InvokeComplete": {}},
    ]

    # The same function through Invoke: the whole body, joined, as Lambda gives a non-streaming caller.
    release(out, "joined")
    joined = client.invoke(FunctionName="streamer", Payload=json.dumps({"id": "joined"}))
    assert "FunctionError" not in joined
    assert joined["Payload"].read() == b"first of 1\nsecond\nlast\n"

    dry = client.invoke_with_response_stream(FunctionName="streamer", InvocationType="DryRun", Qualifier="1")
    assert dry["StatusCode"] == 204 and dry["ExecutedVersion"] == "1"


def test_an_error_mid_stream_ends_it_with_the_error_after_the_chunks_sent(platform, tmp_path):
    out = deploy_streamer(platform, tmp_path)
    client = lambda_client(platform)
    release(out, "b")
    payload = json.dumps({"id": "b", "mode": "fail"})
    response = client.invoke_with_response_stream(FunctionName="streamer", Payload=payload, LogType="Tail")
    events = list(response["EventStream"])
    assert events[:2] == [{"PayloadChunk": {"Payload": b"first of 1\n"}}, {"PayloadChunk": {"Payload": b"second\n"}}]
    complete = events[2]["InvokeComplete"]
    assert (complete["ErrorCode"], complete["ErrorDetails"]) == ("ValueError", "broke after two chunks")
    log = base64.b64decode(complete["LogResult"]).decode()
    assert "START RequestId:" in log and "[ERROR] ValueError: broke after two chunks" in log
    assert len(events) == 3

    # Invoke of the same failure: Lambda's function error, nothing of the partial body.
    failed = client.invoke(FunctionName="streamer", Payload=payload)
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorMessage"] == "broke after two chunks"


def test_the_http_route_streams_chunked_and_cuts_the_body_on_a_failure(platform, tmp_path):
    out = deploy_streamer(platform, tmp_path)
    url = f"{platform.gateway_url}/function/streamer"
    with httpx.stream("GET", url, params={"id": "h"}, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["content-type"] == "application/octet-stream"
        pieces = r.iter_raw()
        assert next(pieces) == b"first of 1\n"  # before the handler could produce the rest
        release(out, "h")
        assert b"".join(pieces) == b"second\nlast\n"

    release(out, "h-fail")
    with httpx.stream("GET", url, params={"id": "h-fail", "mode": "fail"}, timeout=10) as r:
        assert r.status_code == 200  # the status went out with the first chunk
        with pytest.raises(httpx.RemoteProtocolError):  # the body ends without its last chunk: incomplete
            r.read()


def test_a_qualifier_picks_the_version_that_streams(platform, tmp_path):
    out = deploy_streamer(platform, tmp_path, "v1")
    deploy_streamer(platform, tmp_path, "v2")
    client = lambda_client(platform)
    release(out, "q")
    for qualifier, version in (("1", b"1"), ("2", b"2")):
        response = client.invoke_with_response_stream(
            FunctionName="streamer", Qualifier=qualifier, Payload=json.dumps({"id": "q"})
        )
        assert response["ExecutedVersion"] == version.decode()
        assert next(iter(response["EventStream"])) == {"PayloadChunk": {"Payload": b"first of %s\n" % version}}
    response = client.invoke_with_response_stream(FunctionName="streamer", Payload=json.dumps({"id": "q"}))
    first = next(iter(response["EventStream"]))
    assert first == {"PayloadChunk": {"Payload": b"first of 2\n"}}  # the new version took the traffic
    assert response["ExecutedVersion"] == "$LATEST"  # unqualified, as Invoke reports it

    with pytest.raises(ClientError) as missing:
        client.invoke_with_response_stream(FunctionName="streamer", Qualifier="9", Payload=b"{}")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert isinstance(missing.value, client.exceptions.ResourceNotFoundException)


def test_the_size_limit_stops_a_runaway_stream_with_a_clear_error(platform, tmp_path):
    deploy_streamer(platform, tmp_path)
    client = lambda_client(platform)
    response = client.invoke_with_response_stream(FunctionName="streamer", Payload=json.dumps({"mode": "runaway"}))
    events = list(response["EventStream"])
    streamed = sum(len(e["PayloadChunk"]["Payload"]) for e in events[:-1])
    assert streamed == 20 * MiB  # Lambda's 20 MB: every whole chunk that fits, none after
    complete = events[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Function.ResponseSizeTooLarge"
    limit = f"Response payload size exceeded maximum allowed payload size ({20 * MiB} bytes)."
    assert complete["ErrorDetails"] == limit

    # Joined for Invoke, the same runaway meets Invoke's 6 MB limit.
    joined = client.invoke(FunctionName="streamer", Payload=json.dumps({"mode": "runaway"}))
    assert joined["FunctionError"] == "Unhandled"
    assert json.loads(joined["Payload"].read())["errorType"] == "Function.ResponseSizeTooLarge"
