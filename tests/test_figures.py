"""Every figure a cell made is an image output, whatever matplotlib backend the model's code selected."""

from __future__ import annotations

import pytest

from test_sandbox import PNG_MAGIC, Running, running_sandbox


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory):
    with running_sandbox(tmp_path_factory.mktemp("figures"), timeout=30, pool_size=1) as running:
        yield running


def pngs(result) -> list[bytes]:
    assert result.status == "ok", result.logs
    assert all(image.startswith(PNG_MAGIC) and len(image) > 1000 for image in result.images)
    return result.images


AGG_BEFORE_PYPLOT = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.plot([1, 4, 9, 16])
plt.title("squares")
plt.show()
"""


def test_agg_selected_before_plotting_still_shows_the_chart(sb: Running) -> None:
    result = sb.execute("agg", AGG_BEFORE_PYPLOT)
    assert len(pngs(result)) == 1
    assert "non-interactive" not in result.logs  # matplotlib's "cannot be shown" warning is not the learner's problem


def test_every_open_figure_is_shown_once_and_then_closed(sb: Running) -> None:
    code = ("import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "for n in range(3):\n    plt.figure()\n    plt.bar(['a', 'b'], [n, n + 1])\n"
            "plt.savefig('/mnt/data/last.png')\n")
    assert len(pngs(sb.execute("many", code))) == 3
    assert pngs(sb.execute("many", "plt.get_fignums()")) == [] and sb.execute("many", "plt.get_fignums()").logs == "[]\n"


def test_a_closed_figure_is_not_shown(sb: Running) -> None:
    code = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots()\nax.plot([1, 2])\nfig.savefig('/mnt/data/saved.png')\nplt.close(fig)\n")
    assert pngs(sb.execute("closed", code)) == []


@pytest.mark.parametrize("thread, switch", [("switch_agg", "plt.switch_backend('Agg')"), ("use_pdf", "import matplotlib; matplotlib.use('pdf')")])
def test_switching_backend_after_pyplot_is_imported(sb: Running, thread: str, switch: str) -> None:
    code = f"import matplotlib.pyplot as plt\n{switch}\nplt.plot([3, 1, 2])\nplt.show()\n"
    assert len(pngs(sb.execute(thread, code))) == 1


def test_the_inline_backend_still_shows_each_figure_once(sb: Running) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nplt.figure()\nplt.plot([3, 2, 1])\n"
    assert len(pngs(sb.execute("inline", code))) == 2
