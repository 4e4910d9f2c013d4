"""The traffic commands refuse bad input before sending anything (exit 2, saying what is wrong)."""

import pytest
from fx.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traffic", "fn", "1=60", "2=60"], "weights must sum to 100, but 1=60 + 2=60 makes 120"),
        (["traffic", "fn", "1:100"], "not VERSION=PERCENT"),
        (["traffic", "fn", "1=50", "1=50"], "version 1 is given twice"),
        (["traffic", "fn", "1=150"], "between 0 and 100"),
        (["traffic", "fn", "1=100", "--sticky", "ip"], "'header:<name>' or 'cookie:<name>'"),
        (["traffic", "fn", "1=100", "--sticky", "query:x"], "'header:<name>' or 'cookie:<name>'"),
        (["alias", "fn", "123", "1"], "alias '123' is invalid"),
        (["alias", "fn", "live"], "give either a VERSION"),
        (["alias", "fn", "live", "2", "--delete"], "give either a VERSION"),
        (["promote", "fn", "2", "--step", "10", "--interval", "soon"], "--interval 'soon'"),
        (["promote", "fn", "2", "--max-error-rate", "0.1"], "needs a stepwise promote"),
        (["promote", "fn", "2", "--step", "0"], "step"),
        (["promote", "fn", "2", "--interval", "1m"], "--interval needs --step PERCENT"),
    ],
)
def test_bad_traffic_input_is_exit_2_and_nothing_is_sent(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("FX_GATEWAY", "http://127.0.0.1:9")  # nothing listens there: a call would be exit 1
    monkeypatch.setenv("FX_TOKEN", "t")
    assert main(argv) == 2
    assert message in capsys.readouterr().err
