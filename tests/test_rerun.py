"""rerun / compare / to_cell, inside a real IPython InteractiveShell and in plain Python."""

from __future__ import annotations

import pytest

import fixtures_steps as fx
from fixtures_steps import ipython_shell, no_ipython  # noqa: F401 (fixtures)
from tutor_nb import Comparison, RerunResult, code_calls, compare, rerun, to_cell


@pytest.fixture
def fib_call():
    (call,) = code_calls(fx.steps_page())
    return call


# --- inside IPython -------------------------------------------------------------------------

def test_rerun_in_ipython_shows_and_returns_the_20_numbers(ipython_shell, fib_call, capsys):
    count_before = ipython_shell.execution_count
    result = rerun(fib_call)
    shown = capsys.readouterr().out
    assert isinstance(result, RerunResult) and result.in_ipython and result.success
    assert result.value == fx.fib(20)
    assert result.value_repr == fx.FIB_LOGS  # IPython prints this long list one item per line
    assert result.stdout == "" and result.stderr == ""
    assert "Out[" in shown and fx.FIB_LOGS in shown  # displayed under the cell, like a pasted cell
    assert callable(ipython_shell.user_ns["fibonacci"])  # ran in the learner's namespace
    assert ipython_shell.execution_count == count_before
    assert "4181" not in "".join(o["data"].get("text/plain", "") for o in ipython_shell.display_pub.outputs)

    comparison = compare(fib_call, result)
    assert isinstance(comparison, Comparison)
    assert comparison.match and bool(comparison) and comparison.method == "literal"
    assert comparison.diff == ""
    assert repr(comparison).startswith("match:")
    assert "#1a7f37" in comparison._repr_html_()


def test_changed_value_reports_a_mismatch_with_a_diff(ipython_shell, fib_call):
    result = rerun(fx.FIB_19_CODE)
    assert result.value == fx.fib(19)
    comparison = compare(fib_call, result)
    assert not comparison and comparison.match is False
    assert comparison.method == "literal"
    diff_lines = comparison.diff.splitlines()
    assert diff_lines[:2] == ["--- sandbox logs", "+++ local run"]
    assert "- 4181]" in diff_lines and "- 2584," in diff_lines and "+ 2584]" in diff_lines
    page = comparison._repr_html_()
    assert "#cf222e" in page and "mismatch" in page and "- 4181]" in page
    assert "- 4181]" in repr(comparison)


def test_stdout_displays_and_value_are_kept_apart_and_still_shown(ipython_shell, capsys):
    code = ("print('안녕하세요')\n"
            "from IPython.display import display\n"
            "display({'text/plain': 'a display'}, raw=True)\n"
            "6 * 7")
    result = rerun(code)
    shown = capsys.readouterr().out
    assert result.stdout == "안녕하세요\n"
    assert (result.value, result.value_repr) == (42, "42")
    assert [o["data"] for o in result.outputs] == [{"text/plain": "a display"}]
    assert [o["data"] for o in ipython_shell.display_pub.outputs] == [{"text/plain": "a display"}]
    assert "안녕하세요" in shown and "42" in shown
    assert repr(result) == "<RerunResult rerun ok: value 42, stdout 1 lines, 1 displays>"


def test_errors_show_a_traceback_and_are_kept(ipython_shell, capsys):
    result = rerun("print('before')\n1/0")
    shown = capsys.readouterr().out
    assert not result.success
    assert isinstance(result.error, ZeroDivisionError)
    assert result.stdout == "before\n"
    assert "ZeroDivisionError" in result.traceback and "1/0" in result.traceback
    assert "\x1b[" not in result.traceback
    assert "ZeroDivisionError" in shown
    assert repr(result) == "<RerunResult rerun failed: ZeroDivisionError: division by zero>"
    assert "#cf222e" in result._repr_html_()

    broken = rerun("def (")
    assert isinstance(broken.error, SyntaxError) and "SyntaxError" in broken.traceback


def test_the_shell_is_left_as_it_was(ipython_shell):
    rerun("1 + 1")
    rerun("raise ValueError('x')")
    hook = ipython_shell.displayhook
    for name in ("start_displayhook", "finish_displayhook", "write_format_data"):
        assert name not in vars(hook)
    assert "_showtraceback" not in vars(ipython_shell)
    assert "publish" not in vars(ipython_shell.display_pub)
    import sys
    assert type(sys.stdout).__name__ != "_Tee"


def test_rerun_from_inside_a_running_cell(ipython_shell):
    outer = ipython_shell.run_cell(
        "import tutor_nb\n"
        "inner = tutor_nb.rerun('inner_x = 5\\ninner_x * 2')\n"
        "inner.value + 100", store_history=False)
    assert outer.success
    assert ipython_shell.user_ns["inner"].value == 10
    assert outer.result == 110  # the outer cell's own value is not lost


def test_to_cell_sets_next_input_and_shows_the_code(ipython_shell, fib_call):
    ipython_shell.rl_next_input = None
    try:
        assert to_cell(fib_call) is None
        assert ipython_shell.rl_next_input == fx.FIB_CODE
    finally:
        ipython_shell.rl_next_input = None
    (shown,) = ipython_shell.display_pub.outputs
    assert shown["data"]["text/plain"] == fx.FIB_CODE
    assert "<span" in shown["data"]["text/html"] and "fibonacci" in shown["data"]["text/html"]


