"""The Lambda control-plane API on the real platform, driven as Lambda users drive it: boto3 and the `aws` CLI,
signing with an access key `fx credentials create` issued, against the gateway. Every refusal is asserted by the
exception class botocore's model gives it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import RunningPlatform
from tests.waiting import wait_for

AWS = str(Path(sys.executable).with_name("aws"))
CALLS = 400  # invocations that observe an alias's split
TOLERANCE = 8  # percentage points the observed share may miss the weight by, at CALLS calls


def code(answer: str) -> bytes:
    """A zip whose handler answers `answer` and the variable GREETING."""
    body = f"{{'v': {answer!r}, 'g': os.environ.get('GREETING')}}"
    source = f"import os\n\ndef handler(event, context):\n    return {body}\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", source)
    return buffer.getvalue()


def issue_key(platform: RunningPlatform, name: str = "tests") -> tuple[str, str]:
    done = platform.fx("credentials", "create", "--name", name, "-o", "json")
    assert done.returncode == 0, done.stderr
    issued = json.loads(done.stdout)
    return issued["access_key_id"], issued["secret_access_key"]


def lambda_client(platform: RunningPlatform, key: tuple[str, str]):
    return boto3.client(
        "lambda",
        endpoint_url=platform.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


@pytest.fixture
def aws(platform: RunningPlatform):
    return lambda_client(platform, issue_key(platform))


def create(aws, name: str, answer: str = "one", **fields):
    fields = {
        "Runtime": "python3.11",
        "Role": "arn:aws:iam::000000000000:role/any",
        "Handler": "handler.handler",
    } | fields
    return aws.create_function(FunctionName=name, Code={"ZipFile": code(answer)}, **fields)


def settled(aws, name: str) -> dict:
    """$LATEST's configuration once its update is done (Lambda's LastUpdateStatus no longer InProgress)."""

    def done():
        config = aws.get_function_configuration(FunctionName=name)
        return config if config["LastUpdateStatus"] != "InProgress" else None

    return wait_for(done, 60, f"{name} to finish its update")


def invoke(aws, name: str, **fields) -> dict:
    answer = aws.invoke(FunctionName=name, **fields)
    assert "FunctionError" not in answer, answer["Payload"].read()
    return json.loads(answer["Payload"].read())


def test_the_lambda_journey_with_boto3(platform: RunningPlatform, aws):
    made = create(aws, "journey", MemorySize=256, Timeout=5)
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert made["Version"] == "$LATEST" and made["Role"] == "arn:aws:iam::000000000000:role/any"
    assert made["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:journey"
    assert made["MemorySize"] == 256 and made["Timeout"] == 5 and made["PackageType"] == "Zip"
    assert settled(aws, "journey")["State"] == "Active"
    got = aws.get_function(FunctionName="journey")
    assert got["Configuration"]["CodeSha256"] == made["CodeSha256"] and got["Configuration"]["CodeSize"] > 0
    assert invoke(aws, "journey") == {"v": "one", "g": None}

    updated = aws.update_function_code(FunctionName="journey", ZipFile=code("two"), Publish=True)
    assert updated["Version"] == "2" and updated["CodeSha256"] != made["CodeSha256"]
    settled(aws, "journey")
    assert invoke(aws, "journey")["v"] == "two"  # unqualified: $LATEST
    assert invoke(aws, "journey", Qualifier="1")["v"] == "one"
    # Nothing changed since: publishing answers the newest version, as Lambda does.
    assert aws.publish_version(FunctionName="journey")["Version"] == "2"
    versions = aws.list_versions_by_function(FunctionName="journey")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]

    alias = aws.create_alias(
        FunctionName="journey",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    assert alias["AliasArn"].endswith(":function:journey:live")
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    assert "live → version 1 (v1:90%, v2:10%)" in platform.fx("describe", "journey").stdout  # fx sees the same split
    assert share_of_two(aws) == pytest.approx(10, abs=TOLERANCE)
    shifted = aws.update_alias(
        FunctionName="journey", Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.6}}
    )
    assert shifted["FunctionVersion"] == "1" and shifted["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.6}
    assert share_of_two(aws) == pytest.approx(60, abs=TOLERANCE)
    done = aws.update_alias(FunctionName="journey", Name="live", FunctionVersion="2", RoutingConfig={})
    assert "RoutingConfig" not in done and done["FunctionVersion"] == "2"
    assert invoke(aws, "journey", Qualifier="live")["v"] == "two"
    assert aws.get_alias(FunctionName="journey", Name="live")["FunctionVersion"] == "2"
    assert [a["Name"] for a in aws.list_aliases(FunctionName="journey")["Aliases"]] == ["live"]

    config = aws.update_function_configuration(
        FunctionName="journey", MemorySize=512, Timeout=9, Environment={"Variables": {"GREETING": "hi"}}
    )
    assert config["MemorySize"] == 512 and config["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert settled(aws, "journey")["Timeout"] == 9
    assert invoke(aws, "journey") == {"v": "two", "g": "hi"}
    by_alias = aws.get_function(FunctionName="journey", Qualifier="live")["Configuration"]
    assert by_alias["MemorySize"] == 256 and by_alias["Version"] == "2"
    assert by_alias["FunctionArn"].endswith(":journey:live")  # the alias's ARN, as Lambda answers

    aws.delete_function(FunctionName="journey", Qualifier="1")
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function(FunctionName="journey", Qualifier="1")
    with pytest.raises(aws.exceptions.ResourceConflictException):  # live names version 2
        aws.delete_function(FunctionName="journey", Qualifier="2")
    aws.delete_alias(FunctionName="journey", Name="live")
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_alias(FunctionName="journey", Name="live")
    aws.delete_function(FunctionName="journey")
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function(FunctionName="journey")
    assert platform.fx("ls").stdout.count("journey") == 0


def share_of_two(aws) -> float:
    """The percent of CALLS invocations qualified by the alias `live` that version 2 answered."""
    seen = Counter(invoke(aws, "journey", Qualifier="live")["v"] for _ in range(CALLS))
    assert set(seen) <= {"one", "two"}
    return 100 * seen["two"] / CALLS


def test_a_version_that_fails_to_initialise_is_failed_with_its_reason(platform: RunningPlatform, aws):
    create(aws, "fragile")
    assert settled(aws, "fragile")["State"] == "Active"
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("handler.py", "raise RuntimeError('no config')\n")
    aws.update_function_code(FunctionName="fragile", ZipFile=broken.getvalue())
    config = settled(aws, "fragile")
    assert config["State"] == "Failed" and config["LastUpdateStatus"] == "Failed" and config["Version"] == "$LATEST"
    assert "no config" in config["StateReason"] and config["StateReasonCode"] == "FunctionError"
    assert aws.get_function_configuration(FunctionName="fragile", Qualifier="1")["State"] == "Active"


def test_list_functions_pages_with_marker_and_max_items(platform: RunningPlatform, aws):
    names = [f"page-{i}" for i in range(7)]
    for name in names:
        create(aws, name)
    first = aws.list_functions(MaxItems=3)
    assert [f["FunctionName"] for f in first["Functions"]] == names[:3]
    second = aws.list_functions(MaxItems=3, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in second["Functions"]] == names[3:6]
    last = aws.list_functions(MaxItems=3, Marker=second["NextMarker"])
    assert [f["FunctionName"] for f in last["Functions"]] == names[6:] and "NextMarker" not in last
    pages = aws.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
    assert [f["FunctionName"] for page in pages for f in page["Functions"]] == names
    every = aws.list_functions(FunctionVersion="ALL", MaxItems=10)
    first_two = [(f["FunctionName"], f["Version"]) for f in every["Functions"][:2]]
    assert first_two == [("page-0", "$LATEST"), ("page-0", "1")]
    rest = aws.list_functions(FunctionVersion="ALL", MaxItems=10, Marker=every["NextMarker"])["Functions"]
    assert len(every["Functions"]) + len(rest) == 14
    settings = aws.get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] == 7 and settings["AccountLimit"]["CodeSizeZipped"] == 50 * 2**20
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match="MaxItems"):
        aws.list_functions(MaxItems=10_001)


def test_every_refusal_has_its_modeled_exception(platform: RunningPlatform, aws):
    create(aws, "known")
    settled(aws, "known")
    refusals = [
        (aws.exceptions.ResourceNotFoundException, "Function not found", lambda: aws.get_function(FunctionName="nope")),
        (
            aws.exceptions.ResourceNotFoundException,
            "known:7",
            lambda: aws.get_function_configuration(FunctionName="known", Qualifier="7"),
        ),
        (
            aws.exceptions.ResourceNotFoundException,
            "Alias not found",
            lambda: aws.get_alias(FunctionName="known", Name="x"),
        ),
        (aws.exceptions.ResourceConflictException, "already exist", lambda: create(aws, "known")),
        (aws.exceptions.InvalidParameterValueException, "FunctionName", lambda: create(aws, "Not_A_Label")),
        (aws.exceptions.InvalidParameterValueException, "nodejs20.x", lambda: create(aws, "n", Runtime="nodejs20.x")),
        (aws.exceptions.InvalidParameterValueException, "Timeout", lambda: create(aws, "t", Timeout=901)),
        (aws.exceptions.InvalidParameterValueException, "Layers", lambda: create(aws, "l", Layers=["arn:aws:x"])),
        (
            aws.exceptions.InvalidParameterValueException,
            "VpcConfig",
            lambda: create(aws, "v", VpcConfig={"SubnetIds": ["subnet-1"]}),
        ),
        (
            aws.exceptions.InvalidParameterValueException,
            "S3Bucket",
            lambda: aws.update_function_code(FunctionName="known", S3Bucket="my-bucket", S3Key="k.zip"),
        ),
        (
            aws.exceptions.InvalidParameterValueException,
            "ZipFile",
            lambda: aws.update_function_code(FunctionName="known", ZipFile=b"not a zip"),
        ),
        (
            aws.exceptions.InvalidParameterValueException,
            "\\$LATEST",
            lambda: aws.create_alias(FunctionName="known", Name="a", FunctionVersion="$LATEST"),
        ),
        (
            aws.exceptions.InvalidParameterValueException,
            "whole percents",
            lambda: aws.create_alias(
                FunctionName="known",
                Name="a",
                FunctionVersion="1",
                RoutingConfig={"AdditionalVersionWeights": {"2": 0.015}},
            ),
        ),
        (
            aws.exceptions.InvalidParameterValueException,
            "own version",
            lambda: aws.create_alias(
                FunctionName="known",
                Name="a",
                FunctionVersion="1",
                RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
            ),
        ),
        (
            aws.exceptions.ResourceNotFoundException,
            "function:known:2",
            lambda: aws.create_alias(
                FunctionName="known",
                Name="a",
                FunctionVersion="1",
                RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
            ),
        ),
        (
            aws.exceptions.PreconditionFailedException,
            "RevisionId",
            lambda: aws.update_function_configuration(FunctionName="known", Timeout=4, RevisionId="stale"),
        ),
        (
            aws.exceptions.InvalidParameterValueException,
            "Environment",
            lambda: aws.update_function_configuration(
                FunctionName="known", Environment={"Variables": {"AWS_LAMBDA_RUNTIME_API": "x"}}
            ),
        ),
        (
            aws.exceptions.ResourceConflictException,
            "latest",
            lambda: aws.delete_function(FunctionName="known", Qualifier="1"),
        ),
    ]
    for exception, message, call in refusals:
        with pytest.raises(exception, match=message):
            call()
    # Nothing was half-applied: one function, one version, unchanged.
    config = aws.get_function_configuration(FunctionName="known")
    assert config["Timeout"] == 3 and "Environment" not in config
    assert [f["FunctionName"] for f in aws.list_functions()["Functions"]] == ["known"]
    assert [v["Version"] for v in aws.list_versions_by_function(FunctionName="known")["Versions"]] == ["$LATEST", "1"]


def test_the_zip_size_and_the_number_of_keys_have_knobs(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FX_LAMBDA_ZIP_MAX_MB", "1")
    monkeypatch.setenv("FX_MAX_CREDENTIALS", "1")
    platform = RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json")
    try:
        aws = lambda_client(platform, issue_key(platform))
        second = platform.fx("credentials", "create")
        assert second.returncode == 2 and "--max-credentials" in second.stderr
        big = io.BytesIO()
        with zipfile.ZipFile(big, "w") as z:  # stored, not deflated: 2 MB of random bytes
            z.writestr("handler.py", "def handler(e, c):\n    return 1\n")
            z.writestr("blob.bin", os.urandom(2 * 2**20))
        with pytest.raises(aws.exceptions.RequestTooLargeException, match="--lambda-zip-max-mb"):
            aws.create_function(
                FunctionName="big",
                Runtime="python3.11",
                Role="r",
                Handler="handler.handler",
                Code={"ZipFile": big.getvalue()},
            )
        with pytest.raises(aws.exceptions.ResourceNotFoundException):
            aws.get_function(FunctionName="big")
    finally:
        platform.stop()


def test_credentials_bearer_and_bad_signatures(platform: RunningPlatform):
    key = issue_key(platform, "ci")
    listed = platform.fx("credentials", "ls")
    assert listed.returncode == 0 and key[0] in listed.stdout and "ci" in listed.stdout and key[1] not in listed.stdout
    good = lambda_client(platform, key)
    assert good.list_functions()["Functions"] == []

    refused = [
        (lambda_client(platform, (key[0], "wrong-secret")), "InvalidSignatureException"),
        (lambda_client(platform, ("FXAKNOTISSUED0000000", key[1])), "UnrecognizedClientException"),
    ]
    for client, error in refused:
        with pytest.raises(ClientError) as caught:
            client.list_functions()
        assert caught.value.response["Error"]["Code"] == error
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    url = f"{platform.gateway_url}/2015-03-31/functions"
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {platform.token}"})
    assert bearer.status_code == 200 and bearer.json() == {"Functions": []}
    anonymous = httpx.get(url)
    assert anonymous.status_code == 403
    assert anonymous.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"

    removed = platform.fx("credentials", "rm", key[0])
    assert removed.returncode == 0 and "removed" in removed.stdout
    with pytest.raises(ClientError) as caught:
        good.list_functions()
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
    gone = platform.fx("credentials", "rm", key[0])
    assert gone.returncode == 2 and key[0] in gone.stderr
    for bad in (["--aws-profile", "two words"], ["--name", "x" * 65]):
        refused = platform.fx("credentials", "create", *bad)
        assert refused.returncode == 2 and bad[0] in refused.stderr and "Traceback" not in refused.stderr
    assert "FXAK" not in platform.fx("credentials", "ls").stdout  # nothing was issued


def test_the_aws_cli_with_a_profile(platform: RunningPlatform, tmp_path: Path):
    (tmp_path / "code.zip").write_bytes(code("cli"))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws" / "credentials"),
    }
    written = platform.fx("credentials", "create", "--name", "aws-cli", "--aws-profile", "fx", env=env)
    assert written.returncode == 0 and "written to profile fx" in written.stdout, written.stderr
    assert "aws_secret_access_key" in (tmp_path / "aws" / "credentials").read_text()
    assert (tmp_path / "aws" / "credentials").stat().st_mode & 0o777 == 0o600
    assert "region = us-east-1" in (tmp_path / "aws" / "config").read_text()

    def aws_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AWS, "--profile", "fx", "--endpoint-url", platform.gateway_url, "lambda", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    made = aws_cli(
        "create-function",
        "--function-name",
        "cli",
        "--runtime",
        "python3.11",
        "--handler",
        "handler.handler",
        "--role",
        "arn:aws:iam::000000000000:role/any",
        "--zip-file",
        "fileb://code.zip",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["FunctionName"] == "cli"
    wait_for(
        lambda: json.loads(aws_cli("get-function-configuration", "--function-name", "cli").stdout)["State"] == "Active",
        60,
        "the function to be active",
    )
    listed = aws_cli("list-functions")
    assert [f["FunctionName"] for f in json.loads(listed.stdout)["Functions"]] == ["cli"]
    invoked = aws_cli("invoke", "--function-name", "cli", "out.json")
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads((tmp_path / "out.json").read_text())["v"] == "cli"
    missing = aws_cli("get-function", "--function-name", "nope")
    assert missing.returncode == 255 and "ResourceNotFoundException" in missing.stderr
    assert aws_cli("delete-function", "--function-name", "cli").returncode == 0
    assert json.loads(aws_cli("list-functions").stdout)["Functions"] == []
