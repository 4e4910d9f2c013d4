"""Per-function uids, and the start-up report of the protections in force."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fx_controller.backends.local_sandbox import SandboxSettings, UidMap, instance, parse_uid_range, report


def test_each_function_gets_its_own_uid_kept_across_restarts(tmp_path: Path):
    path = tmp_path / "sandbox-uids.json"
    uids = UidMap(path, (1000, 1002))
    assert [uids.uid("a"), uids.uid("b"), uids.uid("a")] == [1000, 1001, 1000]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = UidMap(path, (1000, 1002))  # a restarted controller
    assert [again.uid("b"), again.uid("c")] == [1001, 1002]
    with pytest.raises(RuntimeError, match="no free uid left in 1000-1002"):
        again.uid("d")
    assert json.loads(path.read_text()) == {"a": 1000, "b": 1001, "c": 1002}


def test_a_uid_outside_a_new_range_is_replaced(tmp_path: Path):
    path = tmp_path / "sandbox-uids.json"
    UidMap(path, (1000, 1009)).uid("a")
    assert UidMap(path, (2000, 2009)).uid("a") == 2000


@pytest.mark.parametrize("bad", ["", "100000", "0-10", "10-5", "a-b", "1-4294967295"])
def test_bad_uid_ranges_are_refused(bad: str):
    with pytest.raises(ValueError, match="uid range"):
        parse_uid_range(bad)


def test_instances_have_distinct_stable_names(tmp_path: Path):
    assert instance(tmp_path / "a") == instance(tmp_path / "a") != instance(tmp_path / "b")
    assert instance(tmp_path / "a").startswith("fx-") and len(instance(tmp_path / "a")) == 11


def test_the_report_says_what_is_on_and_what_is_off_and_why():
    off = report("off", None, None)
    assert off[0] == "function sandbox: OFF (--sandbox off)"
    if os.geteuid() != 0:
        assert "not root" in report("auto", None, None)[0]
    settings = SandboxSettings((100000, 165535), 512, 256)
    on = report("auto", settings, {"namespaces": True, "limits": {"memory": 1, "pids": 1}, "oom_answer": True})
    assert on[0].startswith("function sandbox: ON (uids 100000-165535")
    assert any("Runtime.OutOfMemory" in line for line in on) and not any("OFF" in line for line in on)
    partial = report("auto", settings, {"namespaces": False, "namespaces_error": "unshare: EPERM", "limits": {}})
    assert any("namespaces: OFF (unshare: EPERM)" in line for line in partial)
    assert any("memory limit: OFF" in line for line in partial)
    assert any("process limit: OFF" in line for line in partial)
