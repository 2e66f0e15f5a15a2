"""One thread at a time through Python-AST construction (a CPython 3.11 thread-safety bug).

CPython keeps the recursion counter of its AST converters (``ast.parse``, ``compile`` of an AST
object) in per-interpreter state shared by all threads. When garbage collection runs a
finalizer in the middle of a conversion, the interpreter may switch threads; if another thread
converts an AST meanwhile, the first one fails with ``SystemError: AST constructor recursion
depth mismatch`` (CPython gh-106905 and the reports linked there).

The app is exactly that process: Streamlit's script threads compile the page scripts (an AST, for
"magic") and ``torch._jit_internal`` parses torch sources on import, while job threads call
``ast.literal_eval`` through ``np.load`` (every ``.npz`` header) and matplotlib's rc validators.
CI saw the error in 3 AppTests of one run once the app shortened the GIL switch interval.

:func:`install` wraps ``builtins.compile`` so that calls producing or consuming an AST
(``ast.parse``, ``ast.literal_eval`` and ``compile(tree, ...)`` all go through it) hold one
process-wide re-entrant lock. Compiling source text to bytecode (imports, ``exec`` of strings) is
not affected. ``tests/test_jobs.py::test_ast_guard_serialises_ast_work_across_threads`` runs a
workload that failed in 2 of 3 three-second runs without the guard on this project's machine and
checks that it does not fail with it.
"""

from __future__ import annotations

import ast
import builtins
import threading
from typing import Any

_LOCK = threading.RLock()
_ORIGINAL_COMPILE = builtins.compile


def _guarded_compile(source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False,
                     optimize: int = -1, **kwargs: Any) -> Any:
    if isinstance(source, ast.AST) or flags & ast.PyCF_ONLY_AST:
        with _LOCK:
            return _ORIGINAL_COMPILE(source, filename, mode, flags, dont_inherit, optimize, **kwargs)
    return _ORIGINAL_COMPILE(source, filename, mode, flags, dont_inherit, optimize, **kwargs)


def install() -> None:
    """Route AST work through the lock (idempotent; for a process that trains in threads)."""
    builtins.compile = _guarded_compile


def uninstall() -> None:
    builtins.compile = _ORIGINAL_COMPILE


def installed() -> bool:
    return builtins.compile is _guarded_compile


__all__ = ["install", "installed", "uninstall"]
