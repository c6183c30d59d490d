"""A notebook rendered in a real browser: JupyterLab + headless Chromium, driven by Playwright.

Opt-in (``pytest -m browser``; ``.ci/run`` runs it). It starts JupyterLab on 127.0.0.1 with a
token and a free port, opens a *copy* of a notebook in headless Chromium (the system's
``/usr/bin/chromium``; no browser is ever downloaded), runs all cells, fails on any error
output, then calls an ``interact`` function that works the notebook's widgets and checks what
they draw. A screenshot is saved to ``outputs/browser/<notebook>.png``.

To check another notebook, add a ``(path, interact)`` pair to ``CASES``, e.g. notebook 05's
Grad-CAM explorer: pick another method in its menu and wait for the heat-map image to change
(see :func:`check_slice_viewer` for the pattern).

Without Chromium or Playwright the test is skipped, saying which is missing -- except in CI
(``CI=true``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CTLIB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "outputs" / "browser"
LAB_START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 900


def _require_browser() -> None:
    """Skip (fail in CI) with the reason when Chromium or Playwright is missing."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(
            f"Chromium is not at {CHROMIUM} (Debian: apt-get install chromium; "
            "or set CTLIB_CHROMIUM)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append(
            'Playwright is not installed (pip install -e ".[browser]"; '
            "never `playwright install`: the system Chromium is used)"
        )
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the browser test cannot run: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token, served folder and log file."""

    url: str
    token: str
    root: Path
    log: Path

    def tree(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


@contextlib.contextmanager
def jupyter_lab(root: Path, home: Path) -> Iterator[Lab]:
    """JupyterLab serving ``root`` on 127.0.0.1 (token, free port, no browser, private settings)."""
    port, token = _free_port(), secrets.token_hex(16)
    settings = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    # no news or update checks (they would reach for the network), no toasts over the screenshot
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("CTLIB_QUICK", "1")
    env.setdefault("CTLIB_OUTPUT_DIR", str(home / "outputs"))  # the notebook's figures
    log = home / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={home / 'lab-settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(
                    f"{lab.url}/api/status?token={token}", timeout=2
                ) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"JupyterLab did not answer in {LAB_START_TIMEOUT_S} s:\n"
                    f"{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# JavaScript run in the page (JupyterLab exposes its app as window.jupyterapp with
# --LabApp.expose_app_in_browser): wait for the notebook's kernel, run all cells, report.
_READY = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  return !!(panel && panel.sessionContext && panel.sessionContext.session
            && panel.sessionContext.session.kernel
            && panel.sessionContext.session.kernel.status === "idle");
}"""
_RUN_ALL = """async (timeoutMs) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error("run-all did not finish in " + timeoutMs + " ms")),
                 timeoutMs));
  await Promise.race([app.commands.execute("notebook:run-all-cells"), timeout]);
  const cells = panel.content.model.toJSON().cells;
  const errors = [];
  cells.forEach((cell, i) => (cell.outputs || []).forEach(out => {
    if (out.output_type === "error") errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
  }));
  const unrun = cells.filter(c => c.cell_type === "code" && c.execution_count === null).length;
  return {cells: cells.length, errors, unrun};
}"""


