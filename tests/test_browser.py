"""The explorer notebook in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

``tests/test_widgets.py`` sets the explorer's widget values from Python. Only a browser shows
that JupyterLab renders the widgets, that a control changed in the page reaches the kernel,
and that the redrawn figure and note come back to the page. This test runs every cell of a
copy of ``notebooks/04_explorer.ipynb`` (outputs stripped, in a temporary folder, so every
output on the page comes from this run), changes the accumulator dtype and the batch size in
the page, and checks the accumulation pane after each change against ``accumulation_view``
computed here for the same settings: every row of the note, and the figure's PNG bytes.
It saves the pane before and after the changes as ``docs/figures/explorer-before.png`` and
``docs/figures/explorer-after.png`` (``docs/browser-test.md`` shows them).

The server is offline and isolated: no token, no news or update checks, the read-only
extension manager, and config, data, runtime, settings and workspace folders in the temporary
folder. Without Playwright for Python or Chromium at ``/usr/bin/chromium`` the test is
skipped, except where ``ACCUMBUG_REQUIRE_BROWSER=1`` (``.ci/run`` sets it): there their
absence fails it, so CI cannot pass by skipping.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from accumbug.lessons.plots import figure_png
from accumbug.lessons.widgets import DPI, accumulation_view

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_explorer.ipynb"
FIGURES = ROOT / "docs" / "figures"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE = "ACCUMBUG_REQUIRE_BROWSER"

# Where the notebook's own cells leave the accumulation pane (the cell that sets controls from code),
# then the pane after each change this test makes in the page: the accumulator, then the batch size.
START = {"samples": 10_000, "batch_size": 64, "accumulator": "float64", "tracker": "incident-broken",
         "serialiser": "strict"}
FLOAT16 = {**START, "accumulator": "float16"}
FLOAT16_BATCH_16 = {**FLOAT16, "batch_size": 16}

SERVER_START_S = 90
RUN_ALL_MS = 240_000  # the explorer runs the mechanism gallery once: seconds, more on a busy CI machine
REDRAW_MS = 60_000
VIEWPORT = {"width": 1500, "height": 1000}
# JupyterLab front-end plugins that would reach the internet or open a prompt over the page.
DISABLED_PLUGINS = ("@jupyterlab/apputils-extension:announcements", "@jupyterlab/extensionmanager-extension:plugin")


def _absent(what: str):
    """Skip for a missing browser tool; fail instead where ``ACCUMBUG_REQUIRE_BROWSER=1`` says the test must run."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{what}, and {REQUIRE}=1 requires the browser test to run", pytrace=False)
    pytest.skip(what)


