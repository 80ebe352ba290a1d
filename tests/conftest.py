"""Shared fixtures. Tests never reach the network and never see a real key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["reliability"]  # the fault_report fixture; docs/reliability.md when asked (--reliability-report)


COLAB_STANDIN = Path(__file__).resolve().parents[1] / ".ci" / "colab" / "standin"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--colab", action="store_true",
                     help="run notebooks as Colab does (CI's Colab job, .ci/colab.sh, in its Colab-pinned environment)")


@pytest.fixture(scope="session")
def notebook_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Extra environment for executed notebooks' kernels: none, or with ``--colab`` what Colab's kernels
    have: ``google.colab`` (a stand-in) imported before the first cell, and the installed tutor_nb, not
    this checkout, to import."""
    if not request.config.getoption("--colab"):
        return {}
    ipython_dir = tmp_path_factory.mktemp("colab_ipython")
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text("import google.colab\n")
    return {"PYTHONPATH": str(COLAB_STANDIN), "IPYTHONDIR": str(ipython_dir)}


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    """No key from the developer's machine, and a throwaway data folder for the shared runtime."""
    saved = {k: os.environ.pop(k) for k in ("OPENAI_API_KEY", "OPEN_API_KEY", "OPENAI_BASE_URL") if k in os.environ}
    os.environ["TUTOR_NB_DATA_DIR"] = str(tmp_path_factory.mktemp("tutor_nb_data"))
    yield
    os.environ.update(saved)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory):
    """A real runtime on 127.0.0.1 with the replay backend and a fresh data folder."""
    from tutor_nb.runtime import start

    rt = start(backend="replay", data_dir=tmp_path_factory.mktemp("runtime"), exec_timeout=30,
               cassettes=[data_path("cassettes")])
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def client(runtime):
    return runtime.client(max_retries=0)


TUTOR_INSTRUCTIONS = (
    "You are a personal math tutor. When asked a math question, write and run code to answer the question."
)
FIB_PROMPT = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"
FIB_NUMBERS = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]


@pytest.fixture(scope="module")
def tutor(client):
    return client.beta.assistants.create(
        instructions=TUTOR_INSTRUCTIONS, model="gpt-4o", tools=[{"type": "code_interpreter"}]
    )


def data_path(name: str) -> Path:
    return Path(__file__).parent / "data" / name