# --- plain Python ---------------------------------------------------------------------------

def test_plain_python_runs_in_a_fresh_namespace(no_ipython, fib_call, capsys):
    result = rerun(fib_call)
    assert not result.in_ipython and result.success
    assert result.value == fx.fib(20)
    assert result.value_repr == fx.FIB_LOGS
    assert fx.FIB_LOGS in capsys.readouterr().out
    assert compare(fib_call, result).match

    again = rerun("fibonacci(3)")
    assert isinstance(again.error, NameError)
    assert 'File "<rerun-' in again.traceback and "fibonacci(3)" in again.traceback
    assert "rerun.py" not in again.traceback


def test_plain_python_captures_stdout_stderr_and_tracebacks(no_ipython, capsys):
    result = rerun("import sys\nprint('out')\nprint('err', file=sys.stderr)\nx = [1]\nx[5]")
    shown = capsys.readouterr()
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert isinstance(result.error, IndexError)
    assert "x[5]" in result.traceback
    assert "out" in shown.out and "IndexError" in shown.err

    exit_code = rerun("raise SystemExit(3)")
    assert isinstance(exit_code.error, SystemExit)

    syntax = rerun("x = (")
    assert isinstance(syntax.error, SyntaxError) and "SyntaxError" in syntax.traceback


def test_plain_python_changed_value_mismatch(no_ipython, fib_call):
    comparison = compare(fib_call, rerun(fx.FIB_19_CODE))
    assert not comparison
    assert "- 4181]" in comparison.diff.splitlines()


def test_to_cell_outside_ipython_prints_the_code(no_ipython, fib_call, capsys):
    assert to_cell(fib_call) is None
    assert capsys.readouterr().out == fx.FIB_CODE + "\n"


# --- compare on text ------------------------------------------------------------------------

def test_compare_text_ignores_whitespace_only(no_ipython):
    printed = rerun("print('total:   3')\nprint('done')")
    assert compare("total: 3\ndone\n", printed).method == "text"
    assert compare("total: 3\ndone\n", printed).match
    mismatch = compare("total: 4\ndone\n", printed)
    assert not mismatch and mismatch.method == "text"
    assert "-total: 4" in mismatch.diff.splitlines() and "+total:   3" in mismatch.diff.splitlines()


def test_compare_tries_stdout_and_value_together_and_apart(no_ipython):
    both = rerun("print('sum is')\n1 + 2")
    assert compare("sum is\n3", both).match  # what a notebook cell shows: printed text, then value
    assert compare("3", both).match and compare("3", both).method == "literal"
    assert compare("sum is", both).match
    assert not compare("4", both)


def test_compare_accepts_steps_directly(no_ipython):
    assert compare(fx.steps_page(), rerun(fx.steps_page())).match


# --- in a real Jupyter kernel ---------------------------------------------------------------

@pytest.mark.slow
def test_in_a_real_jupyter_kernel(tmp_path):
    """ipykernel's shell sends values, displays and errors as messages, not through stdout."""
    import json
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    repo = Path(__file__).resolve().parent.parent
    steps = json.dumps(fx.STEPS_PAGE_JSON, ensure_ascii=False)
    cells = [
        f"import sys; sys.path.insert(0, {str(repo)!r})\nimport tutor_nb\nsteps = {steps!r}",
        "call = tutor_nb.code_calls(steps)[0]\nresult = tutor_nb.rerun(call)\n"
        "print('summary', result.value == " + repr(fx.fib(20)) + ", repr(result.stdout), result.in_ipython)",
        "tutor_nb.compare(call, result)",
        "tutor_nb.rerun('print(1)\\n1/0').traceback.splitlines()[-1]",
        "tutor_nb.show_json({'질문': '피보나치', 'code': 'a = 1\\nb = 2'})",
        "tutor_nb.to_cell(call)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = [cell.outputs for cell in notebook.cells]

    rerun_out = outs[1]
    results = [o for o in rerun_out if o.output_type == "execute_result"]
    assert results and results[0].data["text/plain"] == fx.FIB_LOGS  # shown under the cell
    streams = "".join(o.text for o in rerun_out if o.output_type == "stream")
    assert "summary True '' True" in streams

    assert outs[2][0].data["text/plain"].startswith("match:")
    assert "1\n" in "".join(o.get("text", "") for o in outs[3])  # the print is shown
    assert any(o.output_type == "error" and o.ename == "ZeroDivisionError" for o in outs[3])
    assert outs[3][-1].data["text/plain"] == "'ZeroDivisionError: division by zero'"

    (shown,) = outs[4]
    assert shown.data["application/json"] == {"질문": "피보나치", "code": "a = 1\nb = 2"}
    assert '"질문": "피보나치"' in shown.data["text/plain"]
    assert shown.metadata["application/json"] == {"expanded": False}

    assert outs[5][0].data["text/plain"] == fx.FIB_CODE
