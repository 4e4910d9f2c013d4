"""SAM templates read as fx functions: AWS's samples map whole, and what fx cannot honour is listed by name."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from fx import sam
from fx.cli import main

from tests.integration.sam_templates import hello_world, scheduled

pytestmark = pytest.mark.usefixtures("isolated")
ARCH = "x86_64" if platform.machine() in ("x86_64", "AMD64") else "arm64"


def test_hello_world_maps_whole(tmp_path: Path) -> None:
    template = sam.load(hello_world(tmp_path))
    [fn] = template.functions
    assert fn.name == "hello-world-function" and fn.code_dir == tmp_path / "hello_world"
    spec = fn.spec("sha256:" + "0" * 64)
    assert (spec.handler, spec.runtime, spec.timeout, spec.http.event) == ("app.lambda_handler", "python3.11", 3, "v1")
    assert (
        "HelloWorldFunction: Events.HelloWorld (Api GET /hello) -> route GET /hello, and"
        " /function/hello-world-function/hello" in template.notes
    )
    # Its Api event is a route at the gateway's root too, as on AWS: an API named after the folder (the stack).
    [api] = template.apis
    assert api.name == tmp_path.name.lower().replace("_", "-") or api.name == "sam-app"
    route = api.routes["GET /hello"]
    assert (route.function, route.payload) == ("hello-world-function", "1.0")


def routed(tmp_path: Path, paths: dict[str, str]) -> Path:
    """A template of one function per (logical id, HttpApi GET path)."""
    (tmp_path / "src").mkdir(exist_ok=True)
    resources = "".join(
        f"""\
  {logical_id}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Runtime: python3.11
      Events:
        Get:
          Type: HttpApi
          Properties:
            Path: "{path}"
            Method: get
"""
        for logical_id, path in paths.items()
    )
    (tmp_path / "template.yaml").write_text(f"Transform: AWS::Serverless-2016-10-31\nResources:\n{resources}")
    return tmp_path / "template.yaml"


def test_the_same_route_in_two_functions_or_a_path_api_gateway_cannot_route_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sam.TemplateRefused) as err:
        sam.load(routed(tmp_path, {"One": "/items/{id}", "Two": "/items/{item}"}))
    expected = "Resources.Two.Properties.Events.Get: routes 'GET /items/{id}' and 'GET /items/{item}' are the same"
    assert expected in str(err.value)
    with pytest.raises(sam.TemplateRefused) as err:
        sam.load(routed(tmp_path, {"One": "/files/{name}.txt"}))
    assert "Resources.One.Properties.Events.Get: path '/files/{name}.txt': segment '{name}.txt'" in str(err.value)


def test_a_path_the_gateway_keeps_stays_under_function_name_only(tmp_path: Path) -> None:
    template = sam.load(routed(tmp_path, {"Health": "/healthz", "Items": "/items"}))
    [api] = template.apis
    assert list(api.routes) == ["GET /items"]
    note = (
        "Health: Events.Get (HttpApi GET /healthz) -> /function/health/healthz only: the gateway serves /healthz itself"
    )
    assert note in template.notes


def test_scheduled_function_maps_to_a_schedule_trigger(tmp_path: Path) -> None:
    [fn] = sam.load(scheduled(tmp_path)).functions
    spec = fn.spec("sha256:" + "0" * 64)
    assert fn.name == "scheduled-function" and (spec.memory, spec.timeout) == (128, 10)
    assert [t.schedule for t in spec.triggers] == ["rate(1 minute)"]


def test_streams_aliases_and_linear_shifting(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "template.yaml").write_text(
        f"""\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.11
    MemorySize: 256
Resources:
  OrderWorker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Architectures: [{ARCH}]
      Policies: [AmazonSQSFullAccess]
      AutoPublishAlias: live
      DeploymentPreference: {{Type: Linear10PercentEvery1Minute}}
      Environment: {{Variables: {{STAGE: prod, RETRIES: 3}}}}
      Events:
        Queue:
          Type: SQS
          Properties: {{Queue: !GetAtt Orders.Arn, BatchSize: 10, MaximumBatchingWindowInSeconds: 2}}
        Clicks:
          Type: Kinesis
          Properties: {{Stream: 'arn:aws:kinesis:us-east-1:1:stream/clicks', StartingPosition: TRIM_HORIZON,
                       MaximumRetryAttempts: 2}}
"""
    )
    template = sam.load(tmp_path / "template.yaml")
    [fn] = template.functions
    spec = fn.spec("sha256:" + "0" * 64)
    assert spec.memory == 256 and spec.env == {"STAGE": "prod", "RETRIES": "3"}
    queue, clicks = (t.jetstream for t in spec.triggers)
    assert (queue.stream, queue.batch, queue.window_ms) == ("Orders", 10, 2000)
    assert (clicks.stream, clicks.max_deliver) == ("clicks", 3)
    assert template.rollouts["order-worker"] == sam.Rollout(alias="live", step=10, interval_s=60.0)
    assert "OrderWorker: Policies: no effect on fx, ignored" in template.notes


def test_what_fx_cannot_honour_is_listed_and_nothing_is_deployed(tmp_path: Path, capsys) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "template.yaml").write_text(
        """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Runtime: python3.9
      Layers: [!Ref Deps]
      Environment: {Variables: {TABLE: !Ref Table}}
      DeploymentPreference: {Type: Canary10Percent5Minutes}
      Events:
        Upload: {Type: S3, Properties: {Bucket: !Ref Bucket}}
"""
    )
    code = main(["deploy", "-f", str(tmp_path / "template.yaml"), "--gateway", "http://127.0.0.1:9", "--token", "t"])
    assert code == 2
    errors = capsys.readouterr().err
    for expected in [
        "template.yaml: Resources.Table: AWS::DynamoDB::Table: fx deploys AWS::Serverless::Function resources only",
        "Resources.Api.Properties.Layers: fx has no such setting",
        "Resources.Api.Properties.Environment.Variables.TABLE: Ref is not resolved by fx; write the value",
        "Resources.Api.Properties.DeploymentPreference.Type: Canary10Percent5Minutes:",
        "Resources.Api.Properties.Events.Upload: event type S3:",
        "nothing was deployed",
    ]:
        assert expected in errors
    assert "Traceback" not in errors


def test_a_malformed_function_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Odd:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: ., Handler: app.handler, Environment: [A, B],\n"
        "      Events: {Q: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn, BatchSize: many}}}}\n"
    )
    with pytest.raises(sam.TemplateRefused) as refused:
        sam.load(tmp_path / "template.yaml")
    assert "Resources.Odd: not shaped as SAM's function" in str(refused.value)
