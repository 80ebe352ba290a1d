"""The code-interpreter walkthrough as a terminal program: ``python -m tutor_nb walkthrough``.

It makes the same calls as notebooks/01_code_interpreter_walkthrough.ipynb, on the local
runtime (offline unless a model is configured), and prints what each call returned.
"""

from __future__ import annotations

import ast
import contextlib
import io
import pprint
import re
import shutil
import time
from typing import Any

TUTOR_INSTRUCTIONS = (
    "You are a personal math tutor. When asked a math question, write and run code to answer the question."
)
FIBONACCI_PROMPT = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"


def _heading(n: int, title: str) -> None:
    print(f"\n── {n}. {title} " + "─" * max(0, 60 - len(title)))


def main(
    *, backend: str | None = None, model_base_url: str | None = None, model_api_key: str | None = None,
    model: str | None = None,
) -> int:
    from . import code_calls, compare, connect, rerun, show_json
    from .display import to_jsonable

    _heading(1, "Connect")
    client = connect(backend=backend, model_base_url=model_base_url, model_api_key=model_api_key, model=model)

    _heading(2, "Create a math-tutor assistant with the code_interpreter tool")
    assistant = client.beta.assistants.create(
        name="Math tutor", instructions=TUTOR_INSTRUCTIONS, model=model or "gpt-4o",
        tools=[{"type": "code_interpreter"}],
    )
    show_json(assistant)

    _heading(3, "Open a thread, post the question, run it and wait")
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIBONACCI_PROMPT)
    print(f"question: {FIBONACCI_PROMPT}")
    started = time.perf_counter()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    print(f"run {run.id}: {run.status} in {time.perf_counter() - started:.2f} s", end="")
    print(f", {run.usage.total_tokens} tokens" if run.usage else "")
    if run.status != "completed":
        print(f"The run did not complete: {run.last_error.message if run.last_error else run.status}")
        return 1

    _heading(4, "The messages of the thread (newest first)")
    messages = client.beta.threads.messages.list(thread_id=thread.id)
    for message in messages.data:
        text = "".join(block.text.value for block in message.content if block.type == "text")
        print(f"[{message.role}] {readable_math(text)}\n")

    _heading(5, "The run's steps: what the assistant did, in order")
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
    for step in steps.data:
        print(f"{step.id}: {step.type} ({step.status})")
    print("(long outputs in the logs below are re-wrapped to fit the terminal)")
    show_json(_compact_logs(to_jsonable(steps)))

    _heading(6, "The code the model wrote, and what the sandbox printed")
    calls = code_calls(steps)
    for call in calls:
        print(call.code)
        print("--- logs ---")
        print(compact(call.logs).rstrip("\n"))

    _heading(7, "Run the same code here, and compare")
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        result = rerun(calls[-1])
    print(compact(shown.getvalue()).rstrip("\n"))
    comparison = compare(calls[-1], result)
    print(_plain(comparison))
    return 0 if comparison else 1


def compact(text: str, width: int | None = None) -> str:
    """A printed Python value that IPython spread one item a line (a list of 20 numbers), filling lines instead.

    Anything that is not one literal value (several prints, a traceback) comes back unchanged.
    """
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    if not isinstance(value, (list, tuple, dict, set)):
        return text
    width = width or min(100, shutil.get_terminal_size((100, 24)).columns)
    return pprint.pformat(value, width=width, compact=True, sort_dicts=False) + ("\n" if text.endswith("\n") else "")


def _compact_logs(data: Any) -> Any:
    """JSON data with every code-interpreter ``logs`` string passed through :func:`compact`."""
    if isinstance(data, dict):
        return {k: compact(v) if k == "logs" and isinstance(v, str) else _compact_logs(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_compact_logs(item) for item in data]
    return data


_SYMBOLS = {
    "times": "×", "cdot": "·", "div": "÷", "pm": "±", "mp": "∓", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "equiv": "≡", "infty": "∞", "to": "→", "rightarrow": "→",
    "Rightarrow": "⇒", "ldots": "…", "dots": "…", "cdots": "⋯", "sum": "Σ", "prod": "Π", "int": "∫",
    "partial": "∂", "in": "∈", "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "Delta": "Δ",
    "epsilon": "ε", "theta": "θ", "lambda": "λ", "mu": "μ", "pi": "π", "sigma": "σ", "phi": "φ", "omega": "ω",
    "circ": "°", "degree": "°", "quad": "  ", "qquad": "    ", "left": "", "right": "", "displaystyle": "",
}
_SUPERSCRIPT = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_BRACED = r"\{([^{}]*)\}"


def readable_math(text: str) -> str:
    r"""LaTeX math in an answer (``\[ ... \]``, ``\( ... \)``, ``$$ ... $$``) as plain text a terminal can show.

    Display math goes on its own indented line; fractions, roots, powers and the common symbols become
    their Unicode look-alikes. Notebooks render the math itself (``tutor_nb.show_message``).
    """
    parts = re.split(r"\\\[(.+?)\\\]|\$\$(.+?)\$\$", text, flags=re.S)
    out = parts[0]
    for index in range(1, len(parts), 3):
        math, after = parts[index] or parts[index + 1], parts[index + 2]
        out = out.rstrip(" \t")
        out += ("" if not out or out.endswith("\n") else "\n") + "    " + _plain_math(math) + "\n"
        out += after.lstrip(" \t").removeprefix("\n")
    return re.sub(r"\\\((.+?)\\\)", lambda m: _plain_math(m.group(1)), out, flags=re.S)


def _plain_math(tex: str) -> str:
    tex = tex.strip()
    for _ in range(4):  # nested fractions and roots, innermost first
        tex = re.sub(r"\\[dt]?frac" + _BRACED + _BRACED, lambda m: f"{_group(m.group(1))}/{_group(m.group(2))}", tex)
        tex = re.sub(r"\\sqrt" + _BRACED, lambda m: "√" + _group(m.group(1)), tex)
        tex = re.sub(r"\\(?:text|mathrm|mathbf|operatorname)" + _BRACED, r"\1", tex)
    tex = re.sub(r"\^" + _BRACED + r"|\^(\w)", _power, tex)
    tex = re.sub(r"_" + _BRACED, r"_\1", tex)
    tex = re.sub(r"\\([A-Za-z]+)", lambda m: _SYMBOLS.get(m.group(1), m.group(1)), tex)
    tex = re.sub(r"\\[,;:! ]", " ", tex).replace("{", "").replace("}", "")
    return re.sub(r"[ \t]{2,}", " ", tex)


def _group(part: str) -> str:
    part = part.strip()
    return part if re.fullmatch(r"[\w.√]+", part) else f"({part})"


def _power(match: re.Match) -> str:
    exponent = match.group(1) if match.group(1) is not None else match.group(2)
    raised = exponent.translate(_SUPERSCRIPT)
    return raised if all(c in "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ" for c in raised) else f"^({exponent})"


def _plain(obj: Any) -> str:
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if bundle is not None:
        data = bundle()
        data = data[0] if isinstance(data, tuple) else data
        if "text/plain" in data:
            return data["text/plain"]
    return repr(obj)
