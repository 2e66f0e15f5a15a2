"""The command line: ``python -m kdcore <command>`` (console script ``kdlab``).

Each command group is a module of :mod:`kdcore.cli` with a ``COMMANDS`` list of
``(name, help, (add_args, run))``; heavy dependencies (torch, the pipeline, the store) are
imported inside ``run``, so ``--help`` and ``presets`` import no torch.

Bad input (unknown preset, invalid YAML, unknown ``--set`` key or bad value) prints one line
naming the problem and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import kdcore.cli.bench as bench
import kdcore.cli.explain as explain
import kdcore.cli.methods as methods
import kdcore.cli.presets as presets
import kdcore.cli.run as run
import kdcore.cli.store_commands as store_commands
import kdcore.cli.sweep as sweep
from kdcore.cli.common import UsageError

# command order as shown by --help
_GROUPS = (run, presets, methods, sweep, explain, store_commands, bench)

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    name: (add_args, run_, help_) for group in _GROUPS for name, help_, (add_args, run_) in group.COMMANDS
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdcore", description="KD Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _, help_) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed one usage line
        return int(exc.code or 0) if exc.code in (0, None) else 2
    try:
        return COMMANDS[args.command][1](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
