"""Every command the docs tell a user to type works as written: README.md, examples/*/README.md, and `fx up`'s hints.

Each document gets a fresh platform started as the README starts it (`fx up --examples examples`, from a
folder holding a copy of examples/, on a free port), with `fx` on PATH from this venv and HOME (so the
fx config and every cache) in a temporary folder; the build cache (FX_CACHE_DIR) is shared between the
documents so the examples' dependencies are installed once. Then its marked blocks run, in order.

The rules (fx/docblocks.py reads the blocks, the same code `fx up` prints its hints with):

- A block is marked by `<!-- fx-doc-test -->` on the line before its ```sh fence (`<!-- fx-doc-test try -->`
  in examples/X/README.md: also the commands `fx up` prints to try that example). A block that cannot
  run here says why instead, `<!-- fx-doc-test skip: REASON -->`: commands that need a Kubernetes
  cluster (the Helm section) or a tool fx does not install. A ```sh block with neither fails the test.
- Each line is a command (a trailing `\\` continues it), run by `bash -c` with a timeout (COMMAND_TIMEOUT),
  stdin the line `fx-doc-test` (for `KEY=-` values), and must exit 0. Blank and comment-only lines are
  skipped. Each block starts in the folder `fx up` was started from (the repository's root for a user);
  a `cd` carries over to the next commands of the same block; variables do not.
- Expected output: the text after `→` in the command's comment (`# → version 2` or `# deploys it → version
  2`) must appear in its stdout or stderr. `→ eventually: TEXT` reruns the command (up to EVENTUALLY
  seconds) until TEXT shows, for what happens after the command returns (a triggered function's log).
- The README's gateway (`127.0.0.1:8080` or `localhost:8080`, with or without `http://`) is replaced by
  the test platform's.
- Long-running commands are not run, only checked: `make TARGET` (make up, make test) runs as
  `make -n TARGET` in the repository; `fx up ...`, `fx logs ... -f` and `fx local api` are recognised by the CLI's own
  argument parser, which must accept every flag and argument as written (what `fx up --help` documents).

Contributing: put a README command in a marked block and run
`.venv/bin/python -m pytest tests/integration/test_docs.py -q` (see tests/integration/README.md).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fx import docblocks
from fx.cli import _parser
from fx.cli.local import cmd_api
from fx.cli.up import cmd_up

from tests.integration.helpers import up_hints
from tests.loopback import free_port
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "examples").glob(f"*/{docblocks.README}"))]
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 180  # a first deploy may install dependencies
EVENTUALLY = 30
STDIN = "fx-doc-test\n"
EVENTUALLY_PREFIX = "eventually:"


@dataclass
class Session:
    """A fresh `fx up` and the environment a user's shell would have next to it."""

    root: Path  # where fx up runs: the repository's root to the docs
    env: dict[str, str]
    gateway_url: str
    hints: list[docblocks.Command]  # what fx up printed to try the examples
    log: Path

    def run(self, command: str, cwd: Path) -> tuple[subprocess.CompletedProcess, Path]:
        """Run one command as typed into bash in cwd; return its result and the folder it ended in."""
        where = cwd / ".fx-doc-test-pwd"
        script = f'{command}\n__rc=$?\npwd > "{where}"\nexit $__rc\n'
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=self.env,
            input=STDIN,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        ended = Path(where.read_text().strip()) if where.is_file() else cwd
        where.unlink(missing_ok=True)
        return done, ended


@pytest.fixture(scope="module")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fx-cache")


@pytest.fixture
def session(tmp_path: Path, build_cache: Path) -> Iterator[Session]:
    root, home = tmp_path / "repo", tmp_path / "home"
    home.mkdir()
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__", ".fx"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FX_") and k != "VIRTUAL_ENV"}
    env.update(
        HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", FX_CACHE_DIR=str(build_cache)
    )
    port, log = free_port(), tmp_path / "fx-up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            ["fx", "up", "--examples", "examples", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: "Ctrl-C stops fx" in log.read_text() or up.poll() is not None, 300, "fx up to be ready")
        assert up.poll() is None, f"fx up exited {up.returncode}:\n{log.read_text()}"
        yield Session(root, env, f"http://127.0.0.1:{port}", up_hints(log.read_text()), log)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def _check_long_running(command: str) -> bool:
    """Check a command that would not return (`make`, `fx up`, `fx logs -f`, `fx local api`) without running it;
    False: run it."""
    words = shlex.split(command, comments=True)
    if words[:1] == ["make"]:
        dry = subprocess.run(["make", "-n", "-C", str(REPO), *words[1:]], capture_output=True, text=True)
        assert dry.returncode == 0, f"{command!r}: `make -n` fails:\n{dry.stderr}"
        return True
    if words[:1] != ["fx"]:
        return False
    try:
        args = _parser().parse_args(words[1:])
    except SystemExit:
        return False  # not one fx command (e.g. `fx init x && cd x`), or refused: running it tells which
    return args.run in (cmd_up, cmd_api) or bool(getattr(args, "follow", False))


def _run_commands(session: Session, commands: list[docblocks.Command], where: str) -> int:
    """Run the commands in order, in one shell's folder; assert each as the module docstring says."""
    cwd, ran = session.root, 0
    for command in commands:
        text = docblocks.localize(command.text, session.gateway_url)
        if _check_long_running(text):
            continue
        expect, eventually = command.expect, False
        if expect and expect.startswith(EVENTUALLY_PREFIX):
            expect, eventually = expect.removeprefix(EVENTUALLY_PREFIX).strip(), True
        deadline = time.monotonic() + EVENTUALLY
        while True:
            done, ended = session.run(text, cwd)
            output = done.stdout + done.stderr
            if done.returncode or not expect or expect in output or not eventually or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        context = (
            f"{where}:{command.line}: {text}\nexit {done.returncode}; stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        assert done.returncode == 0, context
        assert not expect or expect in output, f"expected {expect!r} in the output of {context}"
        cwd, ran = ended, ran + 1
    return ran


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_shell_block_is_marked_or_says_why_not(doc: Path) -> None:
    lines = docblocks.unmarked(doc.read_text())
    assert not lines, (
        f"{doc.relative_to(REPO)}: the ```sh blocks at lines {lines} are not run: mark each with"
        " <!-- fx-doc-test --> on the line before, or <!-- fx-doc-test skip: REASON --> if it cannot run here"
    )


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_marked_command_works_as_written(doc: Path, session: Session) -> None:
    blocks = docblocks.blocks(doc.read_text())
    assert blocks, f"{doc}: no <!-- fx-doc-test --> block: mark the commands a user is meant to type"
    ran = sum(_run_commands(session, b.commands, str(doc.relative_to(REPO))) for b in blocks)
    assert ran, f"{doc}: every marked command is long-running; nothing was run"


def test_every_command_fx_up_prints_works(session: Session) -> None:
    commands = session.hints
    # The examples' READMEs declare theirs: create-user is shown with a body it accepts, not a generic call.
    assert any("create-user" in c.text and "email" in c.text for c in commands), session.hints
    assert not any("runs on events" in c.text for c in commands)  # signup's README speaks for both functions
    assert _run_commands(session, commands, "fx up's hints") == len(commands)
