"""`fx completion bash|zsh`: a shell completion script, generated from the parser by shtab.

shtab writes a static script, so a TAB costs the shell nothing; argcomplete would start fx (and import httpx and
pydantic) on every TAB.
"""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_OK, AddCommand

SHELLS = ("bash", "zsh")
HOW = """install:
  bash: fx completion bash > ~/.local/share/bash-completion/completions/fx
  zsh:  fx completion zsh > "${fpath[1]}/_fx"   (or any folder on $fpath), then start a new shell"""


def register(add: AddCommand, root: argparse.ArgumentParser) -> None:
    def cmd_completion(args: argparse.Namespace) -> int:
        import shtab

        print(shtab.complete(root, shell=args.shell), end="")
        return EXIT_OK

    completion = add("completion", cmd_completion, "print a shell completion script for bash or zsh", connects=False)
    completion.epilog = HOW
    completion.formatter_class = argparse.RawDescriptionHelpFormatter
    completion.add_argument("shell", choices=SHELLS)