def run_notebook_in_browser(
    path: Path,
    interact: Callable[[Any], dict[str, Any]] | None = None,
    *,
    workdir: Path,
    screenshot: Path | None = None,
) -> dict[str, Any]:
    """Open a copy of ``path`` in JupyterLab in headless Chromium, run all cells, then ``interact``.

    Args:
        path: the notebook (a copy in ``workdir`` is what runs and gets saved).
        interact: called with the Playwright ``Page`` once every cell ran without error; it
            works the widgets, asserts what they draw, and returns facts for the report.
        workdir: a scratch folder (JupyterLab's root and settings).
        screenshot: where to save a PNG of the page at the end.

    Returns:
        ``{"cells", "unrun", "seconds_to_run", "seconds_total", ...interact's facts}``.

    Raises:
        AssertionError: a cell failed, a cell did not run, or ``interact`` found a fault.
    """
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    served = workdir / "lab-root"
    served.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, served / path.name)
    with jupyter_lab(served, workdir) as lab, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.goto(
                lab.tree(path.name),
                wait_until="domcontentloaded",
                timeout=LAB_START_TIMEOUT_S * 1000,
            )
            page.wait_for_function(_READY, timeout=LAB_START_TIMEOUT_S * 1000, polling=500)
            run_started = time.perf_counter()
            report = page.evaluate(_RUN_ALL, RUN_TIMEOUT_S * 1000)
            report["seconds_to_run"] = round(time.perf_counter() - run_started, 1)
            assert not report["errors"], f"cells failed in the browser: {report['errors']}"
            assert report["unrun"] == 0, f"{report['unrun']} code cell(s) did not run"
            if interact is not None:
                report.update(interact(page) or {})
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                report["screenshot"] = str(screenshot)
        except Exception:
            if screenshot is not None:  # the state at the failure, for the person reading the log
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-failed.png")))
            print("\n".join(console[-40:]), file=sys.stderr)
            print(lab.log.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            browser.close()
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


def _image_state(page: Any, selector: str) -> dict[str, Any]:
    return page.eval_on_selector(
        selector,
        "img => ({src: img.src, drawn: img.complete && img.naturalWidth > 0, "
        "width: img.naturalWidth, height: img.naturalHeight})",
    )


def _wait_redrawn(page: Any, selector: str, old_src: str, timeout_ms: int) -> dict[str, Any]:
    """Wait until the image under ``selector`` shows a new, fully loaded picture; its state."""
    page.wait_for_function(
        "([selector, old]) => { const img = document.querySelector(selector);"
        " return img && img.src !== old && img.complete && img.naturalWidth > 0; }",
        arg=[selector, old_src],
        timeout=timeout_ms,
    )
    return _image_state(page, selector)


def check_slice_viewer(page: Any) -> dict[str, Any]:
    """Notebook 01's slice viewer: it appears, and a new canvas is drawn when the menu changes."""
    image = ".jp-OutputArea-output img.widget-image"
    page.wait_for_selector(image, state="visible", timeout=60_000)
    page.locator(image).last.scroll_into_view_if_needed()
    before = _image_state(page, image)
    assert before["drawn"], f"the viewer's first image is not drawn: {before}"
    menu = page.locator(".jp-OutputArea-output .widget-dropdown select").last
    menu.select_option(label="ResNets, ResNeXts, DenseNets")
    after = _wait_redrawn(page, image, before["src"], 30_000)
    assert (after["width"], after["height"]) == (349, 253), (
        f"expected the 349×253 canvas, got {after}"
    )
    caption = page.locator(".ctlib-caption").last.inner_text()
    assert "349×253 canvas" in caption, caption
    page.locator(".jp-OutputArea-output .widget-dropdown").last.scroll_into_view_if_needed()
    return {
        "widget": "slice viewer",
        "before": [before["width"], before["height"]],
        "after": [after["width"], after["height"]],
        "caption": caption,
    }


def check_gradcam_explorer(page: Any) -> dict[str, Any]:
    """Notebook 05's explorer: it appears with a heat map, and a new one is drawn for Eigen-CAM."""
    image = "img.ctlib-heatmap"
    page.wait_for_selector(image, state="visible", timeout=120_000)
    page.locator(image).last.scroll_into_view_if_needed()
    page.wait_for_function(
        "(selector) => { const img = document.querySelector(selector);"
        " return img && img.complete && img.naturalWidth > 0; }",
        arg=image,
        timeout=120_000,
    )
    before = _image_state(page, image)
    menu = page.locator(".ctlib-method select").last
    menu.select_option(label="Eigen-CAM")
    after = _wait_redrawn(page, image, before["src"], 120_000)
    info = page.locator(".ctlib-info").last.inner_text()
    assert after["drawn"] and after["width"] > 100, f"no heat map drawn after the change: {after}"
    page.locator(".ctlib-explorer").last.scroll_into_view_if_needed()
    return {
        "widget": "Grad-CAM explorer",
        "before": [before["width"], before["height"]],
        "after": [after["width"], after["height"]],
        "info": info,
    }


CASES = [
    pytest.param(
        ROOT / "notebooks" / "01_data_exploration.ipynb", check_slice_viewer, id="01_slice_viewer"
    ),
    pytest.param(
        ROOT / "notebooks" / "05_gradcam.ipynb", check_gradcam_explorer, id="05_gradcam_explorer"
    ),
]


@pytest.mark.parametrize(("notebook", "interact"), CASES)
def test_notebook_widget_renders_in_a_browser(
    notebook: Path, interact: Callable[[Any], dict[str, Any]], tmp_path: Path
) -> None:
    _require_browser()
    report = run_notebook_in_browser(
        notebook, interact, workdir=tmp_path, screenshot=SCREENSHOTS / f"{notebook.stem}.png"
    )
    print(json.dumps(report, indent=1))
    assert Path(report["screenshot"]).is_file()


# --------------------------------------------------------------------------- static pages
#: lesson 01 has every kind of thing a page shows (figures, tables, widgets' static output,
#: collapsed solutions); `python -m ctlib.notebook pages` builds all six
PAGES = ("01_data_exploration",)

_PAGE_FACTS = """() => {
  const images = [...document.querySelectorAll('img')];
  return {
    images: images.length,
    shown: images.filter(i => i.complete && i.naturalWidth > 0).length,
    errors: document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')
      .length,
    tracebacks: document.body.innerText.includes('Traceback (most recent call last)'),
    solutions: document.querySelectorAll('details.solution').length,
    open_solutions: document.querySelectorAll('details.solution[open]').length,
    unlabelled: images.filter(i => ['', 'figure', 'no description has been provided for this image']
      .includes(i.alt.trim().toLowerCase())).length,
  };
}"""


def test_static_pages_show_every_figure_and_no_error(tmp_path: Path) -> None:
    import nbformat
    from playwright.sync_api import sync_playwright

    from ctlib.ops.notebooks.pages import build_pages

    _require_browser()
    sources = [ROOT / "notebooks" / f"{stem}.ipynb" for stem in PAGES]
    pages = build_pages(sources, tmp_path / "pages")
    assert [p.name for p in pages] == [f"{s}.html" for s in PAGES] + ["index.html"]
    facts = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            for stem in PAGES:
                executed = nbformat.read(tmp_path / "pages" / "executed" / f"{stem}.ipynb", 4)
                figures = sum(
                    "image/png" in o.get("data", {})
                    for c in executed.cells
                    if c.cell_type == "code"
                    for o in c.outputs
                )
                solutions = sum("solution" in c.metadata.get("tags", []) for c in executed.cells)
                page.goto((tmp_path / "pages" / f"{stem}.html").as_uri(), wait_until="load")
                got = page.evaluate(_PAGE_FACTS)
                facts[stem] = {**got, "figures": figures}
                assert figures > 0, f"{stem} drew no figure in quick mode"
                assert got["shown"] >= figures and got["shown"] == got["images"], got
                assert got["errors"] == 0 and not got["tracebacks"], f"{stem}: an error cell"
                assert got["solutions"] == solutions and got["open_solutions"] == 0, got
                assert got["unlabelled"] == 0, f"{stem}: an image without alt text"
        finally:
            browser.close()
    print(json.dumps(facts, indent=1))
