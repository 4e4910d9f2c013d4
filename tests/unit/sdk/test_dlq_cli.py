"""`fx dlq` prints what an anonymous caller sent (an async call's body and headers, its function's error):
control characters are shown escaped, never sent to the operator's terminal."""

import json

import pytest
from fx.cli import main

ESC = "\x1b]0;owned\x07\x1b[2J\r"
LETTER = {
    "id": 7,
    "function": "hello",
    "source": "async",
    "error": f"Boom{ESC}",
    "message": f"bad{ESC}",
    "status": 500,
    "attempts": 3,
    "time": "2026-01-02T03:04:05Z",
    "call_id": f"c{ESC}",
    "headers": {"X-Note": f"hi{ESC}"},
    "body": f'{{"a": "{ESC}"}}\n\tline two',
}


LISTED = {k: v for k, v in LETTER.items() if k not in ("headers", "body")}


@pytest.fixture
def gateway(scripted, isolated, monkeypatch):
    """The scripted gateway, which the CLI calls (FX_GATEWAY, set after `isolated` clears it)."""
    handler, url = scripted
    monkeypatch.setenv("FX_GATEWAY", url)
    return handler


@pytest.mark.parametrize(("argv", "answer"), [(["dlq", "show", "7"], LETTER), (["dlq", "ls"], [LISTED])])
def test_a_letter_s_control_characters_are_printed_escaped(gateway, capsys, argv, answer):
    gateway.answer = (200, answer)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x0d" in out


def test_tab_and_newline_stay_and_json_output_is_the_letter_as_stored(gateway, capsys):
    gateway.answer = (200, LETTER)
    assert main(["dlq", "show", "7"]) == 0
    assert "\n\tline two\n" in capsys.readouterr().out
    assert main(["dlq", "show", "7", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["body"] == LETTER["body"]
