"""The state dir's lock and its one-line errors."""

import errno
import os
import stat
from pathlib import Path

import pytest
from fx import state_dir
from fx.state_dir import StateDirError


def test_one_holder_at_a_time_and_the_refusal_names_it(tmp_path):
    fd = state_dir.acquire(tmp_path / "s", "fx up")
    with pytest.raises(StateDirError, match=rf"in use by PID {os.getpid()} \(fx up\)"):
        state_dir.acquire(tmp_path / "s", "fx-controller")
    state_dir.release(fd)
    state_dir.release(state_dir.acquire(tmp_path / "s", "fx-controller"))


def test_a_controller_adopts_the_lock_its_launcher_passed_down(tmp_path):
    fd = state_dir.acquire(tmp_path, "fx up")
    inherited = os.dup(fd)  # what the child sees: the same open file, so the same lock
    assert state_dir.adopt(tmp_path, "fx-controller", str(inherited)) == inherited
    assert not os.get_inheritable(inherited), "the zygote and replicas must not inherit the lock"
    state_dir.release(fd)
    state_dir.release(inherited)


def test_an_fd_that_is_not_the_lock_file_is_not_trusted(tmp_path):
    holder = state_dir.acquire(tmp_path, "fx up")
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
    with pytest.raises(StateDirError, match="in use by"):
        state_dir.adopt(tmp_path, "fx-controller", str(other))
    with pytest.raises(StateDirError, match="in use by"):
        state_dir.adopt(tmp_path, "fx-controller", "not-a-number")
    for fd in (holder, other):
        os.close(fd)


@pytest.mark.parametrize(
    ("code", "told"),
    [
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "no permission"),
        (errno.ENOSPC, "is full"),
        (errno.ENOTDIR, "Not a directory"),
    ],
)
def test_an_unusable_state_dir_is_one_line_with_the_fix(tmp_path, code, told):
    message = str(state_dir.unusable(tmp_path, OSError(code, os.strerror(code), str(tmp_path / "lock"))))
    assert told in message and str(tmp_path) in message and "--state-dir" in message and "\n" not in message


def test_a_lock_file_planted_as_a_symlink_is_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "lock").symlink_to(precious)
    with pytest.raises(StateDirError, match="cannot use the state dir"):
        state_dir.acquire(tmp_path / "state", "fx up")
    assert precious.read_text() == "keep me\n"


def test_a_folder_of_the_state_dir_is_made_and_kept_the_operators_alone(tmp_path: Path):
    made = state_dir.private(tmp_path / "state" / "logs")
    older = tmp_path / "state" / "code"
    older.mkdir(mode=0o755)  # as fx made it before
    state_dir.private(older)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (made, older)] == [0o700, 0o700]
