"""The teaching notebooks: stored without outputs, built from their sources, run top to bottom offline.

The slow tests execute each notebook with nbclient in a real ``python3`` kernel (no key: the
offline runtime with the built-in cassettes, real sandbox kernels) and check what a learner
would see in the outputs, not merely that no cell raised.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from typing import Callable

import nbformat
import pytest

from tutor_nb import walkthrough
from tutor_nb.runtime.backends.replay import BUILTIN_CASSETTES, load_cassette

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ["01_code_interpreter_walkthrough", "02_streaming_and_steps", "03_files_and_plots", "04_chat_panel"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load_build():
    spec = importlib.util.spec_from_file_location("notebook_build", ROOT / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def stored(name: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    found = [cell for cell in nb.cells if tag in cell.metadata.get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {tag!r}, found {len(found)}"
    return found[0]


def shown_text(cell: nbformat.NotebookNode) -> str:
    """Everything a cell showed as text: streams, and the text/plain of its displays and results."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.append(str(output.data.get("text/plain", "")))
    return "".join(parts)


def rich(output: nbformat.NotebookNode) -> str:
    """A shown answer's rich form: HTML, or in Colab (``--colab``) the Markdown it typesets math in."""
    return output.data.get("text/html") or output.data["text/markdown"]


def pngs(cell: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(output.data["image/png"]) for output in cell.get("outputs", [])
            if output.output_type in ("display_data", "execute_result") and "image/png" in output.data]


def code_of(turn) -> str:
    return json.loads(turn.tool_calls[0][1])["code"]


# -- how the notebooks are stored (fast) --------------------------------------------------------

def test_the_four_notebooks_exist_and_match_their_sources():
    assert set(REQUIRED) <= set(build.names())
    assert build.stale() == [], "run: python notebooks/build.py"


@pytest.mark.parametrize("name", REQUIRED)
def test_stored_notebooks_carry_no_outputs(name):
    nb = stored(name)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "a notebook without code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("name", REQUIRED)
def test_each_notebook_opens_with_its_colab_badge_and_the_set_up_cell(name):
    nb = stored(name)
    badge = f"{build.repository()}/blob/main/notebooks/{name}.ipynb".replace("github.com", "colab.research.google.com/github")
    assert nb.cells[0].cell_type == "markdown" and badge in nb.cells[0].source
    setup = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert setup.metadata.get("tags") == ["setup"]
    assert '"google.colab" in sys.modules' in setup.source and "%pip install" in setup.source
    assert "client = tutor_nb.connect()" in setup.source


@pytest.mark.parametrize("name", build.names())
def test_every_notebook_installs_tutor_nb_in_colab_from_the_one_place_that_says_where_it_is(name):
    """The set-up cell's ``%pip install`` is the only install line, and it names pyproject.toml's
    Repository (tutor_nb is not on PyPI); no notebook source carries an install line of its own."""
    installs = [line.strip() for cell in stored(name).cells for line in cell.source.splitlines() if "pip install" in line]
    assert installs == [f'%pip install -q "tutor_nb @ git+{build.repository()}"']
    assert "pip install" not in (ROOT / "notebooks" / "src" / f"{name}.py").read_text(encoding="utf-8")


def test_the_readme_gives_colab_the_same_install_line():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    colab = readme[readme.index("### Colab"):]
    assert f'pip install "{build.install_requirement()}"' in colab[:colab.index("\n## ")]


def test_percent_sources_parse_into_markdown_code_and_set_up_cells():
    cells = build.parse('# %% [markdown]\n# # Title\n#\n# text\n\n# %% setup\n\n# %% tags=["x"]\nx = 1\n')
    assert cells == [("markdown", "# Title\n\ntext", []), ("setup", "", []), ("code", "x = 1", ["x"])]


def test_the_walkthrough_notebook_makes_the_terminal_walkthroughs_calls_in_order():
    source = (ROOT / "notebooks" / "src" / "01_code_interpreter_walkthrough.py").read_text(encoding="utf-8")
    assert walkthrough.FIBONACCI_PROMPT in source and walkthrough.TUTOR_INSTRUCTIONS in source
    calls = ["assistants.create(", "threads.create()", "messages.create(", "runs.create_and_poll(",
             "messages.list(", 'order="asc"', "tutor_nb.code_calls(", "tutor_nb.rerun(", "tutor_nb.compare("]
    positions = [source.find(call) for call in calls]
    assert -1 not in positions and positions == sorted(positions)


