"""Build the teaching notebooks from their sources in ``notebooks/src/``, and render executed copies.

Sources use the "percent" format (``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown
cell whose lines start with ``# ``), so a review reads them as plain Python. The build adds
what every notebook shares: the "Open in Colab" badge and the set-up cell (put where the
source says ``# %% setup``). The ``.ipynb`` files are stored without outputs; executed
copies go to ``docs/notebooks/``.

    python notebooks/build.py            # rewrite notebooks/*.ipynb from the sources
    python notebooks/build.py --check    # exit 1 if a stored notebook differs from its source
    python notebooks/build.py --render   # also execute them offline into docs/notebooks/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCES = HERE / "src"
RENDERED = ROOT / "docs" / "notebooks"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"

SETUP = '''\
# Set-up: in Colab, install tutor_nb; anywhere, connect to an Assistants API runtime.
import sys
import warnings

if "google.colab" in sys.modules:
    %pip install -q "{install}"

import tutor_nb

# The openai SDK warns at every Assistants call that OpenAI retired the API; tutor_nb serves it here.
warnings.filterwarnings("ignore", r"(deprecated$|The Assistants API is deprecated)", DeprecationWarning)
client = tutor_nb.connect()'''

METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}
#: environment variables that would make a rendered copy use a real model (renders are offline)
KEY_VARIABLES = ("OPENAI_API_KEY", "OPEN_API_KEY", "OPENAI_BASE_URL")


def repository() -> str:
    """Where tutor_nb is published: ``[project.urls] Repository`` in pyproject.toml, the one place that says it.

    tutor_nb is not on PyPI, so Colab installs it from this repository, and the badges open the
    notebooks from it; both follow this address.
    """
    import tomllib  # Python 3.11+

    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["urls"]["Repository"].rstrip("/")


def install_requirement() -> str:
    """What the notebooks' set-up cell gives ``%pip install`` in Colab."""
    return f"tutor_nb @ git+{repository()}"


def colab_url(name: str) -> str:
    """The notebook ``name`` opened in Colab, from the repository's main branch."""
    return repository().replace("https://github.com/", "https://colab.research.google.com/github/", 1) + \
        f"/blob/main/notebooks/{name}.ipynb"


def names() -> list[str]:
    """The notebooks, by file stem, in teaching order."""
    return sorted(path.stem for path in SOURCES.glob("[0-9][0-9]_*.py"))


def parse(text: str) -> list[tuple[str, str, list[str]]]:
    """Percent-format text -> [(kind, source, tags)], kind being "markdown", "code" or "setup"."""
    cells: list[tuple[str, list[str], list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            header = line[4:].strip()
            kind = "markdown" if header.startswith("[markdown]") else "setup" if header == "setup" else "code"
            tags = json.loads(header.split("tags=", 1)[1]) if "tags=" in header else []
            cells.append((kind, [], tags))
        elif cells:
            kind, lines, _ = cells[-1]
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line.lstrip("#")
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n"), tags) for kind, lines, tags in cells]


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` as it is stored: badge, set-up cell, no outputs, stable cell ids."""
    nb = nbformat.v4.new_notebook(metadata=METADATA)
    badge = BADGE.format(url=colab_url(name))
    setup = SETUP.replace("{install}", install_requirement())
    parts = parse((SOURCES / f"{name}.py").read_text(encoding="utf-8"))
    if not parts or parts[0][0] != "markdown":
        raise ValueError(f"{name}: a notebook source starts with a Markdown cell (its title)")
    for number, (kind, source, tags) in enumerate(parts):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(badge + "\n\n" + source if number == 0 else source)
        else:
            cell = nbformat.v4.new_code_cell(setup if kind == "setup" else source)
            tags = ["setup"] if kind == "setup" else tags
        if tags:
            cell.metadata["tags"] = tags
        cell.id = f"{name[:2]}-{number:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def stale() -> list[str]:
    """Notebooks whose stored ``.ipynb`` differs from what their source builds."""
    return [name for name in names()
            if not (HERE / f"{name}.ipynb").exists()
            or (HERE / f"{name}.ipynb").read_text(encoding="utf-8") != text(build(name))]


def kernel_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a notebook is executed in: offline (unless ``extra`` names a model), a fresh
    data folder, this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TUTOR_NB_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


def execute(
    nb: nbformat.NotebookNode, workdir: Path, *, timeout: int = 240, env: dict[str, str] | None = None,
) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh ``python3`` kernel started in ``workdir``; returns it with outputs
    (streams coalesced).

    The kernel gets :func:`kernel_env` plus ``env``, so it uses the offline runtime (unless
    ``env`` configures a model) with its own data under ``workdir``. A cell that raises stops the run with nbclient's ``CellExecutionError``.
    """
    from nbclient import NotebookClient

    workdir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(workdir)}})
    client.execute(env=kernel_env(workdir / "tutor_nb_data", env))
    return coalesce_streams(nb)


def coalesce_streams(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Join runs of stdout (or stderr) pieces into one output each: streamed code arrives in hundreds."""
    for cell in nb.cells:
        merged: list = []
        for output in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if (output.output_type == "stream" and last is not None and last.output_type == "stream"
                    and last.name == output.name):
                last.text += output.text
            else:
                merged.append(output)
        if cell.cell_type == "code":
            cell.outputs = merged
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the stored notebooks are up to date")
    parser.add_argument("--render", action="store_true", help="also execute them offline into docs/notebooks/")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for name in outdated:
            print(f"{name}.ipynb differs from src/{name}.py: run python notebooks/build.py")
        return 1 if outdated else 0
    for name in names():
        (HERE / f"{name}.ipynb").write_text(text(build(name)), encoding="utf-8")
        print(f"built notebooks/{name}.ipynb")
    if args.render:
        RENDERED.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tutor_nb_render_") as scratch:
            for name in names():
                executed = execute(build(name), Path(scratch) / name)
                (RENDERED / f"{name}.ipynb").write_text(text(executed), encoding="utf-8")
                print(f"rendered docs/notebooks/{name}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
