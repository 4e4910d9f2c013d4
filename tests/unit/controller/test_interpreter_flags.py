"""fx-controller --interpreter / FX_INTERPRETERS: named interpreters per runtime, a malformed one refused."""

from __future__ import annotations

import pytest
from fx_controller.settings import parse


def test_flags_and_the_variable_name_interpreters_and_a_flag_wins() -> None:
    env = {"FX_INTERPRETERS": "python3.13=/b/python3.13, python3.12=/env/python3.12"}
    settings = parse(["--interpreter", "python3.12=/flag/python3.12"], env)
    assert settings.interpreters == {"python3.13": "/b/python3.13", "python3.12": "/flag/python3.12"}
    assert parse([], {}).interpreters == {}


@pytest.mark.parametrize(("argv", "env"), [(["--interpreter", "python3.12"], {}), ([], {"FX_INTERPRETERS": "py=/x"})])
def test_a_malformed_interpreter_exits_2_naming_the_form(argv, env, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        parse(argv, env)
    assert e.value.code == 2
    assert "--interpreter or FX_INTERPRETERS" in capsys.readouterr().err