# -- executed top to bottom, offline (slow) ---------------------------------------------------

@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory, notebook_env) -> Callable[[str], nbformat.NotebookNode]:
    """Executes a notebook once (in its own working folder and data dir) and keeps the result."""
    done: dict[str, nbformat.NotebookNode] = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in done:
            done[name] = build.execute(stored(name), tmp_path_factory.mktemp(name[:2]), env=notebook_env)
        return done[name]

    return run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_walkthrough_runs_offline_and_its_local_rerun_matches_the_sandbox(executed):
    nb = executed("01_code_interpreter_walkthrough")
    assert "offline runtime" in shown_text(tagged(nb, "setup"))
    assert '"status": "completed"' in shown_text(tagged(nb, "run"))
    steps = shown_text(tagged(nb, "steps"))
    assert steps.index("tool_calls completed") < steps.index("message_creation completed")
    calls = shown_text(tagged(nb, "code-calls"))
    assert "fibonacci" in calls and re.search(r"\b4181\]", calls)
    verdict = shown_text(tagged(nb, "compare"))
    assert verdict.startswith("match:"), verdict
    assert "\\[" in shown_text(tagged(nb, "answer-raw"))  # the model's Markdown as written
    answer = tagged(nb, "answer").outputs[0]
    assert "$$" in rich(answer) and "\\[" not in rich(answer) and "\\[" not in answer.data["text/plain"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_streaming_notebook_shows_code_as_written_tracebacks_follow_ups_and_a_cancel(executed):
    nb = executed("02_streaming_and_steps")
    turns = load_cassette(BUILTIN_CASSETTES / "streaming.json")
    streamed = 0
    for cell in nb.cells:
        for turn in turns:
            if cell.cell_type == "code" and f'ask("{turn.user}")' in cell.source and turn.tool_calls:
                assert code_of(turn) in shown_text(cell), f"the code for {turn.user!r} was not printed"
                streamed += 1
    assert streamed >= 4
    errors = shown_text(tagged(nb, "error-run"))
    assert "ZeroDivisionError" in errors and errors.rstrip().endswith("--- run completed ---")
    assert "[(3, 5), (5, 7)" in shown_text(tagged(nb, "follow-up"))  # `primes` from the first run
    cancel = shown_text(tagged(nb, "cancel"))
    assert "in the end: cancelled" in cancel and "step: tool_calls cancelled" in cancel
    assert re.search(r"The count reached \d+ of 30", shown_text(tagged(nb, "after-cancel")))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_files_notebook_shows_the_sandbox_chart_the_downloaded_file_and_the_local_chart(executed):
    nb = executed("03_files_and_plots")
    sandbox_pngs = pngs(tagged(nb, "chart"))
    assert sandbox_pngs and all(png.startswith(PNG_SIGNATURE) for png in sandbox_pngs)
    shown = tagged(nb, "answer").outputs[0]
    answer, link = rich(shown), ('download="' if "text/html" in shown.data else "](data:text/csv;base64,")
    assert link in answer and "sandbox:" not in answer and "data:image/png;base64," in answer
    download = shown_text(tagged(nb, "download"))
    assert "-> downloads/" in download and "predicted" in download
    local_pngs = pngs(tagged(nb, "rerun"))
    assert local_pngs and local_pngs[0].startswith(PNG_SIGNATURE)
    side_by_side = tagged(nb, "side-by-side").outputs[0].data["text/html"]
    assert side_by_side.count("data:image/png;base64,") == 2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_panel_notebook_renders_the_panel_and_its_transcript_holds_the_answer(executed):
    nb = executed("04_chat_panel")
    views = [out.data[WIDGET_VIEW]["model_id"] for out in tagged(nb, "panel").outputs
             if out.output_type == "display_data" and WIDGET_VIEW in out.data]
    assert len(views) == 1
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert views[0] in state
    sent = tagged(nb, "send").source
    answers = [t for t in load_cassette(BUILTIN_CASSETTES / "chat_panel.json") if t.user in sent and t.content]
    assert len(answers) == 1
    transcript = shown_text(tagged(nb, "transcript"))
    assert transcript.startswith("status: completed")
    # the answer is shown as the panel shows it: math for MathJax in HTML, readable math in text
    answer_html = rich(tagged(nb, "transcript").outputs[-1])
    assert "$x = 2$" in answer_html and "$$x = \\frac{5 \\pm 1}{2},$$" in answer_html
    assert "x = (5 ± 1)/2" in transcript and "\\frac" not in transcript
    assert "Use code to divide 10 by each number in 5, 2, 0, 1" in shown_text(tagged(nb, "suggestions"))
    assert any(WIDGET_VIEW in out.data for out in tagged(nb, "responses-panel").outputs if out.output_type == "display_data")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_file_search_notebook_indexes_searches_and_cites_the_course_notes(executed):
    nb = executed("05_file_search")
    assert "now: completed FileCounts(cancelled=0, completed=3, failed=0, in_progress=0, total=3)" in shown_text(
        tagged(nb, "store"))
    assert "failed - unsupported_file" in shown_text(tagged(nb, "unsupported"))
    assert shown_text(tagged(nb, "search")).split()[1] == "week2_euclid.pdf"
    assert shown_text(tagged(nb, "korean-search")).split()[1] == "week3_fibonacci_ko.txt"
    filtered = shown_text(tagged(nb, "filters")).split("week 2 and later:")
    assert "week1_recursion.md" in filtered[0] and "week1_recursion.md" not in filtered[1]
    search = tagged(nb, "search-calls").outputs[0].data
    assert "<table>" in search["text/html"] and "week2_euclid.pdf" in search["text/plain"]
    assert "queries: Euclidean algorithm greatest common divisor" in search["text/plain"]
    answer = shown_text(tagged(nb, "answer"))
    assert "[0]" in answer and "【" not in answer and answer.rstrip().endswith("[0] week2_euclid.pdf")
    assert "cites: week3_fibonacci_ko.txt" in shown_text(tagged(nb, "korean-run"))
    responses = shown_text(tagged(nb, "responses"))
    assert "['file_search_call', 'message']" in responses and "file_citation at" in responses
    assert "week2_euclid.pdf" in responses and "【" not in responses
    misses = shown_text(tagged(nb, "misses"))
    assert "'golden ratio'" in misses and "nothing found" in misses


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", build.names())
def test_every_notebook_runs_top_to_bottom_offline(executed, name):
    """Each notebook, those with no test of their own too (a cell that raises fails the run). With
    ``--colab`` the set-up cell's ``%pip install`` runs, and pip may not complain."""
    setup = re.sub(r"\x1b\[[0-9;]*m", "", shown_text(tagged(executed(name), "setup")))  # pip's colours
    assert "offline runtime" in setup and not re.search(r"(?im)^\s*error\b", setup), setup


# -- the same notebooks with a live model (slow) ------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_notebooks_run_unchanged_with_a_live_model(tmp_path, notebook_env):
    """With a key configured, ``connect()`` picks the chat backend; a stand-in model that writes
    other code than the cassettes (and never fails, so nothing needs cancelling) must not break
    any cell: no notebook may depend on the recorded turns' exact shape."""
    from fakemodel import FakeModel  # not tests.fakemodel: IPython 7 puts a "tests" package on sys.path

    with FakeModel() as model:
        key = {"OPENAI_API_KEY": "sk-test-stand-in-model"}
        # with --colab the key is a Colab secret, as the README tells Colab users to store it
        found_by = {"COLAB_STANDIN_SECRETS": json.dumps(key)} if notebook_env else key
        live = {**notebook_env, **found_by, "OPENAI_BASE_URL": model.base_url}
        for name in REQUIRED:
            before = len(model.requests)
            nb = build.execute(stored(name), tmp_path / name, env=live)
            assert "chat backend" in shown_text(tagged(nb, "setup"))
            assert len(model.requests) > before, f"{name} did not ask the model"
            if name.startswith("01"):
                assert shown_text(tagged(nb, "compare")).startswith("match:")
