import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KDLAB_RUNS_DIR", str(ROOT / ".pytest-runs"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The test process, like the app's server, trains in job threads while other threads build Python
# ASTs (pytest's assertion rewriting on import, AppTest script threads): guard it as the app does.
from kdcore.service import ast_guard  # noqa: E402

ast_guard.install()


@pytest.fixture
def tiny_spec():
    """A tiny digits-av experiment that trains in seconds."""
    from kdcore.presets import load_preset

    return load_preset("digits-av").with_overrides([
        "train.teacher_epochs=2", "train.student_epochs=2", "train.batch_size=128",
    ])
