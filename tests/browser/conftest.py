"""Browser-test fixtures: the app served on a free loopback port with a fast default preset
(``KDLAB_FAST=1``) and runs in a temporary folder; Debian's Chromium through pytest-playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ui.server import CHROMIUM, CHROMIUM_ARGS, AppServer

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium not found at {CHROMIUM}; install it with: apt-get install -y chromium")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kdlab-browser")
    with AppServer(tmp / "runs", fast=True, log=tmp / "streamlit.log", env={"KDLAB_MAX_JOBS": "2"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
