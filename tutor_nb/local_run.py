"""Run an assistant's code again, locally, and check it against what the sandbox logged.

``rerun`` runs the code in the learner's own kernel as if pasted into a cell: output,
the last value, plots and tracebacks appear under the cell, and are kept in the result.
Outside IPython it runs the code in a fresh namespace and keeps the same things.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import html
import itertools
import linecache
import pprint
import re
import sys
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal

from .calls import CodeCall, code_html, code_calls, last_code
from .display import current_shell, safe_repr

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOT_LITERAL = object()
_cell_numbers = itertools.count(1)


def _code_of(call_or_code: Any) -> str:
    if isinstance(call_or_code, str):
        return call_or_code
    if isinstance(call_or_code, CodeCall):
        return call_or_code.code
    return last_code(call_or_code)


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


@dataclass(repr=False)
class RerunResult:
    """What a local run of the code printed, returned, displayed, or raised."""

    code: str
    stdout: str = ""
    stderr: str = ""
    value: Any = None
    value_repr: str | None = None
    error: BaseException | None = None
    traceback: str = ""
    outputs: list[dict] = field(default_factory=list)
    in_ipython: bool = False

    @property
    def success(self) -> bool:
        return self.error is None

    def _summary(self) -> str:
        if not self.success:
            return f"rerun failed: {type(self.error).__name__}: {self.error}"
        parts = [f"value {_short(self.value_repr)}" if self.value_repr is not None else "no value",
                 f"stdout {len(self.stdout.splitlines())} lines"]
        if self.stderr:
            parts.append(f"stderr {len(self.stderr.splitlines())} lines")
        if self.outputs:
            parts.append(f"{len(self.outputs)} displays")
        return "rerun ok: " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"<RerunResult {self._summary()}>"

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.success else "#cf222e"
        sections = [("stdout", self.stdout), ("stderr", self.stderr),
                    ("value", self.value_repr or ""), ("traceback", self.traceback)]
        body = "".join(f"<div><small>{name}</small><pre style='margin:0'>{html.escape(text)}</pre></div>"
                       for name, text in sections if text)
        return (f"<details><summary style='color:{colour}'>{html.escape(self._summary())}</summary>"
                f"{body}</details>")


class _Tee:
    """A text stream that passes writes through and keeps a copy, unless paused."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.kept: list[str] = []
        self.paused = False

    def write(self, text: str) -> int:
        if not self.paused:
            self.kept.append(text)
        written = self.stream.write(text)
        return len(text) if written is None else written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def text(self) -> str:
        return "".join(self.kept)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def _wrapped(obj: Any, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Replace one bound method on this instance only, for the duration."""
    own = vars(obj)
    had, previous = name in own, own.get(name)
    setattr(obj, name, wrap(getattr(obj, name)))
    try:
        yield
    finally:
        if had:
            setattr(obj, name, previous)
        else:
            delattr(obj, name)


@contextmanager
def _paused(tees: tuple[_Tee, ...]) -> Iterator[None]:
    states = [tee.paused for tee in tees]
    for tee in tees:
        tee.paused = True
    try:
        yield
    finally:
        for tee, state in zip(tees, states):
            tee.paused = state


def _rerun_in_shell(code: str, shell: Any) -> RerunResult:
    """``shell.run_cell``, watching the shell's own output paths so nothing is hidden."""
    result = RerunResult(code=code, in_ipython=True)
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    tees = (out, err)
    hook = shell.displayhook

    def start_displayhook(original: Callable) -> Callable:
        def start() -> None:  # the Out[n] prompt and value go to the value, not stdout
            out.paused = err.paused = True
            original()
        return start

    def finish_displayhook(original: Callable) -> Callable:
        def finish() -> None:
            original()
            out.paused = err.paused = False
        return finish

    def write_format_data(original: Callable) -> Callable:
        def write(format_dict: dict, md_dict: Any = None) -> None:
            result.value_repr = format_dict.get("text/plain")
            original(format_dict, md_dict)
        return write

    def publish(original: Callable) -> Callable:
        def send(data: dict, *args: Any, **kwargs: Any) -> None:
            result.outputs.append({"data": data, "metadata": kwargs.get("metadata", args[0] if args else None)})
            with _paused(tees):
                original(data, *args, **kwargs)
        return send

    def show_traceback(original: Callable) -> Callable:
        def show(etype: Any, evalue: Any, stb: list[str]) -> None:
            result.traceback = _ANSI.sub("", "\n".join(stb))
            with _paused(tees):
                original(etype, evalue, stb)
        return show

    outer_exec_result = hook.exec_result  # when called from a running cell, keep that cell's
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        with _wrapped(hook, "start_displayhook", start_displayhook), \
                _wrapped(hook, "finish_displayhook", finish_displayhook), \
                _wrapped(hook, "write_format_data", write_format_data), \
                _wrapped(shell.display_pub, "publish", publish), \
                _wrapped(shell, "_showtraceback", show_traceback):
            executed = shell.run_cell(code, store_history=False)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        hook.exec_result = outer_exec_result
    result.stdout, result.stderr = out.text(), err.text()
    result.value = executed.result
    result.error = executed.error_in_exec or executed.error_before_exec
    if result.value is not None and result.value_repr is None:
        result.value_repr = shell.display_formatter.format(result.value)[0].get("text/plain")
    return result


def _pretty(value: Any) -> str:
    try:
        from IPython.lib.pretty import pretty

        return pretty(value)
    except Exception:
        return safe_repr(value)


def _rerun_plain(code: str) -> RerunResult:
    """Exec all but a final expression, eval that; keep stdout, stderr, value, traceback."""
    result = RerunResult(code=code)
    filename = f"<rerun-{next(_cell_numbers)}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            tree = ast.parse(code, filename)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, filename, "exec"), namespace)
            if last is not None:
                result.value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
    except (Exception, SystemExit) as error:
        result.error = error
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        lines = (traceback.format_exception_only(type(error), error) if isinstance(error, SyntaxError)
                 else traceback.format_exception(type(error), error, tb))
        result.traceback = "".join(lines)
        print(result.traceback, end="", file=sys.stderr)
    result.stdout, result.stderr = out.text(), err.text()
    if result.value is not None:
        result.value_repr = _pretty(result.value)
        print(result.value_repr)
    return result


def rerun(call_or_code: Any, *, shell: Any = None) -> RerunResult:
    """Run a CodeCall's code (or code text, or the last call in steps/a Response) locally.

    In IPython (``shell`` or the running one) it runs as a cell would, in the learner's
    namespace, showing everything; outside, in a fresh namespace.
    """
    code = _code_of(call_or_code)
    shell = shell if shell is not None else current_shell()
    return _rerun_in_shell(code, shell) if shell is not None else _rerun_plain(code)


@dataclass(repr=False)
class Comparison:
    """Whether the local run showed what the sandbox logged; true when it did."""

    match: bool
    expected: str
    actual: str
    diff: str
    method: Literal["literal", "text"]

    def __bool__(self) -> bool:
        return self.match

    def _verdict(self) -> str:
        how = "as Python values" if self.method == "literal" else "as text, ignoring whitespace"
        if self.match:
            return f"match: the local run shows what the sandbox logged ({how})"
        return f"mismatch: the local run differs from the sandbox logs ({how})"

    def __repr__(self) -> str:
        return self._verdict() + (f"\n{self.diff}" if not self.match else "")

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.match else "#cf222e"
        mark = "&#10003;" if self.match else "&#10007;"
        diff = "" if self.match else f"<pre>{html.escape(self.diff)}</pre>"
        return f"<div style='color:{colour}'><b>{mark} {html.escape(self._verdict())}</b></div>{diff}"


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _shown(result: RerunResult) -> list[str]:
    """What a notebook cell shows for this run: printed text and value, together or apart."""
    stdout, value = result.stdout, result.value_repr
    if stdout and value is not None:
        return [stdout.rstrip("\n") + "\n" + value, value, stdout]
    return [value if value is not None else stdout]


def _diff(expected: str, actual: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                 "sandbox logs", "local run", lineterm="")
    return "\n".join(lines)


def compare(call: Any, result: RerunResult) -> Comparison:
    """Compare a call's sandbox logs (or given text) with what the local run showed.

    Values are compared when both sides parse as Python literals (so a list printed one
    item per line equals the same list on one line); otherwise whitespace-normalised text.
    """
    if isinstance(call, str):
        expected = call
    elif isinstance(call, CodeCall):
        expected = call.logs
    else:
        expected = code_calls(call)[-1].logs
    want = _literal(expected)
    candidates = _shown(result)
    for actual in candidates:
        got = _literal(actual)
        if want is not _NOT_LITERAL and got is not _NOT_LITERAL and want == got:
            return Comparison(True, expected, actual, "", "literal")
        if " ".join(expected.split()) == " ".join(actual.split()):
            return Comparison(True, expected, actual, "", "text")
    if want is not _NOT_LITERAL:
        for actual in candidates:
            got = _literal(actual)
            if got is not _NOT_LITERAL:
                diff = _diff(pprint.pformat(want, width=60), pprint.pformat(got, width=60))
                return Comparison(False, expected, actual, diff, "literal")
    actual = candidates[0]
    return Comparison(False, expected, actual, _diff(expected, actual), "text")


def to_cell(call_or_code: Any) -> None:
    """Put the code in a new cell below (where the front end allows) and show it to copy."""
    code = _code_of(call_or_code)
    shell = current_shell()
    if shell is None:
        print(code)
        return None
    try:
        shell.set_next_input(code, replace=False)
    except Exception:
        pass  # front ends without the feature still get the block below
    from IPython.display import display

    note = "<div><small>Code for a new cell (copy it if no new cell appeared):</small></div>"
    display({"text/plain": code, "text/html": note + code_html(code)}, raw=True)
    return None

