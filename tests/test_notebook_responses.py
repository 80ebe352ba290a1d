"""Notebook 07 (the Responses API), run top to bottom offline with nbclient, and read as a learner would."""

from __future__ import annotations

import re

import pytest

from conftest import FIB_NUMBERS
from test_notebooks import build, shown_text, stored, tagged

NAME = "07_responses_api"
EVEN = [n for n in FIB_NUMBERS if n % 2 == 0]


def test_the_responses_notebook_is_built_from_its_source():
    assert NAME in build.names() and NAME not in build.stale()
    table = (build.SOURCES / f"{NAME}.py").read_text(encoding="utf-8")
    for assistants, responses in [("thread", "previous_response_id"), ("run step `tool_calls`", "code_interpreter_call"),
                                  ("code interpreter session", "container"), ("submit_tool_outputs", "function_call_output")]:
        row = next(line for line in table.splitlines() if line.startswith("# |") and assistants in line)
        assert responses in row, row


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    return build.execute(stored(NAME), tmp_path_factory.mktemp("07"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_request_answers_and_its_output_items_read_field_by_field(nb):
    created = shown_text(tagged(nb, "create"))
    assert re.match(r"resp_\w+ completed\n", created) and str(FIB_NUMBERS[-1]) in created
    items = shown_text(tagged(nb, "items"))
    assert items.index("output[0]: code_interpreter_call") < items.index("output[1]: message")
    assert re.search(r"container_id: cntr_\w+", items) and "fibonacci_numbers.append(a)" in items
    assert re.search(r"outputs\[\]: logs: \[0,\s+1,\s+1,", items) and "role:   assistant" in items
    tree = shown_text(tagged(nb, "json"))
    assert '"type": "code_interpreter_call"' in tree and '"usage"' in tree
    assert "match: the local run shows what the sandbox logged" in shown_text(tagged(nb, "compare"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_follow_up_runs_in_the_same_container_with_the_first_ones_variable(nb):
    chain = shown_text(tagged(nb, "chain"))
    assert "fibonacci_numbers if n % 2 == 0" in chain and f"-> {EVEN}" in chain
    assert "same container: True" in chain and "0, 2, 8, 34, 144, 610, 2584" in chain.splitlines()[-1]
    assert shown_text(tagged(nb, "input-items")).strip() == "message user 그중 짝수만 코드로 골라줘"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_containers_files_are_listed_cited_and_downloaded(nb):
    answer = shown_text(tagged(nb, "container"))
    assert "Sara 90.3" in answer
    assert re.search(r"container_file_citation: averages\.csv = cfile_\w+, at 'sandbox:/mnt/data/averages\.csv'", answer)
    files = shown_text(tagged(nb, "container-files"))
    assert re.search(r"/mnt/data/scores\.csv\s+user\s+\d+ bytes", files)
    assert re.search(r"/mnt/data/averages\.csv\s+assistant\s+\d+ bytes", files)
    assert "name,average\nSara,90.3\nLeo,73.3\n민준,86.3" in files.replace("\r\n", "\n")
    assert shown_text(tagged(nb, "container-delete")).startswith("after delete: 404 No container found")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_both_apis_side_by_side_and_the_hosted_cells_pass_offline_in_one_line(nb):
    side = shown_text(tagged(nb, "side-by-side")).splitlines()
    assert side == ["Assistants: run completed ['tool_calls', 'message_creation']",
                    "Responses:  response completed ['code_interpreter_call', 'message']", "same code: True"]
    for tag, start in (("hosted", "No OpenAI key configured:"), ("hosted-compare", "Offline:")):
        cell = tagged(nb, tag)
        lines = shown_text(cell).strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), lines
        assert not any(o.output_type == "error" for o in cell.outputs)
