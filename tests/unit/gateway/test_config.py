"""fx-gateway's flags: each numeric one sets the Settings field of its name, from the flag or its FX_* variable."""

import pytest
from fx.flags import env_name
from fx_gateway.config import _LIMITS, _NUMBERS, Settings, parse


@pytest.mark.parametrize("flag", [flag for flag, *_ in (*_NUMBERS, *_LIMITS)])
def test_a_numeric_flag_and_its_variable_set_their_settings_field(flag, monkeypatch):
    field = flag.removeprefix("--").replace("-", "_")
    assert getattr(parse([]), field) == getattr(Settings, field)
    assert getattr(parse([flag, "7"]), field) == 7
    monkeypatch.setenv(env_name(flag), "9")
    assert getattr(parse([]), field) == 9
    assert getattr(parse([flag, "7"]), field) == 7  # the flag over the variable


def test_the_upstream_ca_file_must_exist(tmp_path, capsys):
    ca = tmp_path / "ca.pem"
    with pytest.raises(SystemExit) as exit_:
        parse(["--upstream-ca-file", str(ca)])
    assert exit_.value.code == 2 and "--upstream-ca-file" in capsys.readouterr().err
    ca.write_text("PEM")
    assert parse(["--upstream-ca-file", str(ca)]).upstream_ca_file == str(ca)
