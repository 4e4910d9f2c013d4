"""Every command exits by the one convention (`fx --help`): 0 ok, 1 the platform or function failed, 2 bad input
(404 unknown, 409 a state that forbids it), 3 not authorised; stderr names the problem, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import RunningPlatform


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """One platform for the module: `hello` (one version, nothing to roll back), `boom` (raises), secret `db` used
    by `boom`."""
    root = tmp_path_factory.mktemp("exit-codes")
    running = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        for name, body in (("hello", "return 'hi'"), ("boom", "raise ValueError('kaboom')")):
            project = root / name
            project.mkdir()
            (project / "handler.py").write_text(f"def handler(event, context):\n    {body}\n")
            secrets = "\n    secrets: [db]" if name == "boom" else ""
            (project / "fx.yaml").write_text(f"functions:\n  {name}:\n    handler: handler.handler{secrets}\n")
            if name == "boom":
                assert running.fx("secret", "set", "db", "URL=x").returncode == 0
            deployed = running.fx("deploy", cwd=project)
            assert deployed.returncode == 0, deployed.stderr
        yield running
    finally:
        running.stop()


NOT_FOUND = [
    (["describe", "nosuch"], "nosuch"),
    (["versions", "nosuch"], "nosuch"),
    (["rm", "nosuch"], "nosuch"),
    (["logs", "nosuch"], "nosuch"),
    (["invoke", "nosuch"], "nosuch"),
    (["invoke", "hello", "-q", "7"], "7"),
    (["traffic", "nosuch", "1=100"], "nosuch"),
    (["traffic", "hello", "9=100"], "9"),
    (["alias", "nosuch", "live", "1"], "nosuch"),
    (["alias", "hello", "live", "9"], "9"),
    (["promote", "nosuch", "1"], "nosuch"),
    (["promote", "hello", "99"], "99"),
    (["rollback", "nosuch"], "nosuch"),
    (["secret", "rm", "nosuch"], "nosuch"),
]
CONFLICT = [
    (["rollback", "hello"], "NothingToRollBack"),
    (["secret", "rm", "db"], "boom"),  # a function still uses it
]


@pytest.mark.parametrize(("argv", "named"), NOT_FOUND + CONFLICT, ids=" ".join)
def test_unknown_names_and_forbidding_states_are_exit_2(deployed, argv, named):
    result = deployed.fx(*argv)
    assert result.returncode == 2, result
    assert named in result.stderr and "Traceback" not in result.stderr


# Not `invoke`: calling a function needs no admin token.
WRONG_TOKEN = [
    ["ls"],
    ["describe", "hello"],
    ["versions", "hello"],
    ["rm", "hello"],
    ["logs", "hello"],
    ["traffic", "hello", "1=100"],
    ["alias", "hello", "live", "1"],
    ["promote", "hello", "1"],
    ["rollback", "hello"],
    ["secret", "set", "other", "A=b"],
    ["secret", "ls"],
    ["secret", "rm", "db"],
    ["login"],
    ["deploy"],
]


@pytest.mark.parametrize("argv", WRONG_TOKEN, ids=" ".join)
def test_a_wrong_token_is_exit_3_for_every_command(deployed, argv):
    result = deployed.fx(*argv, cwd=deployed.state_dir.parent / "hello", env={"FX_TOKEN": "wrong"})
    assert result.returncode == 3, result
    assert "token" in result.stderr.lower() and "Traceback" not in result.stderr
    assert deployed.fx("describe", "hello").returncode == 0  # nothing was done


def test_a_failing_function_and_an_unreachable_gateway_are_exit_1(deployed):
    failed = deployed.fx("invoke", "boom")
    assert failed.returncode == 1
    assert "kaboom" in failed.stderr and "Traceback" not in failed.stderr
    unreachable = deployed.fx("ls", env={"FX_GATEWAY": "http://127.0.0.1:9"})
    assert unreachable.returncode == 1
    assert "not reachable" in unreachable.stderr


def test_success_is_exit_0(deployed):
    assert deployed.fx("invoke", "hello").stdout == "hi\n"
    assert deployed.fx("secret", "ls").returncode == 0
