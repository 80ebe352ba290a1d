"""The chat panel in a real browser: JupyterLab 4 and Notebook 7 on 127.0.0.1, headless Chromium.

A generated notebook starts the replay runtime and shows a ChatPanel (with a cell below it);
the JupyterLab test runs it, checks that Enter (also inside an IME composition) never sends,
types a Korean prompt that a cassette answers, clicks Send, and waits for the code step, its
logs, the typeset answer, a plot and a download link; then stops a slow run with the Stop
button. In both front ends a suggestion chip is clicked and answered, and "Copy to cell"
makes a cell right below the panel's at once. Screenshots go to tests/artifacts/ (and to docs/
when TUTOR_NB_UPDATE_DOCS=1).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import panel_events as ev

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KOREAN_FIB = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"
PLOT_PROMPT = ev.PLOT_CASSETTE["turns"][0]["user"]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]

NOTEBOOK_CELL = """\
from tutor_nb import ChatPanel
from tutor_nb.runtime import start

rt = start(backend="replay", data_dir="runtime-data", cassettes=["plot.json", "slow.json"], replay_delay=0.01)
panel = ChatPanel(client=rt.client(), height="560px")
panel"""


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser test: .ci/run installs Chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_tools():
    if not Path(CHROMIUM).exists():
        _missing("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError as exc:
        _missing(f"{exc.name} is not installed (pip install -e '.[test]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the cell under the panel's: "Copy to cell" must put the new cell between the two
AFTER_CELL = "print('the cell after the panel')"


def _write_notebook(root: Path) -> None:
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "chat", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": NOTEBOOK_CELL},
                  {"cell_type": "code", "id": "after", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": AFTER_CELL}],
    }
    (root / "chat.ipynb").write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")
    for name, cassette in (("plot.json", ev.PLOT_CASSETTE), ("slow.json", ev.SLOW_CASSETTE)):
        (root / name).write_text(json.dumps(cassette, ensure_ascii=False), encoding="utf-8")


def _api(url: str, token: str, path: str, method: str = "GET") -> object:
    request = urllib.request.Request(f"{url}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _serve(kind: str, root: Path, logs: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab (``kind="lab"``) or Notebook 7 (``"notebook"``) on a free port, no outside calls."""
    settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    # no news or update checks: the test never leaves 127.0.0.1
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    app = "LabApp" if kind == "lab" else "JupyterNotebookApp"
    extra = (["--LabApp.extension_manager=readonly", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
             if kind == "lab" else [])
    log = open(logs / f"{kind}.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab" if kind == "lab" else "notebook", "--no-browser", "--allow-root",
         f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
         f"--{app}.user_settings_dir={root / '.lab-settings'}", f"--{app}.workspaces_dir={root / '.lab-workspaces'}",
         *extra],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _api(url, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start:\n{(logs / f'{kind}.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        try:  # a kernel shut down cleanly stops the runtime it started (and that runtime's kernels)
            for kernel in _api(url, token, "/api/kernels") or []:  # type: ignore[union-attr]
                _api(url, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def lab(browser_tools, tmp_path_factory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("lab")
    _write_notebook(root)
    yield from _serve("lab", root, tmp_path_factory.mktemp("lab-log"))


@pytest.fixture(scope="module", params=["lab", "notebook"])
def front_end(request, browser_tools, tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """JupyterLab 4, then Notebook 7, each serving a fresh copy of the test notebook."""
    if request.param == "notebook":
        try:
            import notebook
        except ImportError:
            notebook = None
        if notebook is None or int(notebook.__version__.split(".")[0]) < 7:
            _missing("Notebook 7 is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp(request.param)
    _write_notebook(root)
    for url, token in _serve(request.param, root, tmp_path_factory.mktemp(f"{request.param}-log")):
        yield request.param, url, token


def _transcript_text(page) -> str:
    return page.locator(".tnb-chat-panel .tnb-transcript").inner_text()


def test_chat_panel_in_jupyterlab(lab):
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1600}, device_scale_factor=1)
            panel = _open_and_run(page, "lab", url, token)
            textarea = panel.locator("textarea")

            # Enter, even the one that confirms an IME composition, only edits the text
            textarea.click()
            cdp = page.context.new_cdp_session(page)
            cdp.send("Input.imeSetComposition", {"text": "ㅎ", "selectionStart": 1, "selectionEnd": 1})
            cdp.send("Input.imeSetComposition", {"text": "한", "selectionStart": 1, "selectionEnd": 1})
            page.keyboard.press("Enter")
            cdp.send("Input.insertText", {"text": "한"})
            page.keyboard.press("Enter")
            page.wait_for_timeout(1000)
            assert "한" in textarea.input_value()
            assert panel.locator(".tnb-user").count() == 0, "Enter sent the message"

            textarea.fill(KOREAN_FIB)
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator(".tnb-user")).to_have_text(KOREAN_FIB, timeout=30_000)
            expect(panel.locator(".tnb-code").first).to_contain_text("fibonacci_numbers", timeout=120_000)
            expect(panel.locator(".tnb-logs").first).to_contain_text("4181", timeout=120_000)
            expect(panel.locator(".tnb-status")).to_contain_text("done in", timeout=120_000)
            answer = panel.locator(".widget-htmlmath").first
            expect(answer).to_contain_text("0과 1에서 출발해서")
            expect(answer.locator("mjx-container").first).to_be_visible(timeout=30_000)  # math typeset
            assert "\\[" not in answer.inner_text() and "$$" not in answer.inner_text()
            assert textarea.input_value() == ""

            # the transcript overflowed while streaming and stayed pinned to the newest line
            scroller = panel.locator(".tnb-transcript")
            sizes = scroller.evaluate("el => [el.scrollHeight, el.clientHeight]")
            assert sizes[0] > sizes[1], f"transcript should overflow by now: {sizes}"
            assert scroller.evaluate("el => Math.abs(el.scrollTop) < 4"), "transcript is not pinned to the newest line"
            page.screenshot(path=str(ARTIFACTS / "panel-fibonacci.png"), full_page=True)

            # a new turn brings the view to it, even after the learner scrolled up to read
            scroller.evaluate("el => { el.scrollTop = -Math.round((el.scrollHeight - el.clientHeight) / 2); }")
            page.wait_for_timeout(300)
            assert scroller.evaluate("el => el.scrollTop < -20")
            textarea.fill(PLOT_PROMPT)
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator(".tnb-user").nth(1)).to_be_visible(timeout=30_000)
            page.wait_for_function(f"() => Math.abs(document.querySelector('.tnb-transcript').scrollTop) < 4", timeout=10_000)
            expect(panel.locator("img.widget-image").first).to_be_attached(timeout=120_000)
            expect(panel.locator(".tnb-status")).to_contain_text("done in", timeout=120_000)
            assert scroller.evaluate("el => Math.abs(el.scrollTop) < 4"), "the new turn streamed out of view"
            expect(panel.locator("img.widget-image").first).to_be_visible()
            link = panel.locator('a[download="squares.csv"]')
            expect(link).to_have_text("표 내려받기")
            assert link.get_attribute("href").startswith("data:text/csv;base64,")
            expect(panel.locator(".widget-htmlmath").nth(1).locator("mjx-container").first).to_be_visible(timeout=30_000)
            assert panel.locator(".tnb-code").count() == 2
            page.wait_for_timeout(500)
            panel.screenshot(path=str(ARTIFACTS / "panel.png"))
            if os.environ.get("TUTOR_NB_UPDATE_DOCS") == "1":
                panel.screenshot(path=str(REPO / "docs" / "panel.png"))

            # Stop: the button works while the reply streams, and the panel stays usable
            textarea.fill(ev.SLOW_CASSETTE["turns"][0]["user"])
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator(".tnb-status")).to_contain_text("running code", timeout=60_000)
            # a learner who scrolls up while the turn goes on keeps their place, even at the very top
            scroller.evaluate("el => { el.scrollTop = -(el.scrollHeight - el.clientHeight); }")
            offset = ("el => Math.round(el.querySelector('.tnb-user').getBoundingClientRect().top"
                      " - el.getBoundingClientRect().top)")
            page.wait_for_timeout(200)
            before = scroller.evaluate(offset)
            page.wait_for_timeout(1500)  # the code is counting in the sandbox
            assert abs(scroller.evaluate(offset) - before) <= 3, "the transcript jumped while the learner read above"
            panel.get_by_role("button", name="Stop").click()
            expect(panel.locator(".tnb-status")).to_contain_text("stopped", timeout=20_000)
            expect(panel.locator(".tnb-transcript .tnb-note").last).to_have_text("Stopped.")
            expect(panel.get_by_role("button", name="Send")).to_be_enabled()
        finally:
            browser.close()


def _open_and_run(page, kind: str, url: str, token: str):
    from playwright.sync_api import expect

    path = "lab/tree" if kind == "lab" else "notebooks"
    page.goto(f"{url}/{path}/chat.ipynb?token={token}")
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click(timeout=90_000)
    # a cell run before the kernel is connected is skipped (the selection moves on, the cell stays "[ ]")
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(timeout=90_000)
    page.keyboard.press("Shift+Enter")
    panel = page.locator(".tnb-chat-panel")
    try:
        expect(panel).to_be_visible(timeout=120_000)
    except AssertionError:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"no-panel-{kind}.png"), full_page=True)  # what the learner saw
        shown = page.locator(".jp-Cell .jp-OutputArea").first.inner_text()
        raise AssertionError(f"the notebook did not show the panel; its output:\n{shown}") from None
    return panel


