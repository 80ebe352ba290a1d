"""Record the chat panel's offline questions: authored model turns, real code, real output.

No model is called. A stand-in Chat Completions server plays the turns written below (the code
a careful tutor writes for each question, and an answer written from whatever that code really
printed); the runtime runs the code in a real sandbox kernel, and its ``--record`` machinery
(the :class:`Recorder` around the chat backend) saves every turn to a cassette. So each
cassette's answers quote the output of an actual run, and replaying them runs the same code
again.

    python scripts/record_panel_cassettes.py            # rewrites tutor_nb/runtime/cassettes/panel_*.json

Each cassette says in ``source`` where its turns came from and lists its questions under
``suggestions`` (what the panel offers as buttons offline).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakemodel import FakeModel  # noqa: E402  (the tests' stand-in Chat Completions server)

CASSETTES = ROOT / "tutor_nb" / "runtime" / "cassettes"
MODEL = "authored-tutor"


@dataclass
class Question:
    """What the model does for one question: code per call, then an answer from the output."""

    text: str
    code: list[str]
    answer: Callable[[list[str]], str]  # the tool results, in order -> the final answer
    follow_up: list[Callable[[list[str]], str]] = field(default_factory=list)


def _lines(out: str) -> list[str]:
    return [line for line in out.strip().splitlines() if line.strip()]


def _after(out: str, label: str) -> str:
    """The text after ``label`` on the first output line that starts with it."""
    for line in out.splitlines():
        if line.startswith(label):
            return line[len(label):].strip()
    raise ValueError(f"the output has no line starting with {label!r}:\n{out}")


TOPICS: dict[str, tuple[str, list[Question]]] = {
    "arithmetic": ("Arithmetic: big powers, divisors, sums and factorials computed exactly.", [
        Question(
            "What is 2 to the power of 100? Use code.",
            ["n = 2 ** 100\nprint(n)\nprint('digits:', len(str(n)))"],
            lambda outs: (f"$2^{{100}} = {_lines(outs[0])[0]}$.\n\nThat is {_after(outs[0], 'digits:')} digits. "
                          "Python's integers have no size limit, so the code gives every digit exactly, "
                          "where a calculator would round to about $1.27 \\times 10^{30}$."),
        ),
        Question(
            "Use code to find the greatest common divisor and the least common multiple of 84 and 120",
            ["import math\n\na, b = 84, 120\nprint('gcd:', math.gcd(a, b))\nprint('lcm:', math.lcm(a, b))\n"
             "print('check: gcd * lcm =', math.gcd(a, b) * math.lcm(a, b), '= a * b =', a * b)"],
            lambda outs: (f"The greatest common divisor is **{_after(outs[0], 'gcd:')}** and the least common "
                          f"multiple is **{_after(outs[0], 'lcm:')}**.\n\nThey always satisfy "
                          "$\\gcd(a, b) \\cdot \\operatorname{lcm}(a, b) = a \\cdot b$, and the code checked it: "
                          + _after(outs[0], "check: gcd * lcm =").replace("= a * b =", "and $84 \\cdot 120$ =") + "."),
        ),
        Question(
            "Use code to add up the whole numbers from 1 to 1000",
            ["total = sum(range(1, 1001))\nprint('sum:', total)\nprint('formula n(n+1)/2:', 1000 * 1001 // 2)"],
            lambda outs: (f"The sum is **{_after(outs[0], 'sum:')}**.\n\nGauss's formula gives the same without adding: "
                          "$$1 + 2 + \\dots + n = \\frac{n(n+1)}{2} = \\frac{1000 \\cdot 1001}{2} = "
                          f"{_after(outs[0], 'formula n(n+1)/2:')}.$$"),
        ),
        Question(
            "Use code to compute 100 factorial and count its digits",
            ["import math\n\nf = math.factorial(100)\nprint(f)\nprint('digits:', len(str(f)))\n"
             "print('trailing zeros:', len(str(f)) - len(str(f).rstrip('0')))"],
            lambda outs: (f"$100!$ has **{_after(outs[0], 'digits:')} digits**; it begins "
                          f"`{_lines(outs[0])[0][:12]}…` and ends in {_after(outs[0], 'trailing zeros:')} zeros.\n\n"
                          "The zeros come from the factors 5 (each pairs with a 2 to make 10): "
                          "$\\lfloor 100/5 \\rfloor + \\lfloor 100/25 \\rfloor = 20 + 4 = 24$."),
        ),
    ]),
    "algebra": ("Algebra: a linear system, a quadratic's factors and roots, two lines that cross.", [
        Question(
            "Solve the system 2x + 3y = 13 and x - y = -1 with code",
            ["import numpy as np\n\nA = np.array([[2, 3], [1, -1]])\nb = np.array([13, -1])\nx, y = np.linalg.solve(A, b)\n"
             "print('x =', round(x, 6), ' y =', round(y, 6))\nprint('check:', 2 * x + 3 * y, x - y)"],
            lambda outs: (f"The solution is {_after(outs[0], 'x =').replace('  y =', ', y =').join(['$x = ', '$'])}.\n\n"
                          "Written as a matrix equation $A\\mathbf{x} = \\mathbf{b}$ with "
                          "$A = \\begin{pmatrix} 2 & 3 \\\\ 1 & -1 \\end{pmatrix}$, the code solved it with "
                          f"`np.linalg.solve`; putting the values back gives {_after(outs[0], 'check:')} "
                          "(13 and −1, as required)."),
        ),
        Question(
            "Factor x^2 + 7x + 12 and find its roots with code",
            ["import numpy as np\n\nroots = sorted(float(r) for r in np.roots([1, 7, 12]).real)\nprint('roots:', roots)\n"
             "for r in roots:\n    print(f'x = {r:g}:', r ** 2 + 7 * r + 12)"],
            lambda outs: ("The roots are $x = -4$ and $x = -3$ (the code printed "
                          f"`{_after(outs[0], 'roots:')}`), so\n\n$$x^2 + 7x + 12 = (x + 3)(x + 4).$$\n\n"
                          "Check: $3 + 4 = 7$ and $3 \\cdot 4 = 12$, and each root makes the polynomial 0."),
        ),
        Question(
            "Use code to find where the lines y = 3x - 4 and y = -x + 8 cross",
            ["from fractions import Fraction\n\n# 3x - 4 = -x + 8  ->  4x = 12\nx = Fraction(8 + 4, 3 + 1)\ny = 3 * x - 4\n"
             "print('x =', x)\nprint('y =', y)\nprint('on the second line too:', -x + 8 == y)"],
            lambda outs: (f"They cross at **({_after(outs[0], 'x =')}, {_after(outs[0], 'y =')})**.\n\n"
                          "Setting the two right-hand sides equal, $3x - 4 = -x + 8$, gives $4x = 12$, so $x = 3$ "
                          "and $y = 3 \\cdot 3 - 4 = 5$; the code confirmed the point is on the second line too "
                          f"({_after(outs[0], 'on the second line too:')})."),
        ),
    ]),
    "statistics": ("Statistics: summary numbers, a dice simulation, a correlation and its regression line.", [
        Question(
            "Find the mean, median and standard deviation of 4, 8, 15, 16, 23, 42 with code",
            ["import statistics as st\n\ndata = [4, 8, 15, 16, 23, 42]\nprint('mean:', st.mean(data))\n"
             "print('median:', st.median(data))\nprint('sample standard deviation:', round(st.stdev(data), 3))\n"
             "print('population standard deviation:', round(st.pstdev(data), 3))"],
            lambda outs: (f"- mean: **{_after(outs[0], 'mean:')}**\n- median: **{_after(outs[0], 'median:')}** "
                          "(halfway between 15 and 16)\n"
                          f"- standard deviation: **{_after(outs[0], 'sample standard deviation:')}** for a sample "
                          f"($s$, dividing by $n - 1$), {_after(outs[0], 'population standard deviation:')} for the "
                          "whole population ($\\sigma$, dividing by $n$).\n\nThe mean sits above the median "
                          "because one large value (42) pulls it up."),
        ),
        Question(
            "Simulate 10,000 rolls of two dice and show how often each total comes up",
            ["import random\nfrom collections import Counter\n\nrandom.seed(1)\n"
             "totals = Counter(random.randint(1, 6) + random.randint(1, 6) for _ in range(10_000))\n"
             "for total in range(2, 13):\n    share = totals[total] / 10_000\n"
             "    print(f'{total:2d}: {totals[total]:5d}  {share:.3f}  (exact {(6 - abs(total - 7)) / 36:.3f})')"],
            lambda outs: ("Each total's count in 10,000 rolls, its share and the exact probability:\n\n```text\n"
                          + outs[0].strip() + "\n```\n\n7 comes up most often (six of the 36 equally likely pairs "
                          "add up to 7, so $P(7) = 6/36 \\approx 0.167$), and 2 and 12 least ($1/36 \\approx 0.028$). "
                          "The simulated shares are within about 0.01 of the exact ones."),
        ),
        Question(
            "Use code to compute the correlation between hours studied 1, 2, 3, 4, 5, 6 and scores 52, 55, 61, 70, 74, 80",
            ["import statistics as st\n\nhours = [1, 2, 3, 4, 5, 6]\nscores = [52, 55, 61, 70, 74, 80]\n"
             "print('correlation r:', round(st.correlation(hours, scores), 4))\n"
             "slope, intercept = st.linear_regression(hours, scores)\n"
             "print(f'regression line: score = {slope:.2f} * hours + {intercept:.2f}')\nprint(f'slope: {slope:.1f}')"],
            lambda outs: (f"The correlation is $r = {_after(outs[0], 'correlation r:')}$: a very strong positive "
                          "relationship.\n\nThe least-squares line is $"
                          + _after(outs[0], "regression line:").replace("score", "\\text{score}")
                          .replace("hours", "\\text{hours}").replace("*", "\\cdot")
                          + f"$, so each extra hour of study goes with about {_after(outs[0], 'slope:')} more points."
                          " (Correlation is not causation: six students are a tiny sample.)"),
        ),
    ]),
    "plotting": ("Plotting: two curves on one chart, a histogram, a parabola with its roots marked.", [
        Question(
            "Plot sin(x) and cos(x) from 0 to 2π on one chart",
            ["import numpy as np\nimport matplotlib.pyplot as plt\n\nx = np.linspace(0, 2 * np.pi, 400)\n"
             "plt.figure(figsize=(6, 3.5))\nplt.plot(x, np.sin(x), label='sin(x)')\nplt.plot(x, np.cos(x), label='cos(x)')\n"
             "plt.xticks([0, np.pi / 2, np.pi, 3 * np.pi / 2, 2 * np.pi], ['0', 'π/2', 'π', '3π/2', '2π'])\n"
             "plt.axhline(0, color='gray', linewidth=0.5)\nplt.legend()\nplt.title('sin and cos on [0, 2π]')\nplt.show()\n"
             "print('they cross at x =', [round(v, 3) for v in (np.pi / 4, 5 * np.pi / 4)])"],
            lambda outs: ("Here is the chart. The two curves are the same wave shifted by a quarter turn, "
                          "$\\cos x = \\sin(x + \\pi/2)$, and they cross where $\\tan x = 1$: at $x = \\pi/4$ and "
                          f"$x = 5\\pi/4$ ({_after(outs[0], 'they cross at x =')} in the code's output)."),
        ),
        Question(
            "Draw a histogram of 1,000 normally distributed random numbers",
            ["import numpy as np\nimport matplotlib.pyplot as plt\n\nrng = np.random.default_rng(7)\n"
             "values = rng.normal(loc=0, scale=1, size=1000)\nplt.figure(figsize=(6, 3.5))\n"
             "plt.hist(values, bins=30, color='tab:blue', edgecolor='white')\nplt.title('1,000 draws from N(0, 1)')\n"
             "plt.show()\nprint('mean:', round(values.mean(), 3))\nprint('std:', round(values.std(), 3))\n"
             "print('within one std:', round(np.mean(abs(values) < 1), 3))"],
            lambda outs: (f"The histogram has the bell shape of the normal distribution. The sample's mean is "
                          f"{_after(outs[0], 'mean:')} and its standard deviation {_after(outs[0], 'std:')} "
                          "(the true values are 0 and 1), and a share of "
                          f"{_after(outs[0], 'within one std:')} of the draws lies within one standard deviation "
                          "of 0, close to the theoretical 68 %."),
        ),
        Question(
            "Plot the parabola y = x^2 - 4x + 3 and mark its roots",
            ["import numpy as np\nimport matplotlib.pyplot as plt\n\nx = np.linspace(-1, 5, 200)\ny = x ** 2 - 4 * x + 3\n"
             "roots = sorted(float(r) for r in np.roots([1, -4, 3]).real)\nplt.figure(figsize=(6, 3.5))\nplt.plot(x, y)\n"
             "plt.axhline(0, color='gray', linewidth=0.5)\nplt.scatter(roots, [0, 0], color='red', zorder=3)\n"
             "for r in roots:\n    plt.annotate(f'x = {r:g}', (r, 0), textcoords='offset points', xytext=(5, 8))\n"
             "plt.title('y = x² - 4x + 3')\nplt.show()\nprint('roots:', roots)\nprint('vertex:', (2, 2 ** 2 - 4 * 2 + 3))"],
            lambda outs: ("The parabola crosses the x-axis at the red points, $x = 1$ and $x = 3$ "
                          f"(`{_after(outs[0], 'roots:')}`), because $x^2 - 4x + 3 = (x - 1)(x - 3)$. Its lowest point, "
                          f"the vertex, is at {_after(outs[0], 'vertex:')}, halfway between the roots."),
        ),
    ]),
    "traceback": ("Tracebacks: code that fails, the error read from its output, and the fix.", [
        Question(
            "Use code to divide 10 by each number in 5, 2, 0, 1",
            ["numbers = [5, 2, 0, 1]\nfor n in numbers:\n    print(10 / n)",
             "numbers = [5, 2, 0, 1]\nfor n in numbers:\n    if n == 0:\n        print(f'10 / {n}: undefined (division by zero)')\n"
             "    else:\n        print(f'10 / {n} = {10 / n}')"],
            lambda outs: ("The first attempt stopped with `ZeroDivisionError` at the third number: dividing by 0 "
                          "is undefined, so Python raises an error instead of giving a number. The second version "
                          "checks for 0 first:\n\n```text\n" + outs[1].strip() + "\n```"),
        ),
        Question(
            "What is the square root of -9? Compute it with code",
            ["import math\nmath.sqrt(-9)",
             "import cmath\nroot = cmath.sqrt(-9)\nprint(root)\nprint('check:', root ** 2)"],
            lambda outs: ("`math.sqrt(-9)` fails with `ValueError: math domain error`: no real number squares to "
                          "−9. In the complex numbers it has the answer $\\sqrt{-9} = 3i$ (Python writes it "
                          f"`{_lines(outs[1])[0]}`), and $(3i)^2 = 9i^2 = -9$; the code's check printed "
                          f"`{_after(outs[1], 'check:')}`. (−3i is the other square root.)"),
        ),
    ]),
}


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """The tool results since the last user message (what the code printed, in order)."""
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    return [m.get("content") or "" for m in messages[last_user + 1 :] if m.get("role") == "tool"]


def _user_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def script_for(questions: dict[str, Question]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def script(request: dict[str, Any]) -> dict[str, Any]:
        messages = request["messages"]
        user = next(_user_text(m) for m in reversed(messages) if m.get("role") == "user")
        question = questions[user]
        results = _tool_results(messages)
        if len(results) < len(question.code):
            code = question.code[len(results)]
            return {"content": None, "tool_calls": [{"name": "code_interpreter", "arguments": json.dumps({"code": code})}]}
        return {"content": question.answer(results), "tool_calls": []}

    return script


def record(topic: str, description: str, questions: list[Question], out: Path) -> None:
    from tutor_nb.runtime import start

    by_text = {q.text: q for q in questions}
    with FakeModel(script_for(by_text)) as fake, tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "cassette.json"
        rt = start(backend="chat", model_base_url=fake.base_url, model=MODEL, model_api_key="unused",
                   data_dir=Path(tmp) / "data", record=target)
        try:
            client = rt.client()
            assistant = client.beta.assistants.create(model=MODEL, tools=[{"type": "code_interpreter"}])
            for question in questions:
                thread = client.beta.threads.create()  # each question on its own, as in a fresh panel
                client.beta.threads.messages.create(thread.id, role="user", content=question.text)
                run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
                if run.status != "completed":
                    raise RuntimeError(f"{question.text!r}: the run ended {run.status}: {run.last_error}")
                print(f"  {topic}: {question.text}", file=sys.stderr)
        finally:
            rt.stop()
        data = json.loads(target.read_text(encoding="utf-8"))
    data = {
        "source": (f"recorded on {dt.date.today().isoformat()} with scripts/record_panel_cassettes.py: model turns "
                   "authored there (no model was called), code run in a tutor_nb sandbox kernel, each answer "
                   "written from that run's real output"),
        "description": f"Chat panel, offline questions. {description}",
        "suggestions": [q.text for q in questions],
        "turns": data["turns"],
    }
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for topic, (description, questions) in TOPICS.items():
        record(topic, description, questions, CASSETTES / f"panel_{topic}.json")
    print(f"wrote {len(TOPICS)} cassettes, {sum(len(q) for _, q in TOPICS.values())} questions", file=sys.stderr)


if __name__ == "__main__":
    main()
