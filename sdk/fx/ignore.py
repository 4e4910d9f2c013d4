"""Which files of a function's folder ship: `.gitignore` and `.fxignore` rules, fixed excludes, no `.env*`.

Rules files are read in the function's folder and in each folder above it up to the project's (where
fx.yaml is), outer first, `.gitignore` before `.fxignore`; the last rule that matches a path decides, so
`.fxignore` can re-include (`!build/keep.txt`) what `.gitignore` leaves out. `.env*` files hold secrets:
they never ship unless an `.fxignore` negation lists them (`!.env.production`).
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

EXCLUDED_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules", ".fx", ".pytest_cache", ".mypy_cache"})
RULE_FILES = (".gitignore", ".fxignore")
NEVER_SHIPPED = ".env*"  # fnmatch pattern on a file name, anywhere in the tree
ENV_REASON = ".env never shipped"


@dataclass(frozen=True)
class _Rules:
    base: Path  # the folder the patterns are relative to
    source: str  # ".gitignore" or ".fxignore"
    spec: pathspec.GitIgnoreSpec


@dataclass
class Selection:
    """The files to ship (relative posix path -> file) and how many were left out, by reason."""

    files: dict[str, Path] = field(default_factory=dict)
    left_out: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str | None:
        """`3 files ignored (.fxignore, .gitignore; .env never shipped)`, or None when nothing a user wrote
        (a rule, a .env file) left anything out."""
        count = sum(self.left_out.values())
        if not count:
            return None
        rules = ", ".join(sorted(r for r in self.left_out if r != ENV_REASON))
        reasons = "; ".join(r for r in (rules, ENV_REASON if ENV_REASON in self.left_out else "") if r)
        return f"{count} file{'s' if count != 1 else ''} ignored ({reasons})"


def select(code_dir: Path, project_dir: Path | None = None, top_excludes: frozenset[str] = frozenset()) -> Selection:
    """Walk `code_dir`, keeping what the rules ship; `top_excludes` are names left out at its top silently."""
    rules = _load_rules(code_dir, project_dir or code_dir)
    selection = Selection()
    for folder, dirs, names in os.walk(code_dir):
        here = Path(folder)
        kept_dirs = []
        for d in sorted(dirs):
            if d in EXCLUDED_DIRS:
                continue
            reason = _rule_reason(rules, here / d, is_dir=True)
            if reason:
                selection.left_out[reason] += _count_files(here / d)
            else:
                kept_dirs.append(d)
        dirs[:] = kept_dirs
        for name in names:
            path = here / name
            if name in RULE_FILES or name.endswith(".pyc") or not path.is_file():
                continue
            if here == code_dir and name in top_excludes:
                continue
            reason = _file_reason(rules, path)
            if reason:
                selection.left_out[reason] += 1
            else:
                selection.files[path.relative_to(code_dir).as_posix()] = path
    return selection


def _load_rules(code_dir: Path, project_dir: Path) -> list[_Rules]:
    folders = [code_dir]
    if code_dir.is_relative_to(project_dir):
        folder = code_dir
        while folder != project_dir:
            folder = folder.parent
            folders.append(folder)
    rules = []
    for folder in reversed(folders):
        for source in RULE_FILES:
            path = folder / source
            if path.is_file():
                lines = path.read_text(errors="replace").splitlines()
                rules.append(_Rules(folder, source, pathspec.GitIgnoreSpec.from_lines(lines)))
    return rules


def _decision(rules: list[_Rules], path: Path, is_dir: bool) -> tuple[bool | None, str]:
    """(True: ignored, False: re-included by a negation, None: no rule matches; the deciding rules file)."""
    decision: bool | None = None
    source = ""
    for r in rules:
        rel = path.relative_to(r.base).as_posix() + ("/" if is_dir else "")
        include = r.spec.check_file(rel).include
        if include is not None:
            decision, source = include, r.source
    return decision, source


def _rule_reason(rules: list[_Rules], path: Path, is_dir: bool) -> str | None:
    ignored, source = _decision(rules, path, is_dir)
    return source if ignored else None


def _file_reason(rules: list[_Rules], path: Path) -> str | None:
    ignored, source = _decision(rules, path, is_dir=False)
    if ignored:
        return source
    if fnmatch.fnmatch(path.name, NEVER_SHIPPED) and not (ignored is False and source == ".fxignore"):
        return ENV_REASON
    return None


def _count_files(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))
