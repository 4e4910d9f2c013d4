"""A multi-function deploy is validated by the server (its dry run) before anything is applied: a refusal only
the server can see names the function and its fx.yaml line, and none of the functions is deployed."""

import json

from fx import build
from fx.client import Client
from fx.models import FunctionSpec

MANIFEST = """\
functions:
  alpha:
    handler: handler.handler
  bravo:
    handler: handler.handler
    triggers:
      - jetstream:
          stream: NOSUCH
  charlie:
    handler: handler.handler
  delta:
    handler: handler.handler
    secrets: [nosuch-secret]
"""


def test_a_function_the_server_refuses_stops_the_whole_manifest_before_any_deploy(platform, tmp_path):
    project = tmp_path / "shop"
    project.mkdir()
    (project / "handler.py").write_text("def handler(event, context):\n    return 'ok'\n")
    (project / "fx.yaml").write_text(MANIFEST)

    refused = platform.fx("deploy", cwd=project)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.splitlines()
    assert "fx: fx.yaml:8: functions.bravo.triggers.0.jetstream.stream: StreamNotFound: stream 'NOSUCH'" in lines[-3]
    assert "fx.yaml:13: functions.delta.secrets.0: SecretNotFound: secret 'nosuch-secret' does not exist" in lines[-2]
    assert lines[-1] == "nothing was deployed: the server refused 2 of 4 functions"
    assert "Traceback" not in refused.stderr
    assert json.loads(platform.fx("ls", "-o", "json").stdout) == []

    # The server's dry run on its own: says what a deploy would do, and applies nothing.
    with Client(platform.gateway_url, platform.token) as fx:
        code = build.build(project, "python3.11").code.digest  # uploaded by the refused deploy
        answer = fx.validate(FunctionSpec(name="alpha", handler="handler.handler", artifact=code))
        assert answer.dry_run and answer.created and answer.version == 1
        assert fx.list_functions() == []
