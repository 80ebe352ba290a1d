"""The chat panel in a real browser: JupyterLab on 127.0.0.1, headless Chromium via Playwright.

A generated notebook starts the replay runtime and shows a ChatPanel; the test runs it,
checks that Enter (also inside an IME composition) never sends, types a Korean prompt that a
cassette answers, clicks Send, and waits for the code step, its logs, the typeset answer, a
plot and a download link; then stops a slow run with the Stop button. Screenshots go to tests/artifacts/ (and to docs/panel.png when
TUTOR_NB_UPDATE_DOCS=1).
"""

from __future__ import annotations

import json
import os
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


def _write_notebook(root: Path) -> None:
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "chat", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": NOTEBOOK_CELL}],
    }
    (root / "chat.ipynb").write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")
    for name, cassette in (("plot.json", ev.PLOT_CASSETTE), ("slow.json", ev.SLOW_CASSETTE)):
        (root / name).write_text(json.dumps(cassette, ensure_ascii=False), encoding="utf-8")


def _api(url: str, token: str, path: str, method: str = "GET") -> object:
    request = urllib.request.Request(f"{url}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(browser_tools, tmp_path_factory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("lab")
    logs = tmp_path_factory.mktemp("lab-log")
    _write_notebook(root)
    settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no news or update checks: the test never leaves 127.0.0.1
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    log = open(logs / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--IdentityProvider.token={token}",
         "--ServerApp.ip=127.0.0.1", "--LabApp.extension_manager=readonly",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={root / '.lab-settings'}", f"--LabApp.workspaces_dir={root / '.lab-workspaces'}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
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
                    raise RuntimeError(f"JupyterLab did not start:\n{(logs / 'lab.log').read_text()[-3000:]}")
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
            page.goto(f"{url}/lab/tree/chat.ipynb?token={token}")
            page.locator(".jp-Notebook .jp-Cell .cm-content").first.click(timeout=90_000)
            page.keyboard.press("Shift+Enter")
            panel = page.locator(".tnb-chat-panel")
            try:
                expect(panel).to_be_visible(timeout=120_000)
            except AssertionError:
                shown = page.locator(".jp-Cell .jp-OutputArea").first.inner_text()
                raise AssertionError(f"the notebook did not show the panel; its output:\n{shown}") from None
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

            # a learner who scrolled up keeps their place while the next reply streams in
            scroller.evaluate("el => { el.scrollTop = -Math.round((el.scrollHeight - el.clientHeight) / 2); }")
            offset = ("el => Math.round(el.querySelector('.tnb-logs').getBoundingClientRect().top"
                      " - el.getBoundingClientRect().top)")
            page.wait_for_timeout(300)
            before = scroller.evaluate(offset)
            textarea.fill(PLOT_PROMPT)
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator("img.widget-image").first).to_be_attached(timeout=120_000)
            expect(panel.locator(".tnb-status")).to_contain_text("done in", timeout=120_000)
            assert abs(scroller.evaluate(offset) - before) <= 3, "the transcript jumped while the learner read above"
            scroller.evaluate("el => { el.scrollTop = 0; }")
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
            page.wait_for_timeout(1500)  # the code is counting in the sandbox
            panel.get_by_role("button", name="Stop").click()
            expect(panel.locator(".tnb-status")).to_contain_text("stopped", timeout=20_000)
            expect(panel.locator(".tnb-note").last).to_have_text("Stopped.")
            expect(panel.get_by_role("button", name="Send")).to_be_enabled()
        finally:
            browser.close()
