"""Helpers for the real-browser UI test: a `dagster dev` subprocess on 127.0.0.1 that is always
stopped (process group: SIGTERM, a grace period, then SIGKILL), and a headless Debian chromium
driven by Playwright that may only talk to 127.0.0.1.

Not a test module (no `test_` prefix); imported by the UI tests (`defs/test_ui.py`, `defs/test_operate.py`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Debian's chromium; override with CHROMIUM_PATH. Never `playwright install` (it downloads browsers).
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """The chromium binary if it exists and is executable, else None."""
    found = shutil.which(CHROMIUM_PATH)
    return found if found and os.access(found, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_instance_yaml(home: Path) -> None:
    """The DAGSTER_HOME that `make ui` / `multiome-assets ui` prepare: the project's own settings."""
    from multiome_assets.cli import instance_home

    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        instance_home()
    finally:
        if saved is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = saved


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the process group; False if the group is already gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    """True while any process (not a zombie) is still in the process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ... ; comm may contain spaces/parens, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class DagsterDev:
    """`dagster dev -h 127.0.0.1 -p PORT -w workspace.yaml` in its own session/process group.

    Use as a context manager; `stop()` always ends the whole group (webserver, daemon, code
    server, gRPC server and any run workers it launched), first politely, then with SIGKILL.
    """

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None,
                 cwd: Path = REPO_ROOT, workspace: str = "workspace.yaml"):
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.cwd = cwd
        self.workspace = workspace
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DagsterDev":
        cmd = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port),
               "-w", self.workspace]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll /server_info until the webserver answers (bounded); raise with the log tail if not."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=3) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last_error = e
            time.sleep(1.0)
        raise TimeoutError(f"dagster webserver not up after {timeout:.0f}s ({last_error}):\n{self.log_tail()}")

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM the process group, wait `grace` s, then SIGKILL whatever is left of it."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the child leads its own group
        try:
            if _signal_group(pgid, signal.SIGTERM):
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline:
                    self.proc.poll()
                    if not group_alive(pgid):
                        break
                    time.sleep(0.25)
            _signal_group(pgid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            # Grandchildren killed above are re-parented and reaped by init; wait until none is left.
            deadline = time.monotonic() + 10
            while group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> "DagsterDev":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def local_only(context, base_url: str, blocked: list[str]) -> None:
    """Abort every browser request that is not to 127.0.0.1 (recorded in `blocked`)."""
    allowed = (base_url.rstrip("/") + "/", "data:", "blob:", "about:")

    def handle(route):
        url = route.request.url
        if url.startswith(allowed):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", handle)


def require_browser():
    """Playwright's sync API, or skip the module with the reason (fail where $MULTIOME_UI_REQUIRED is
    set: CI installs the browser, so there the UI tests must run)."""
    import pytest

    def unavailable(reason):
        if os.environ.get("MULTIOME_UI_REQUIRED", "") not in ("", "0"):
            pytest.fail(f"MULTIOME_UI_REQUIRED is set but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)

    try:
        from playwright import sync_api
    except ModuleNotFoundError:
        unavailable("Playwright for Python is not installed (pip install playwright)")
    if chromium_path() is None:
        unavailable("no chromium browser at /usr/bin/chromium (apt-get install chromium) or $CHROMIUM_PATH")
    return sync_api


def loopback_env(home: Path, warehouse: Path, data: Path) -> dict[str, str]:
    """The environment of a `dagster dev` on its own instance, warehouse and data dir, with no proxy
    between it, the browser and the poller (they only ever talk to 127.0.0.1)."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "MULTIOME_WAREHOUSE": str(warehouse),
           "MULTIOME_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@contextlib.contextmanager
def browser_page(base_url: str):
    """A headless chromium page on `base_url`, 1400x900, that may only reach 127.0.0.1."""
    from playwright import sync_api

    blocked: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=base_url)
            context.set_default_timeout(30_000)
            local_only(context, base_url, blocked)
            yield context.new_page()
        finally:
            browser.close()
    if blocked:
        print("browser requests blocked (not 127.0.0.1):", *sorted(set(blocked)), sep="\n  ")


def open_page(page, path: str) -> None:
    page.goto(path)
    page.wait_for_load_state("networkidle")


@contextlib.contextmanager
def screenshot_on_failure(page, shots: Path, dev: DagsterDev, name: str):
    """On failure: save a screenshot and add the dagster dev log tail to the error."""
    try:
        yield
    except Exception as e:
        path = shots / f"FAILED_{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
        raise AssertionError(f"{e}\n\nscreenshot: {path}\n--- dagster dev log tail ---\n{dev.log_tail()}") from e
