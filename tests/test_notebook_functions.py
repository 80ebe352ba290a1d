"""Notebook 06 (your own function as a tool), run top to bottom offline, and read as a learner would."""

from __future__ import annotations

import ast
import json

import pytest

from test_notebooks import build, shown_text, stored, tagged

NAME = "06_functions"


def test_the_functions_notebook_is_built_from_its_source():
    assert NAME in build.names() and NAME not in build.stale()


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    return build.execute(stored(NAME), tmp_path_factory.mktemp("06"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_run_stops_for_the_function_and_answers_from_its_output(nb):
    stopped = shown_text(tagged(nb, "requires-action"))
    assert stopped.startswith("status: requires_action") and '"name": "get_scores"' in stopped
    call = shown_text(tagged(nb, "call"))
    assert call.startswith("get_scores {'student': 'Sara'}") and "'scores': [95, 85, 91]" in call
    answer = shown_text(tagged(nb, "answer"))
    assert answer.startswith("status: completed") and "90.3" in answer
    steps = shown_text(tagged(nb, "steps")).splitlines()
    assert steps[0] == 'tool_calls: get_scores({"student": "Sara"}) -> {"student": "Sara", "scores": [95, 85, 91]}'
    assert steps[1].startswith("message_creation: message msg_")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_loop_runs_every_call_and_a_forced_function_is_called(nb):
    loop = shown_text(tagged(nb, "loop"))
    assert 'ran get_scores({"student": "Leo"})' in loop and 'ran get_scores({"student": "Sara"})' in loop
    assert "73.3" in loop
    forced = shown_text(tagged(nb, "forced"))
    assert forced.startswith('  ran get_scores({"student": "Leo"})') and "73.3" in forced


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_structured_answer_is_data(nb):
    report = ast.literal_eval(tagged(nb, "structured").outputs[-1].data["text/plain"])
    assert set(report) == {"student", "average", "needs_help"} and report["student"] == "민준"
    assert json.dumps(report, ensure_ascii=False)  # plain JSON data
    assert shown_text(tagged(nb, "structured-use")).startswith("민준: average 86.3, does not need help")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_same_on_the_responses_api(nb):
    call = shown_text(tagged(nb, "responses-call"))
    assert call.startswith('completed -> get_scores {"student": "Sara"}')
    assert "90.3" in shown_text(tagged(nb, "responses-answer"))
    report = ast.literal_eval(tagged(nb, "responses-structured").outputs[-1].data["text/plain"])
    assert report == {"student": "민준", "average": 86.3, "needs_help": False}
