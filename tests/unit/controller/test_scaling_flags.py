"""fx-controller's autoscaling flags: Knative's defaults, set by flag or FX_* variable, out-of-range values refused."""

from __future__ import annotations

import pytest
from fx_controller.settings import parse


def test_defaults_are_knative_s_but_the_window_sized_for_a_laptop() -> None:
    s = parse([], {})
    knobs = (s.stable_window, s.panic_window_percentage, s.panic_threshold_percentage)
    assert (*knobs, s.max_scale_up_rate, s.max_scale_down_rate, s.scale_down_delay) == (10, 10, 200, 1000, 2, 0)


def test_flags_and_variables_set_them() -> None:
    s = parse(["--max-scale-down-rate", "4", "--scale-down-delay", "30"], {"FX_PANIC_THRESHOLD_PERCENTAGE": "300"})
    assert (s.max_scale_down_rate, s.scale_down_delay, s.panic_threshold_percentage) == (4, 30, 300)


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--max-scale-down-rate", "1"], {}, "--max-scale-down-rate 1 is out of range: give a value from 1.01 to"),
        ([], {"FX_PANIC_WINDOW_PERCENTAGE": "0"}, "--panic-window-percentage 0 is out of range: give a value from 1"),
        (["--scale-down-delay", "-1"], {}, "--scale-down-delay -1 is out of range"),
    ],
)
def test_an_out_of_range_knob_exits_2_naming_flag_and_range(argv, env, named, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        parse(argv, env)
    assert e.value.code == 2
    assert named in capsys.readouterr().err
