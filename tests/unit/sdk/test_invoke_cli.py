"""`fx invoke` reads its event as curl and the AWS CLI users expect: --data JSON, --data @FILE (@- stdin),
--file, or piped stdin; bad JSON or a missing file is exit 2 naming where it came from."""

import io
import json

import httpx
import pytest
from fx.cli import main
from fx.client import Client


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def read(self, *args) -> str:
        raise AssertionError("stdin is a terminal: nothing should wait for it")


@pytest.fixture
def sent(monkeypatch, tmp_path) -> list:
    """The events fx invoke sends; the fake function returns each back."""
    events: list = []

    def answer(request: httpx.Request) -> httpx.Response:
        events.append(json.loads(request.content))
        return httpx.Response(200, content=request.content)

    fake = httpx.MockTransport(answer)
    monkeypatch.setattr("fx.cli.common.Client", lambda gateway, token: Client(gateway, token, transport=fake))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ev.json").write_text('{"from": "file"}')
    (tmp_path / "bad.json").write_text("{nope")
    monkeypatch.setattr("sys.stdin", Terminal())
    return events


@pytest.mark.parametrize(
    ("argv", "stdin", "event"),
    [
        (["--data", '{"from": "flag"}'], None, {"from": "flag"}),
        (["--data", "@ev.json"], None, {"from": "file"}),
        (["-d", "@-"], '{"from": "stdin"}', {"from": "stdin"}),
        (["--file", "ev.json"], None, {"from": "file"}),
        ([], '{"from": "pipe"}', {"from": "pipe"}),
        ([], "", {}),  # < /dev/null
        ([], None, {}),  # a terminal: not read
        (["--data", '{"from": "flag"}'], '{"from": "pipe"}', {"from": "flag"}),  # the flag wins
    ],
)
def test_the_event_comes_from_the_flag_the_file_or_piped_stdin(sent, monkeypatch, capsys, argv, stdin, event):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["invoke", "fn", *argv]) == 0
    assert sent == [event]
    assert json.loads(capsys.readouterr().out) == event


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["--data", "@bad.json"], None, "fx: --data @bad.json is not valid JSON: Expecting property name"),
        (["--data", "@nope.json"], None, "fx: --data @nope.json: cannot read nope.json: No such file or directory"),
        (["--file", "nope.json"], None, "fx: --file nope.json: cannot read nope.json: No such file or directory"),
        ([], "{nope", "fx: stdin is not valid JSON"),
    ],
)
def test_bad_events_are_exit_2_naming_their_source(sent, monkeypatch, capsys, argv, stdin, message):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["invoke", "fn", *argv]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert sent == []