def _cell_sources(page) -> list[str]:
    return page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").evaluate_all(
        "cells => cells.map(c => Array.from(c.querySelectorAll('.cm-line'), l => l.textContent).join('\\n'))")


def test_suggestion_chip_and_copy_to_cell(front_end):
    """A suggestion chip is answered; "Copy to cell" makes a cell right below the panel's, at once."""
    from playwright.sync_api import expect, sync_playwright

    kind, url, token = front_end
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400}, device_scale_factor=1)
            panel = _open_and_run(page, kind, url, token)
            chip = panel.locator(".tnb-chip").first
            expect(chip).to_be_visible(timeout=30_000)
            question = chip.inner_text().strip()
            assert panel.locator(".tnb-chip").count() >= 3
            chip.click()
            expect(panel.locator(".tnb-user")).to_have_text(question, timeout=30_000)
            expect(panel.locator(".tnb-status")).to_contain_text("done in", timeout=120_000)
            expect(panel.locator(".widget-htmlmath").first.locator("mjx-container").first).to_be_visible(timeout=30_000)
            code = panel.locator(".tnb-code").first.inner_text()
            before = _cell_sources(page)
            assert before[-1] == AFTER_CELL and len(before) == 2

            clicked = time.monotonic()
            panel.get_by_role("button", name="Copy to cell").first.click()
            expect(panel.locator(".tnb-note", has_text="Inserted a new cell right below")).to_be_visible(timeout=10_000)
            took = time.monotonic() - clicked
            after = _cell_sources(page)
            assert len(after) == 3, after
            assert after[1].strip() == code.strip() and after[2] == AFTER_CELL, after
            assert took < 5, f"the cell took {took:.1f} s to appear"
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / f"panel-copy-{kind}.png"), full_page=False)
            if os.environ.get("TUTOR_NB_UPDATE_DOCS") == "1":
                page.screenshot(path=str(REPO / "docs" / f"panel-copy-{kind}.png"), full_page=False)

            # live output: what the code prints shows under it while it runs, and stays when stopped
            textarea = panel.locator("textarea")
            logs_before = panel.locator(".tnb-logs").count()
            textarea.fill(ev.SLOW_CASSETTE["turns"][0]["user"])
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator(".tnb-logs")).to_have_count(logs_before + 1, timeout=60_000)
            live = panel.locator(".tnb-logs").last
            expect(live).to_contain_text(re.compile(r"^1\s+2\s+3\b"), timeout=30_000)
            assert "running code" in panel.locator(".tnb-status").inner_text()
            expect(panel.locator(".tnb-code").last).to_contain_text("time.sleep")
            mid_run = live.inner_text()
            expect(live).not_to_have_text(mid_run, timeout=5_000)  # and it keeps growing
            panel.locator(".lm-AccordionPanel, .p-AccordionPanel, .widget-accordion").last.screenshot(
                path=str(ARTIFACTS / f"panel-live-{kind}.png"))
            if os.environ.get("TUTOR_NB_UPDATE_DOCS") == "1":
                panel.screenshot(path=str(REPO / "docs" / f"panel-live-{kind}.png"))
            panel.get_by_role("button", name="Stop").click()
            expect(panel.locator(".tnb-status")).to_contain_text("stopped", timeout=20_000)
            assert live.inner_text().startswith(mid_run.strip().split("\n")[0])
            assert len(live.inner_text()) >= len(mid_run), "the stopped step lost what it printed"
        finally:
            browser.close()


