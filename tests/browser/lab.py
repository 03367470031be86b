"""JupyterLab in a real, headless Chromium: start a server, open notebooks, run them, read the DOM.

``JupyterLabServer`` runs ``jupyter lab`` from this venv (so kernels import
this checkout of eventstore) on a free 127.0.0.1 port, with its own config,
data, runtime, settings and workspaces folders and a token the tests know; its
root folder holds copies of the tutorials (JupyterLab autosaves what it runs,
so the repository's files are never opened) beside links to ``proto/`` and
``datasets/``, which the tutorials read by relative path. Notebooks are not
windowed (``"windowingMode": "none"``), so every cell is in the DOM.

``LabPage`` wraps a Playwright page: open a notebook, Kernel > Restart
Kernel and Run All through the menu, wait for the run to end, and read what
the cells show.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CHART_TEXT = "altair chart (run the notebook"
"""The start of a ChartView's text/plain: how a chart output is recognised in an .ipynb."""

INSTALL_HINT = (
    "The browser tests drive Debian's chromium package (Playwright cannot download browsers "
    "here). Install it as root with: apt-get update && apt-get install -y chromium "
    "(.ci/run does this when it is missing), or point EVENTSTORE_CHROMIUM at a Chromium binary."
)

_SETTINGS = {
    # Every cell in the DOM: the tests read outputs of cells far off screen.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No news or update pop-ups over the notebook.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_chromium() -> str | None:
    """The Chromium binary to drive: $EVENTSTORE_CHROMIUM, or Debian's chromium."""
    wanted = os.environ.get("EVENTSTORE_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class JupyterLabServer:
    """A JupyterLab server of this venv on 127.0.0.1, in folders of its own."""

    base: Path
    token: str = "eventstore-browser-tests"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    root: Path = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.base / "root"
        self.log = self.base / "jupyterlab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        (self.root / "notebooks").mkdir(parents=True)
        for notebook in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
            shutil.copy2(notebook, self.root / "notebooks" / notebook.name)
        for shared in ("proto", "datasets"):
            (self.root / shared).symlink_to(ROOT / shared, target_is_directory=True)
        settings = self.base / "settings"
        for name, values in _SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        for folder in ("config", "data", "runtime", "workspaces"):
            (self.base / folder).mkdir()

    def start(self, timeout: float = 60.0) -> None:
        self.prepare()
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.base / "config"),
            JUPYTER_DATA_DIR=str(self.base / "data"),
            JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.base / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.base / "workspaces"),
            # Kernels import this checkout (as the rest of the suite does).
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        )
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.disable_check_xsrf=False",
            "--LabApp.news_url=",
            # window.jupyterapp: the tests read the kernel's connection state before Run All
            "--LabApp.expose_app_in_browser=True",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")  # containers and CI run as root, as scripts/run says
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {self.process.returncode} before it answered; "
                    f"its log ({self.log}):\n{self.log.read_text(errors='replace')[-3000:]}"
                )
            try:
                with urllib.request.urlopen(
                    f"{self.url}/api/status?token={self.token}", timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(
            f"JupyterLab did not answer on {self.url} within {timeout:.0f} s; its log "
            f"({self.log}):\n{self.log.read_text(errors='replace')[-3000:]}"
        )

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def end_sessions(self) -> None:
        """Shut down every kernel session (each test leaves its notebook's kernel running)."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        """Stop the server by its pid (it shuts its kernels down); kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def notebook_cells(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["cells"])


def expected_error_cells(path: Path) -> set[int]:
    """Indexes of the cells tagged ``raises-exception`` (errors the tutorial shows on purpose)."""
    return {
        index
        for index, cell in enumerate(notebook_cells(path))
        if "raises-exception" in cell.get("metadata", {}).get("tags", [])
    }


def chart_outputs(path: Path) -> int:
    """How many chart outputs (ChartViews) the committed notebook holds."""
    count = 0
    for cell in notebook_cells(path):
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/plain", []))
            count += text.startswith(CHART_TEXT)
    return count


class LabPage:
    """A JupyterLab page in Chromium, driven through its UI."""

    def __init__(self, page: Any, server: JupyterLabServer) -> None:
        self.page = page
        self.server = server
        self.stalls: list[str] = []  # runs that never started, with the kernel's facts

    # -- opening and running -------------------------------------------------------------------
    def open_lab(self) -> None:
        self.page.goto(f"{self.server.url}/lab?reset&token={self.server.token}")
        self.page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)

    def open_notebook(self, relative: str) -> None:
        # ?reset: a fresh workspace, not the tabs an earlier test left open
        self.page.goto(f"{self.server.url}/lab/tree/{relative}?reset&token={self.server.token}")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
        self.wait_kernel_idle(60)

    def menu(self, menu: str, command: str) -> None:
        """Click ``menu`` in the menu bar, then its item running ``command`` (a command id)."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
        self.page.locator(f".lm-Menu-item[data-command='{command}']").first.click()

    def restart_and_run_all(self, timeout: float = 240) -> float:
        """Run every cell in a fresh kernel, as Kernel > Restart Kernel and Run All does.

        The notebook was just opened, so its kernel is new: the run waits until
        that kernel is connected and idle, then uses Run > Run All Cells. Sent
        while the kernel was still (re)connecting, JupyterLab's requests can
        stay queued forever ([*] on every cell, seen in CI): when the first cell
        has not finished within ``first_cell`` seconds, the stall's facts are
        kept (``self.stalls``), the kernel is restarted through the menu and the
        run starts again, at most twice. The seconds of the run that finished.
        """
        first_cell = 90.0
        for attempt in range(3):
            if attempt:
                self.menu("Kernel", "kernelmenu:restart")
                self.page.locator(".jp-Dialog .jp-mod-accept").click()
            self.wait_kernel_ready(60)
            self.menu("Run", "runmenu:run-all")
            started = time.monotonic()
            if not self.wait_run_started(30):
                self.stalls.append(f"attempt {attempt + 1}: Run All queued nothing")
                continue
            if self.wait_first_cell_done(first_cell):
                self.wait_run_ended(timeout)
                return time.monotonic() - started
            self.stalls.append(
                f"attempt {attempt + 1}: the first cell had not finished after {first_cell:.0f} s; "
                f"{self.kernel_facts()}"
            )
        raise TimeoutError(
            "Run All never ran the first cell: "
            + " | ".join(self.stalls)
            + f"\nJupyterLab's log ends with:\n{self.server.log_tail()}"
        )

    def kernel_facts(self) -> str:
        """The kernel's status and connection as the page sees them (for a stall's message)."""
        return str(
            self.page.evaluate(
                """() => {
                const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel;
                return k ? `kernel ${k.id} status ${k.status} connection ${k.connectionStatus}`
                         : 'no kernel on the current widget';
            }"""
            )
        )

    def wait_kernel_ready(self, timeout: float) -> None:
        """Wait until the kernel is idle and its websocket connected, for one second in a row."""
        deadline = time.monotonic() + timeout
        calm_since: float | None = None
        while True:
            ready = self.page.evaluate(
                """() => {
                const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel;
                return !!k && k.status === 'idle' && k.connectionStatus === 'connected';
            }"""
            )
            now = time.monotonic()
            if ready:
                calm_since = calm_since or now
                if now - calm_since >= 1.0:
                    return
            else:
                calm_since = None
            if now > deadline:
                raise TimeoutError(
                    f"the kernel was not ready after {timeout} s: {self.kernel_facts()}"
                )
            time.sleep(0.1)

    def wait_first_cell_done(self, timeout: float) -> bool:
        """True once the first code cell shows an execution count; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prompts = self.prompts()
            if prompts and re.fullmatch(r"\[\d+\]:", prompts[0]):
                return True
            time.sleep(0.1)
        return False

    def wait_run_started(self, timeout: float) -> bool:
        """True once a cell is queued or running ([*]); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not any("*" in p for p in self.prompts()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def prompts(self) -> list[str]:
        return list(
            self.page.eval_on_selector_all(
                ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt",
                "els => els.map(e => e.textContent.trim())",
            )
        )

    def kernel_status(self) -> str:
        return str(
            self.page.eval_on_selector(
                ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator",
                "e => e.getAttribute('data-status') || ''",
            )
        )

    def wait_kernel_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.kernel_status() != "idle":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kernel is {self.kernel_status()!r} after {timeout} s")
            time.sleep(0.2)

    def wait_run_ended(self, timeout: float) -> None:
        """Wait until no cell is queued or running ([*]) and the kernel is idle, twice in a row."""
        deadline = time.monotonic() + timeout
        if not self.wait_run_started(timeout):
            raise TimeoutError(f"Run All did not start within {timeout} s: {self.prompts()}")
        calm = 0
        while calm < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Run All had not ended after {timeout} s: prompts {self.prompts()}"
                )
            busy = any("*" in p for p in self.prompts()) or self.kernel_status() != "idle"
            calm = 0 if busy else calm + 1
            time.sleep(0.3)

    # -- reading cells --------------------------------------------------------------------------
    def cells(self) -> Any:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def error_cells(self) -> dict[int, str]:
        """Cells (by index) whose output shows a Python traceback, with its first lines."""
        found = self.page.eval_on_selector_all(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell",
            """cells => cells.map((cell, i) => {
                const errs = [...cell.querySelectorAll(
                    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                  .map(e => e.textContent)
                  .filter(t => t.includes('Traceback (most recent call last)'));
                return [i, errs.join('\\n').slice(0, 600)];
            }).filter(([i, t]) => t)""",
        )
        return {int(i): str(t) for i, t in found}

    def text(self) -> str:
        return str(self.page.locator("#jp-main-dock-panel").inner_text())

    def charts(self) -> Any:
        return self.page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .vega-embed"
        )

    def wait_charts_drawn(self, expected: int, timeout: float = 60) -> int:
        """Wait until ``expected`` vega views have drawn marks (SVG or canvas); how many did."""
        deadline = time.monotonic() + timeout
        drawn = 0
        while True:
            drawn = int(
                self.page.eval_on_selector_all(
                    ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .vega-embed",
                    """els => els.filter(e => e.querySelector('canvas') ||
                        e.querySelector('svg.marks g.mark-symbol path, svg.marks g.mark-line path,'
                          + ' svg.marks g.mark-rect path, svg.marks g.mark-tick path,'
                          + ' svg.marks g.mark-text text, svg.marks path')).length""",
                )
            )
            if drawn >= expected or time.monotonic() > deadline:
                return drawn
            time.sleep(0.3)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)


def poll(check: Any, timeout: float, what: str) -> Any:
    """Call ``check()`` until it returns something truthy; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not seen within {timeout} s (last: {last!r})")
