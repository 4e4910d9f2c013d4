"""The sandbox's pure parts: which host paths a replica sees (the mount plan) and where its cgroups are."""

from __future__ import annotations

from pathlib import Path

from fx_runtime.sandbox import cgroups as sandbox_cgroups
from fx_runtime.sandbox import mounts as sandbox_mounts
from fx_runtime.sandbox.mounts import LAYER_ROOT, TASK_ROOT, Mount, base_plan, function_plan, python_roots


def test_python_roots_never_hold_or_sit_in_a_hidden_path(tmp_path: Path):
    venv, base, repo = tmp_path / "repo" / ".venv", tmp_path / "pyenv" / "3.11", tmp_path / "repo"
    for d in (venv / "lib", base / "lib", repo / "runtime-images"):
        d.mkdir(parents=True)
    state = repo / ".fx"
    paths = [str(venv), str(venv / "lib"), str(base), str(base / "lib"), str(repo), str(repo / "runtime-images")]
    paths += ["", "relative/dir", "/usr/lib/python3", "/"]
    roots = python_roots(paths, hidden=[str(state), str(state / "admin-token")])
    # the repo holds the state dir: only its harmless subdirectories are bound; nested paths collapse
    assert roots == [str(base), str(venv), str(repo / "runtime-images")]
    assert python_roots([str(state / "code")], hidden=[str(state)]) == []


def test_the_plan_binds_system_and_code_read_only_and_only_the_private_dir_and_tmp_are_writable():
    system = {"/usr": None, "/bin": "usr/bin", "/lib": "usr/lib", "/etc": None}
    mounts = base_plan(512, system, ["/opt/python"]) + function_plan("/state/code/abc", "/run/fx-1/hello")
    by_target = {m.target: m for m in mounts}
    assert by_target["/usr"] == Mount("bind", "/usr", "/usr")
    assert by_target["/bin"] == Mount("symlink", "/bin", "usr/bin")
    assert by_target[TASK_ROOT].source == "/state/code/abc" and not by_target[TASK_ROOT].writable
    assert by_target["/opt/python"].kind == "bind" and not by_target["/opt/python"].writable
    writable = {m.target for m in mounts if m.kind == "bind" and m.writable}
    assert writable == {"/run/fx-1/hello"} | {f"/dev/{d}" for d in sandbox_mounts.DEVICES}
    assert by_target["/tmp"].kind == "tmpfs" and "size=512m" in by_target["/tmp"].data
    assert by_target["/proc"].kind == "proc"
    # nothing of the state dir but the code, and a parent directory always comes before what is in it
    assert not [m for m in mounts if m.source.startswith("/state") and m.target != TASK_ROOT]
    targets = [m.target for m in mounts]
    assert targets.index("/dev") < targets.index("/dev/null") < targets.index("/dev/shm")


def test_a_dependency_layer_is_bound_read_only_apart_from_the_code():
    plain = function_plan("/state/code/abc", "/run/fx-1/hello")
    assert LAYER_ROOT not in {m.target for m in plain}
    layered = {m.target: m for m in function_plan("/state/code/abc", "/run/fx-1/hello", "/state/code/def")}
    assert layered[LAYER_ROOT] == Mount("bind", LAYER_ROOT, "/state/code/def")
    assert not layered[LAYER_ROOT].writable and layered[TASK_ROOT].source == "/state/code/abc"


def test_system_entries_keep_links_as_links(tmp_path: Path):
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "bin").symlink_to("usr/bin")
    assert sandbox_mounts.system_entries(str(tmp_path)) == {"/usr": None, "/bin": "usr/bin", "/etc": None}


PROC_CGROUP_V1 = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/37ae\n0::/\n"
MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:10 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw
33 25 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu
"""


def test_v1_hierarchies_are_used_inside_our_own_cgroup_when_cgroup2_has_no_controllers():
    found = sandbox_cgroups.find("fx-abc", PROC_CGROUP_V1, MOUNTINFO, {"/sys/fs/cgroup/unified": ""})
    assert found == [
        sandbox_cgroups.Hierarchy(1, frozenset({"memory"}), "/sys/fs/cgroup/memory/process_api/37ae/fx-abc"),
        sandbox_cgroups.Hierarchy(1, frozenset({"pids"}), "/sys/fs/cgroup/pids/fx-abc"),
    ]


def test_cgroup2_with_memory_and_pids_wins():
    controllers = {"/sys/fs/cgroup/unified": "cpu memory pids io\n"}
    proc = PROC_CGROUP_V1.replace("0::/", "0::/system.slice/fx.service")
    found = sandbox_cgroups.find("fx-abc", proc, MOUNTINFO, controllers)
    base = "/sys/fs/cgroup/unified/system.slice/fx.service/fx-abc"
    assert found == [sandbox_cgroups.Hierarchy(2, frozenset({"memory", "pids"}), base)]


def test_a_replica_cgroup_is_made_limited_and_removed(tmp_path: Path):
    """On a plain directory standing in for a cgroup v2 hierarchy: the files fx writes, and the cleanup."""
    h = sandbox_cgroups.Hierarchy(2, frozenset({"memory", "pids"}), str(tmp_path / "fx-abc"))
    (tmp_path / "fx-abc" / "r1").mkdir(parents=True)
    for name in ("memory.max", "pids.max", "cgroup.procs"):
        (tmp_path / "fx-abc" / "r1" / name).write_text("")
    cg = sandbox_cgroups.create([h], "r1", 64)
    assert (tmp_path / "fx-abc" / "r1" / "pids.max").read_text() == "64"
    assert (tmp_path / "fx-abc" / "r1" / "memory.max").read_text() == ""  # until it has a function
    cg.set_memory(256)
    assert (tmp_path / "fx-abc" / "r1" / "memory.max").read_text() == str(256 << 20)
    cg.raise_limit(sandbox_cgroups.OOM_RESERVE_BYTES)
    raised = (256 << 20) + sandbox_cgroups.OOM_RESERVE_BYTES
    assert (tmp_path / "fx-abc" / "r1" / "memory.max").read_text() == str(raised)
    assert not cg.remove()  # a real cgroup directory has only kernel files; this one has ours, so it stays
