"""The admin token file: what `fx login --token "$(cat .fx/admin-token)"` will be handed."""

from __future__ import annotations

import stat
from pathlib import Path

from fx.tokens import load_or_create_token


def test_a_new_token_is_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "admin-token"
    token = load_or_create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token
    assert len(token) == 64


def test_no_token_reads_as_a_command_line_option(tmp_path: Path) -> None:
    # A URL-safe base64 token began with '-' once in 64 and `fx login --token -Xy…` failed as an unknown option.
    tokens = {load_or_create_token(tmp_path / f"t{i}") for i in range(500)}
    assert len(tokens) == 500
    assert not [t for t in tokens if t.startswith("-")]
