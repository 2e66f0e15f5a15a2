"""Command line: ``python -m kdcore run|presets|methods|sweep|explain|runs|resume|export|delete|
import-data|bench`` (console script ``kdlab``). One module per command group; :mod:`kdcore.cli.main`
assembles the parser. Importing this package loads no torch.

``kdcore.cli.main`` is the *function* (the console script's target, ``kdcore.cli:main``); the module
of the same name is reached with ``from kdcore.cli.main import build_parser`` or ``sys.modules``."""

from kdcore.cli.common import ProgressPrinter, UsageError, add_spec_args, result_table, spec_from_args
from kdcore.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "ProgressPrinter", "UsageError", "add_spec_args", "build_parser", "main", "result_table",
           "spec_from_args"]