def test_copy_to_cell_uses_the_clipboard_where_no_cell_can_be_inserted(browser_tools):
    """Colab and other pages without JupyterLab's commands: the script puts the code on the
    clipboard and reports "copied" through the step's hidden report input."""
    from playwright.sync_api import sync_playwright

    from tutor_nb.panel import frontend

    code = "for n in range(3):\n    print('한글', n)"
    token = "tnb-step-test"
    page_html = (f'<html><body><div class="{token}"><button id="copy">Copy to cell</button>'
                 '<div class="tnb-report"><input></div></div></body></html>')
    script = frontend.copy_to_cell_output(token, code)["data"]["application/javascript"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin="http://127.0.0.1")
            page = context.new_page()
            page.route("http://127.0.0.1/notebook", lambda route: route.fulfill(body=page_html, content_type="text/html"))
            page.goto("http://127.0.0.1/notebook")
            page.evaluate(f"() => document.getElementById('copy').onclick = () => {{ {script} }}")
            page.click("#copy")  # the script runs in the click, as the learner's click starts it in a notebook
            page.wait_for_function("() => document.querySelector('.tnb-report input').value !== ''", timeout=5_000)
            assert frontend.outcome_of(page.input_value(".tnb-report input")) == "copied"
            assert page.evaluate("() => navigator.clipboard.readText()") == code
        finally:
            browser.close()
