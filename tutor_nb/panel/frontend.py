"""Small scripts the panel asks the page to run: insert a cell, copy to the clipboard, scroll.

Core widgets cannot insert a notebook cell, and ``set_next_input`` from a widget callback only
takes effect at the next execution. So the panel puts an ``application/javascript`` output in
an ``Output`` widget (its outputs are trusted: they come from the live kernel) and that script
uses the front end's own commands:

* JupyterLab 4 and Notebook 7: ``notebook:insert-cell-below`` then
  ``notebook:replace-selection``, on the panel's own cell, through the app's command registry:
  ``window.jupyterapp`` when the page exposes it, else the registry the notebook toolbar's
  command buttons hold. The script then checks that the cell right below holds the code.
* Anywhere else (Colab, VS Code, classic Notebook) no output can insert a cell: the code goes to
  the clipboard, or, if the page refuses that too, the learner is told to copy it by hand.

The script reports what it did through a hidden ``Text`` widget of the step (typing into
its input is how a core widget hears from the page), so the panel's message says what
happened. A script older than :data:`STALE_MS` (a notebook reopened with widget state) does
nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

#: A script this old does nothing: it is being re-rendered, not answering a click.
STALE_MS = 120_000

OUTCOMES = {
    "inserted": "Inserted a new cell right below the panel's cell with this code: run it with Shift+Enter.",
    "unverified": "Asked the notebook to insert a cell below the panel's cell; check that it holds this code.",
    "copied": "This front end cannot insert a cell from here, so the code is on the clipboard: paste it into a new cell.",
    "failed": "This front end can neither insert a cell from here nor reach the clipboard: select the code above and copy it.",
}
ASKED = "Asking the notebook for a new cell below… (if nothing happens, copy the code above)"

_COMMON = r"""
const findCommands = () => {
  if (window.jupyterapp && window.jupyterapp.commands) return window.jupyterapp.commands;
  for (const node of document.querySelectorAll('[data-command]')) {
    for (const key of Object.keys(node)) {
      if (!key.startsWith('__reactFiber$')) continue;
      for (let fiber = node[key]; fiber; fiber = fiber.return) {
        const props = fiber.memoizedProps;
        if (props && props.commands && typeof props.commands.execute === 'function') return props.commands;
      }
    }
  }
  return null;
};
"""

_COPY = _COMMON + r"""
(async () => {
  const box = document.querySelector('.' + token);
  if (!box || Date.now() - created > stale) return;
  const report = (outcome) => {
    const input = box.querySelector('.tnb-report input');
    if (!input) return;
    input.value = outcome + ' ' + Date.now();
    input.dispatchEvent(new Event('input', {bubbles: true}));
  };
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const editorText = (cell) => {
    const lines = cell ? cell.querySelectorAll('.jp-InputArea-editor .cm-line') : [];
    return Array.from(lines, (line) => line.textContent).join('\n');
  };
  const insert = async () => {
    const commands = findCommands();
    const cell = box.closest('.jp-Cell');
    if (!commands || !cell || !commands.hasCommand('notebook:replace-selection')) return null;
    if (!cell.classList.contains('jp-mod-active')) {
      const prompt = cell.querySelector('.jp-InputPrompt') || cell;
      prompt.dispatchEvent(new MouseEvent('mousedown', {bubbles: true, button: 0}));
      prompt.dispatchEvent(new MouseEvent('mouseup', {bubbles: true, button: 0}));
      document.dispatchEvent(new MouseEvent('mouseup', {bubbles: true, button: 0}));
      if (!cell.classList.contains('jp-mod-active')) return null;
    }
    await commands.execute('notebook:insert-cell-below');
    await commands.execute('notebook:replace-selection', {text: code});
    await commands.execute('notebook:enter-command-mode').catch(() => {});
    const first = code.split('\n', 1)[0];
    for (let i = 0; i < 20; i++) {
      const below = cell.nextElementSibling;
      if (below && below.classList.contains('jp-Cell') && editorText(below).startsWith(first)) return 'inserted';
      await sleep(50);
    }
    return 'unverified';
  };
  const copy = async () => {
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(code); return true; }
    } catch (e) {}
    try {
      const area = document.createElement('textarea');
      area.value = code;
      area.style.position = 'fixed';
      area.style.opacity = '0';
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand('copy');
      area.remove();
      return ok;
    } catch (e) {
      return false;
    }
  };
  let outcome = null;
  try { outcome = await insert(); } catch (e) { outcome = null; }
  report(outcome || ((await copy()) ? 'copied' : 'failed'));
})();
"""

_SCROLL = r"""
(() => {
  const box = document.querySelector('.' + token);
  if (!box || Date.now() - created > stale) return;
  const scroller = box.querySelector('.tnb-transcript');
  if (scroller) scroller.scrollTop = 0;  // column-reverse: 0 is the newest line
})();
"""


def _script(body: str, token: str, **values: Any) -> dict[str, Any]:
    head = "".join(f"const {name} = {json.dumps(value)};\n" for name, value in values.items())
    head += f"const token = {json.dumps(token)};\nconst created = {int(time.time() * 1000)};\nconst stale = {STALE_MS};\n"
    source = "{\n" + head + body + "}\n"
    return {"output_type": "display_data", "data": {"application/javascript": source, "text/plain": ""}, "metadata": {}}


def copy_to_cell_output(token: str, code: str) -> dict[str, Any]:
    """An output whose script puts ``code`` in a new cell below (or on the clipboard)."""
    return _script(_COPY, token, code=code)


def scroll_to_newest_output(token: str) -> dict[str, Any]:
    """An output whose script scrolls the panel's transcript to its newest line."""
    return _script(_SCROLL, token)


def outcome_of(report: str) -> str | None:
    """The outcome word in what the page typed into the report widget."""
    word = report.split(" ", 1)[0]
    return word if word in OUTCOMES else None
