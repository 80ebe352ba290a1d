"""Colab: tutor_nb's requirements are met by what Colab already has, so installing it there changes nothing else.

The quick tests check the requirement floors against Colab's vendored package list. The ``--colab``
ones run in CI's Colab job (``.ci/colab.sh``), inside a Python 3.13 environment pinned to that list
after tutor_nb was installed into it; ``tests/test_notebooks.py`` runs in the same job with the same
option, executing every notebook as Colab would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from test_notebooks import build, shown_text

from tutor_nb import walkthrough

ROOT = Path(__file__).resolve().parents[1]


def _load_colab_env():
    spec = importlib.util.spec_from_file_location("colab_env", ROOT / ".ci" / "colab_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


colab_env = _load_colab_env()
COLAB = colab_env.read_pins(colab_env.FREEZE)
PINS = colab_env.read_pins(colab_env.PINS)


def requirements(name: str) -> list[Requirement]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]


@pytest.mark.parametrize("requirement", requirements("requirements.txt"), ids=str)
def test_every_requirement_colab_has_is_met_by_the_version_it_has(requirement):
    """A package Colab lacks is only added (the Colab job checks that what it needs in turn is not
    replaced); one Colab has must be taken as it is."""
    name = colab_env.normalize(requirement.name)
    if name not in COLAB:
        pytest.skip(f"Colab has no {requirement.name}: the install adds it")
    assert requirement.specifier.contains(COLAB[name], prereleases=True), (
        f"{requirement} excludes Colab's {requirement.name} {COLAB[name]}: the install would replace it "
        "(lower the floor and make the code work on that version, or move the need to an extra)")


def test_nothing_only_tests_or_the_browser_need_is_a_core_requirement():
    core = {colab_env.normalize(r.name) for r in requirements("requirements.txt")}
    assert not core & {"jupyterlab", "playwright", "schemathesis", "pytest", "nbclient", "notebook"}


def test_the_pins_are_colabs_versions_and_hold_its_kernel_stack():
    assert PINS and all(COLAB.get(name) == version for name, version in PINS.items()), \
        {name: (version, COLAB.get(name)) for name, version in PINS.items() if COLAB.get(name) != version}
    own_builds = {name for name, _ in colab_env.STANDINS}
    assert set(colab_env.KERNEL_STACK) - own_builds <= set(PINS)
    assert {colab_env.normalize(r.name) for r in requirements("requirements.txt")} & set(COLAB) <= set(PINS)


def test_the_check_names_a_changed_kernel_package_and_a_resolver_error():
    before = {"ipython": "7.34.0", "traitlets": "5.7.1"}
    after = {"ipython": "9.18.0", "traitlets": "5.7.1", "tutor-nb": "0.1.0", "jedi": "0.20.1", "psutil": "7.0.0"}
    log = ("Successfully installed ipython-9.18.0\n"
           "ERROR: pip's dependency resolver does not currently take into account all the packages that are installed.\n")
    problems = colab_env.check(before, after, log)
    assert problems[0] == "ipython: 7.34.0 -> 9.18.0"
    assert f"psutil: added at 7.0.0, but Colab has {COLAB['psutil']}" in problems
    assert problems[-1].startswith("pip said: ERROR: pip's dependency resolver")
    assert len(problems) == 3  # tutor_nb and jedi (which Colab lacks) are additions, not changes
    assert colab_env.check(before, {**before, "tutor-nb": "0.1.0"}, "Successfully installed tutor_nb-0.1.0\n") == []


@pytest.mark.slow
def test_the_panels_colab_mode_survives_a_widget_manager_whose_outputs_have_no_msg_id(tmp_path):
    """After a blocking run (Colab's mode) the panel re-sends its last turn's widgets; nbclient's
    stand-in Output has no ``msg_id`` until it captures, and failed on a resent empty one."""
    cells = ["import tutor_nb\npanel = tutor_nb.ChatPanel(tutor_nb.connect(backend='replay'), updates='blocking')\npanel",
             f"panel.send({walkthrough.FIBONACCI_PROMPT!r})\nprint('status:', panel.wait(timeout=180)['status'])"]
    nb = build.execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path)
    assert "status: completed" in shown_text(nb.cells[1])


# -- in CI's Colab job only ------------------------------------------------------------------------

@pytest.fixture
def colab_job(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--colab"):
        pytest.skip("runs in CI's Colab job: bash .ci/colab.sh")


PROBE = """
import json, sys
from importlib import metadata
from IPython.utils.coloransi import TermColors  # Colab's kernel start-up uses TermColors.Green
import tutor_nb
print(json.dumps({"executable": sys.executable, "tutor_nb": tutor_nb.__file__, "key": tutor_nb.describe_api_key(),
                  "colab": "google.colab" in sys.modules, "green": TermColors.Green,
                  "versions": {name: metadata.version(name) for name in NAMES}}))
"""


@pytest.mark.slow
def test_a_kernel_started_after_the_install_runs_on_colabs_stack_with_the_installed_tutor_nb(
        colab_job, notebook_env, tmp_path):
    """The restart case: Colab's "Restart session" starts a fresh kernel on what is now on disk; it
    finds the key among Colab's secrets."""
    from jupyter_client.manager import start_new_kernel

    names = ["ipython", "ipykernel", "jupyter_client", "traitlets", "ipywidgets", "tornado", "pyzmq", "psutil"]
    secret = {"OPENAI_API_KEY": "sk-test-colab-secret-0000"}
    env = build.kernel_env(tmp_path / "data", {**notebook_env, "COLAB_STANDIN_SECRETS": json.dumps(secret)})
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        lines = []
        reply = kc.execute_interactive(f"NAMES = {names!r}\n{PROBE}", timeout=120,
                                       output_hook=lambda msg: lines.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    seen = json.loads("".join(lines))
    assert seen["executable"] == sys.executable and seen["colab"] and seen["green"]
    assert seen["key"].endswith("from Colab secrets") and secret["OPENAI_API_KEY"] not in seen["key"]
    assert not Path(seen["tutor_nb"]).is_relative_to(ROOT), "the kernel imported the checkout, not the install"
    assert seen["versions"] == {name: PINS[colab_env.normalize(name)] for name in names}
