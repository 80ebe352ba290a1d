"""previous_response_id chains, whose settled turns the runtime keeps in memory once read: they must answer
as the store would (a deleted turn breaks the chain after it; a long chain still has its first variable)."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.slow  # real kernels, a dozen turns
CODE = [{"type": "code_interpreter", "container": {"type": "auto"}}]


def turn(client, text: str, previous: str | None = None):
    response = client.responses.create(model="gpt-4o", input=text, tools=CODE, previous_response_id=previous,
                                       include=["code_interpreter_call.outputs"])
    assert response.status == "completed", response.error
    return response


def test_a_long_chain_keeps_its_first_variable_and_its_whole_history(client):
    first = turn(client, "Set x to 21 and show it")
    previous = first
    for _ in range(6):
        previous = turn(client, "Double x", previous.id)  # x * 2, in the same container: always 42
        logs = "".join(o.logs for item in previous.output if item.type == "code_interpreter_call"
                       for o in item.outputs)
        assert "42" in logs
    again = turn(client, "Double x", previous.id)
    assert again.output[0].container_id == first.output[0].container_id


def test_deleting_a_turn_breaks_the_chain_after_it_even_once_it_was_read(client):
    first = turn(client, "Set x to 21 and show it")
    second = turn(client, "Double x", first.id)
    third = turn(client, "Double x", second.id)  # reads (and keeps) first and second
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError, match=second.id):
        turn(client, "Double x", third.id)
    with pytest.raises(openai.NotFoundError, match=second.id):
        turn(client, "Double x", second.id)
    assert turn(client, "Double x", first.id).status == "completed"
