import argparse

import pytest
from fx.flags import env_name, option


def parser(environ: dict[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    option(p, "--hold-timeout", float, 30.0, "seconds a request may wait", environ)
    return p


def test_the_variable_is_named_after_the_flag_and_in_the_help() -> None:
    assert env_name("--max-url-bytes") == "FX_MAX_URL_BYTES"
    assert "[FX_HOLD_TIMEOUT]" in parser({}).format_help()


def test_the_flag_wins_over_the_variable_which_wins_over_the_default() -> None:
    assert parser({}).parse_args([]).hold_timeout == 30.0
    assert parser({"FX_HOLD_TIMEOUT": "5"}).parse_args([]).hold_timeout == 5.0
    assert parser({"FX_HOLD_TIMEOUT": "5"}).parse_args(["--hold-timeout", "7"]).hold_timeout == 7.0


def test_a_bad_value_in_the_variable_exits_2_naming_the_flag_and_the_value(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        parser({"FX_HOLD_TIMEOUT": "soon"}).parse_args([])
    assert exited.value.code == 2
    assert "--hold-timeout: invalid float value: 'soon'" in capsys.readouterr().err
