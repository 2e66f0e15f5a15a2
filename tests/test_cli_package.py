"""The CLI package (issue 12): the ``kdlab`` console script, the command list, a torch-free import."""

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["run", "presets", "methods", "sweep", "explain", "runs", "resume", "export", "delete", "import-data",
            "bench"]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_console_script_is_the_module_main():
    import kdcore

    meta = _pyproject()["project"]
    assert meta["name"] == "kdlab"
    target = meta["scripts"]["kdlab"]
    module, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    from kdcore.cli.main import main

    assert fn is main
    # python -m kdcore runs the same function
    assert "from kdcore.cli import main" in (ROOT / "kdcore" / "__main__.py").read_text(encoding="utf-8")
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kdcore.__version__"}
    assert kdcore.__version__ == "0.1.0"


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "kdcore", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    listed = re.search(r"\{([a-z,-]+)\}", out.stdout).group(1).split(",")
    assert listed == COMMANDS
    from kdcore.cli import COMMANDS as registered

    assert list(registered) == COMMANDS


def test_cli_import_and_parser_load_no_torch():
    code = ("import sys, kdcore.cli.main; from kdcore.cli.main import build_parser; build_parser(); "
            "print(sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bench_and_export_do_not_import_the_cli():
    for rel in ("kdcore/bench.py", "kdcore/export/api.py", "kdcore/pipeline/report.py"):
        text = (ROOT / rel).read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from kdcore\.cli\b|from kdcore import cli\b|import kdcore\.cli\b)", text, re.M), rel