def _notebook_without_outputs(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` without outputs, execution counts or saved widget state; return its code cells."""
    notebook = json.loads(source.read_text())
    notebook["metadata"].pop("widgets", None)
    code_cells = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            code_cells += 1
    target.write_text(json.dumps(notebook, indent=1))
    return code_cells


def _wait_for_server(server: subprocess.Popen, url: str, log: Path) -> None:
    """Poll ``/api/status`` until the server answers; fail with its log if it exits or takes too long."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with code {server.returncode} before serving:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer on {url} within {SERVER_START_S} s:\n{log.read_text()[-4000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM: the server shuts its kernels down and exits. If it hangs, kill its process group."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, free_port):
    """JupyterLab serving a copy of the explorer notebook; yields (base URL, number of code cells)."""
    if importlib.util.find_spec("jupyterlab") is None:
        _absent("JupyterLab is not installed (it is in the lab extra: pip install -e '.[lab,test]')")
    home = tmp_path_factory.mktemp("lab")
    folders = {name: home / name for name in ("notebooks", "config", "data", "runtime", "ipython", "settings",
                                              "workspaces")}
    for folder in folders.values():
        folder.mkdir()
    code_cells = _notebook_without_outputs(NOTEBOOK, folders["notebooks"] / NOTEBOOK.name)
    (folders["config"] / "labconfig").mkdir()
    (folders["config"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {plugin: True for plugin in DISABLED_PLUGINS}}))
    port = free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--ServerApp.root_dir={folders['notebooks']}",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={folders['settings']}", f"--LabApp.workspaces_dir={folders['workspaces']}",
    ]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folders["config"]), "JUPYTER_DATA_DIR": str(folders["data"]),
           "JUPYTER_RUNTIME_DIR": str(folders["runtime"]), "IPYTHONDIR": str(folders["ipython"])}
    log = home / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(command, cwd=folders["notebooks"], env=env, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(server, url, log)
        yield url, code_cells
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def playwright_api():
    """Playwright's sync API module, or a skip (a failure under ``ACCUMBUG_REQUIRE_BROWSER=1``)."""
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError as error:
        _absent("Playwright for Python is not installed "
                f"(it is in the test extra: pip install -e '.[lab,test]'): {error}")


@pytest.fixture(scope="module")
def browser(playwright_api):
    """Debian's Chromium, headless, launched by Playwright; closed (with the driver) on teardown."""
    if not os.access(CHROMIUM, os.X_OK):
        _absent(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    driver = playwright_api.sync_playwright().start()
    try:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        driver.stop()


def _note_cells(view_html: str) -> list[str]:
    """The text of every table cell of a view's HTML note, as the page shows it."""
    cells = re.findall(r"<td[^>]*>(.*?)</td>", view_html, re.DOTALL)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells]


def _image_bytes(image) -> bytes:
    """The bytes behind an ``<img>``'s ``src`` (the Image widget's blob URL), fetched in the page."""
    return bytes(image.evaluate("async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"))


def _expect_pane(expect, note, image, settings: dict) -> bytes:
    """Wait until the pane shows what ``accumulation_view(**settings)`` gives; return the figure's bytes."""
    view = accumulation_view(**settings)
    expect(note.locator("td")).to_have_text(_note_cells(view.html), timeout=REDRAW_MS)
    shown = _image_bytes(image)
    assert shown == figure_png(view.figure, DPI, tight=False), f"the figure on the page is not the one for {settings}"
    return shown


def _screenshot(page, cell, pane, path: Path) -> None:
    """The page from its top down to the bottom of the accumulation pane, with the explorer's cell scrolled up.

    The toolbar's kernel activity circle is hidden: its anti-aliasing varies from run to run,
    and the committed screenshots should change only when the page does.
    """
    cell.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    box = pane.bounding_box()
    height = min(VIEWPORT["height"], box["y"] + box["height"] + 2)
    page.screenshot(path=path, animations="disabled", style=".jp-Notebook-ExecutionIndicator {visibility: hidden}",
                    clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})


def test_explorer_runs_and_redraws_in_jupyterlab(browser, playwright_api, lab, tmp_path):
    """Run all cells, check the pane, change the accumulator and the batch size in the page, check it after each."""
    url, code_cells = lab
    expect = playwright_api.expect
    page = browser.new_page(viewport=VIEWPORT)
    page_errors = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        page.goto(f"{url}/lab/tree/{NOTEBOOK.name}")
        # The status bar's kernel item reads "No Kernel | Initializing" until the session starts, then
        # "<kernel name> | Connecting" and "<kernel name> | Idle": only then does Run All run anything.
        kernel = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
        expect(kernel).to_have_text(re.compile(r"^(?!No Kernel).+ \| Idle$"), timeout=RUN_ALL_MS)
        file_browser_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if file_browser_tab.count():  # collapse the left sidebar: the screenshots show the notebook alone
            file_browser_tab.click()

        page.locator("li.lm-MenuBar-item", has_text="Run").click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")
        expect(prompts).to_have_text([re.compile(r"^\[\d+\]:$")] * code_cells, timeout=RUN_ALL_MS)
        expect(kernel).to_have_text(re.compile(r" \| Idle$"), timeout=RUN_ALL_MS)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert errors.count() == 0, f"a cell wrote to stderr: {errors.all_inner_texts()}"

        explorer = page.locator(".jp-OutputArea-output .widget-vbox").first
        expect(explorer).to_be_visible(timeout=REDRAW_MS)
        cell = page.locator(".jp-Notebook .jp-CodeCell", has=explorer)
        # the panes are accumulation, then mechanism: the first one
        pane = explorer.locator(".widget-hbox", has=page.locator("img.widget-image")).first
        image, note = pane.locator("img.widget-image"), pane.locator("table")
        before = _expect_pane(expect, note, image, START)
        FIGURES.mkdir(parents=True, exist_ok=True)
        _screenshot(page, cell, pane, FIGURES / "explorer-before.png")

        explorer.get_by_label("accumulator", exact=True).select_option(FLOAT16["accumulator"])
        float16 = _expect_pane(expect, note, image, FLOAT16)
        # The batch size is a slider: type the exact value into its readout, as a user can.
        readout = explorer.locator(".widget-slider", has=page.get_by_text("batch size", exact=True)).locator(
            ".widget-readout")
        readout.fill(str(FLOAT16_BATCH_16["batch_size"]))
        readout.press("Enter")
        after = _expect_pane(expect, note, image, FLOAT16_BATCH_16)
        _screenshot(page, cell, pane, FIGURES / "explorer-after.png")

        assert len({before, float16, after}) == 3, "a change in the page did not change the figure"
        assert not page_errors, f"the page raised: {page_errors}"
    except BaseException:  # keep the page as it was for the report, then let the failure through
        page.screenshot(path=tmp_path / "failure.png")
        print(f"the page when the test failed: {tmp_path / 'failure.png'}")
        raise
    finally:
        page.close()
