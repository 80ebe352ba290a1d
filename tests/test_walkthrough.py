"""The terminal walkthrough's text: long values fill their lines, and math reads as text."""

from __future__ import annotations

import pytest

from tutor_nb.walkthrough import compact, readable_math

FIB = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]


def test_a_list_ipython_spread_one_item_a_line_fills_its_lines():
    spread = "[" + ",\n ".join(map(str, FIB)) + "]\n"  # what IPython's pretty printer logs for the list
    assert compact(spread, width=100) == str(FIB) + "\n"
    wrapped = compact(spread, width=40)
    assert all(len(line) <= 40 for line in wrapped.splitlines()) and len(wrapped.splitlines()) == 3
    assert eval(wrapped) == FIB


@pytest.mark.parametrize("text", ["hello\n", "Traceback (most recent call last):\n  ...\n", "42\n", "x = [1,\n 2]\n"])
def test_anything_but_one_printed_value_is_left_as_it_is(text):
    assert compact(text) == text


def test_display_math_stands_on_its_own_line_as_text():
    answer = "The numbers are:\n\n\\[ 0, 1, 1, 2, 3, 5 \\]\n\nEach is the sum of the two before it."
    assert readable_math(answer) == "The numbers are:\n\n    0, 1, 1, 2, 3, 5\n\nEach is the sum of the two before it."


@pytest.mark.parametrize(("tex", "text"), [
    (r"\( x^2 + y^{10} \)", "x² + y¹⁰"),
    (r"\( \frac{1}{2} \times 3 \leq \sqrt{16} \)", "1/2 × 3 ≤ √16"),
    (r"\( \frac{n(n+1)}{2} \)", "(n(n+1))/2"),
    (r"\( \text{area} = \pi r^2 \)", "area = π r²"),
    (r"\( a \neq b \approx c \cdot d \)", "a ≠ b ≈ c · d"),
    (r"\( 2^{x+y} \)", "2^(x+y)"),
])
def test_inline_math_becomes_unicode(tex, text):
    assert readable_math(f"So {tex} holds.") == f"So {text} holds."


def test_text_without_math_is_unchanged():
    text = "Costs $5 and $6, with a backslash \\ and [brackets]."
    assert readable_math(text) == text
