"""Browser-test fixtures: the app served on a free loopback port with a fast default preset
(``KDLAB_FAST=1``) and runs in a temporary folder; Debian's Chromium through pytest-playwright.

Screenshots the tests take go to pytest's temporary folder (``$KDLAB_TEST_SCREENSHOTS`` to keep them
elsewhere), never into the working tree: the README's ``docs/screenshots/`` come from
``scripts/take_screenshots.py``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ui.server import CHROMIUM, CHROMIUM_ARGS, AppServer


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium not found at {CHROMIUM}; run `make test` (installs it) or: apt-get install -y chromium")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kdlab-browser")
    with AppServer(tmp / "runs", fast=True, log=tmp / "streamlit.log", env={"KDLAB_MAX_JOBS": "2",
                   # students long enough that the live chart updates at least once before the end,
                   # however slowly a loaded machine renders the page: each epoch's end held 0.4 s
                   "KDLAB_FAST_OVERRIDES": "train.student_epochs=6", "KDLAB_FAST_EPOCH_HOLD_S": "0.4"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    keep = os.environ.get("KDLAB_TEST_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("screenshots")
