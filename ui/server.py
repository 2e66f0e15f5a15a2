"""Start the app in a subprocess on a free loopback port (browser tests and the UI latency benchmark),
and the Chromium launch settings that work on this project's machines (see DESIGN.md §4)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("KDLAB_CHROMIUM", "/usr/bin/chromium")
# Streamlit marks its app root this way when no script run is in progress
SCRIPT_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``with AppServer(runs_dir, fast=True) as srv: srv.url`` — ``streamlit run app.py`` bound to
    127.0.0.1, ready once ``/_stcore/health`` answers ``ok``."""

    def __init__(self, runs_dir: str | Path, fast: bool = True, env: dict[str, str] | None = None,
                 log: str | Path | None = None, timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runs_dir = Path(runs_dir)
        self.fast = fast
        self.extra_env = env or {}
        self.log_path = Path(log) if log else None
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "AppServer":
        env = {**os.environ, "KDLAB_RUNS_DIR": str(self.runs_dir), **self.extra_env}
        if self.fast:
            env["KDLAB_FAST"] = "1"
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.proc.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the app did not become healthy within {self.timeout:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def page_paths() -> dict[str, str]:
    """Page file → URL path, for every page of the app (``pages/3_Temperature_explorer.py`` →
    ``/Temperature_explorer``)."""
    out = {"app.py": "/"}
    for p in sorted((ROOT / "pages").glob("*.py")):
        out[f"pages/{p.name}"] = "/" + p.stem.split("_", 1)[1]
    return out
