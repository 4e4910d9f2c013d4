"""`fx invoke` reads its event as curl and the AWS CLI users expect: --data JSON, --data @FILE (@- stdin),
--file, or piped stdin; bad JSON or a missing file is exit 2 naming where it came from."""

import io
import json
import os
import threading

import httpx
import pytest
from fx.cli import main
from fx.client import Client


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def read(self, *args) -> str:
        raise AssertionError("stdin is a terminal: nothing should wait for it")


def piped(text: str) -> io.TextIOWrapper:
    """stdin as a pipe gives it: text over bytes."""
    return io.TextIOWrapper(io.BytesIO(text.encode()))


@pytest.fixture
def sent(monkeypatch, tmp_path) -> list:
    """The events fx invoke sends; the fake function returns each back."""
    events: list = []

    def answer(request: httpx.Request) -> httpx.Response:
        events.append(json.loads(request.content))
        return httpx.Response(200, content=request.content)

    fake = httpx.MockTransport(answer)
    monkeypatch.setattr("fx.client.Client", lambda gateway, token: Client(gateway, token, transport=fake))
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
        monkeypatch.setattr("sys.stdin", piped(stdin))
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
        monkeypatch.setattr("sys.stdin", piped(stdin))
    assert main(["invoke", "fn", *argv]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert sent == []


def test_a_binary_file_is_bad_json_not_a_traceback(sent, tmp_path, capsys):
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["invoke", "fn", "--data", "@bin"]) == 2
    assert capsys.readouterr().err.startswith("fx: --data @bin is not valid JSON")
    assert sent == []


def test_an_event_over_the_bound_is_refused_before_it_is_held(sent, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("fx.cli.invoke.EVENT_MAX_BYTES", 16)
    (tmp_path / "big.json").write_text(json.dumps({"k": "x" * 16}))
    assert main(["invoke", "fn", "--file", "big.json"]) == 2
    assert capsys.readouterr().err.startswith("fx: --file big.json: the event is over")
    monkeypatch.setattr("sys.stdin", piped(json.dumps({"k": "x" * 16})))
    assert main(["invoke", "fn"]) == 2
    assert capsys.readouterr().err.startswith("fx: stdin: the event is over")
    assert sent == []


def test_a_fifo_is_read_until_its_writer_closes(sent, tmp_path, capsys):
    fifo = tmp_path / "events"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as f:
            f.write('{"from": ')
            f.flush()
            f.write('"fifo"}')

    writer = threading.Thread(target=write)
    writer.start()
    assert main(["invoke", "fn", "--data", f"@{fifo}"]) == 0
    writer.join(5)
    assert sent == [{"from": "fifo"}]
