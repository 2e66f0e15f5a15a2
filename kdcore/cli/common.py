"""Shared by the command modules: the usage error, the spec arguments (``--preset``, ``--config``,
``--set``) and the spec they build, and the text reports (from :mod:`kdcore.pipeline.report`).

Light at import (no torch): ``python -m kdcore --help`` builds every command's parser.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdcore.pipeline.report import ProgressPrinter, result_table  # torch-free

if TYPE_CHECKING:
    from kdcore.core.spec import ExperimentSpec

__all__ = ["ProgressPrinter", "UsageError", "add_spec_args", "result_table", "spec_from_args"]


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


def spec_from_args(args: argparse.Namespace) -> ExperimentSpec:
    from kdcore.core.spec import ExperimentSpec, SpecError
    from kdcore.presets import DEFAULT_PRESET, PresetError, load_preset

    if args.preset and args.config:
        raise UsageError("give either --preset or --config, not both")
    try:
        if args.config:
            spec = ExperimentSpec.load(args.config)
        else:
            spec = load_preset(args.preset or DEFAULT_PRESET)
        return spec.with_overrides(args.set or [])
    except (SpecError, PresetError) as exc:
        raise UsageError(str(exc)) from None


def add_spec_args(p: argparse.ArgumentParser) -> None:
    from kdcore.presets import PRESETS

    p.add_argument("--preset", help=f"preset name ({', '.join(PRESETS)})")
    p.add_argument("--config", help="experiment YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set train.lr=0.01 --set distill.losses.kd.weight=0.5")
