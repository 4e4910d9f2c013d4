"""The shell commands of marked README blocks: what `fx up` prints to try an example, what the doc test runs.

A marked block is a ```sh fence right after the line `<!-- fx-doc-test -->`; `<!-- fx-doc-test try -->`
marks it also as the try-it commands `fx up --examples` prints for the functions of that README's folder;
`<!-- fx-doc-test skip: REASON -->` says why a block cannot run (e.g. it needs a Kubernetes cluster).
In a block, each line is a command (a trailing backslash continues it on the next line); blank and
comment-only lines are skipped; in the comment after a command, the text after `→` (`# → text`, or
`# what it does → text`) is text its output must contain. READMEs address the local gateway as
`127.0.0.1:8080` or `localhost:8080` (with or without `http://`); `localize` points such a command at
another gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = "README.md"
_MARK = re.compile(r"\s*<!--\s*fx-doc-test(?P<try_it>\s+try)?\s*-->\s*")
_SKIP = re.compile(r"\s*<!--\s*fx-doc-test\s+skip:\s*\S.*-->\s*")
_FENCE = re.compile(r"\s*```(sh|bash|shell)\s*")
_EXPECT = re.compile(r"\s#.*→\s*(?P<text>.+?)\s*$")
_LOCAL = re.compile(r"(?:https?://)?(?:localhost|127\.0\.0\.1):8080(?!\d)")


@dataclass(frozen=True)
class Command:
    text: str  # as written, comments and continuation backslashes included
    expect: str | None  # text its output must contain, from its comment's `→ text`
    line: int  # 1-based, in the README


@dataclass(frozen=True)
class Block:
    commands: list[Command]
    try_it: bool
    line: int


def blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        mark = _MARK.fullmatch(line)
        if not mark:
            continue
        if i + 1 >= len(lines) or not _FENCE.fullmatch(lines[i + 1]):
            raise ValueError(f"line {i + 1}: {line.strip()} must be followed by a ```sh fence")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {i + 2}: the ```sh block is never closed")
        found.append(Block(commands(lines[i + 2 : end], first=i + 3), bool(mark["try_it"]), i + 1))
    return found


def unmarked(text: str) -> list[int]:
    """The lines of the shell blocks that are neither marked nor skipped with a reason."""
    lines = text.splitlines()
    return [
        i + 1
        for i, line in enumerate(lines)
        if _FENCE.fullmatch(line) and not (i and (_MARK.fullmatch(lines[i - 1]) or _SKIP.fullmatch(lines[i - 1])))
    ]


def commands(lines: list[str], first: int = 1) -> list[Command]:
    """The commands in the lines of a block (or of what `fx up` printed), numbered from `first`."""
    commands: list[Command] = []
    pending: list[str] = []
    for n, line in enumerate(lines, first):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        if line.rstrip().endswith("\\"):
            continue
        expect = _EXPECT.search(line)
        commands.append(Command("\n".join(pending), expect["text"] if expect else None, n - len(pending) + 1))
        pending = []
    return commands


def try_commands(folder: Path) -> list[str]:
    """The commands of the `try` blocks in folder/README.md (none without one)."""
    readme = folder / README
    if not readme.is_file():
        return []
    return [c.text for b in blocks(readme.read_text()) if b.try_it for c in b.commands]


def localize(command: str, gateway_url: str) -> str:
    """The command, sent to gateway_url instead of the README's 127.0.0.1:8080."""
    return _LOCAL.sub(gateway_url.rstrip("/"), command)
