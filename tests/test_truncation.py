"""What of a conversation is sent: last_messages and max_prompt_tokens, on Chat Completions message lists."""

from __future__ import annotations

import pytest

from tutor_nb.runtime.truncation import PromptTooLong, count_tokens, text_tokens, truncate, units

SYSTEM = {"role": "system", "content": "You are a math tutor."}


def user(text):
    return {"role": "user", "content": text}


def answer(text):
    return {"role": "assistant", "content": text}


def code(call_id, source="1 + 1", result="2"):
    return [{"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "code_interpreter", "arguments": source}}]},
            {"role": "tool", "tool_call_id": call_id, "content": result}]


def thread(turns: int, words: int = 5) -> list[dict]:
    messages = [SYSTEM]
    for n in range(turns):
        messages += [user(f"question {n} " + "word " * words), *code(f"call_{n}"), answer(f"answer {n}")]
    return messages


def test_tokens_are_counted_as_cl100k_does_with_nothing_downloaded():
    assert text_tokens("hello world") == 2
    assert text_tokens("") == 0
    assert 10 < text_tokens("코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘") < 40
    assert count_tokens([user("hello world")]) > text_tokens("hello world")


def test_a_tool_call_and_its_results_are_one_unit():
    grouped = units([user("q"), *code("a"), answer("x")])
    assert [len(u) for u in grouped] == [1, 2, 1]
    parallel = {"role": "assistant", "content": None, "tool_calls": [{"id": "a", "function": {}}, {"id": "b", "function": {}}]}
    grouped = units([parallel, {"role": "tool", "tool_call_id": "a", "content": "1"},
                     {"role": "tool", "tool_call_id": "b", "content": "2"}, user("next")])
    assert [len(u) for u in grouped] == [3, 1]


def test_nothing_is_dropped_without_a_limit():
    messages = thread(3)
    assert truncate(messages) == messages
    assert truncate(messages, last_messages=100, max_tokens=10**6) == messages


def test_last_messages_counts_messages_not_tool_results():
    messages = thread(3) + [user("now this")]
    kept = truncate(messages, last_messages=1)
    assert kept == [SYSTEM, user("now this")]
    kept = truncate(messages, last_messages=2)
    assert kept == [SYSTEM, answer("answer 2"), user("now this")]
    kept = truncate(messages, last_messages=3)
    assert kept == [SYSTEM, user("question 2 " + "word " * 5), *code("call_2"), answer("answer 2"), user("now this")]


def test_the_runs_own_messages_are_always_kept():
    messages = thread(2) + [user("now this")]
    boundary = len(messages)
    messages += code("call_mine", result="a long result " * 50)
    kept = truncate(messages, keep_from=boundary, last_messages=1)
    assert kept == [SYSTEM, user("now this"), *code("call_mine", result="a long result " * 50)]


def test_max_tokens_drops_oldest_first_and_never_splits_a_pair():
    messages = thread(10, words=40) + [user("now this")]
    full = count_tokens(messages)
    kept = truncate(messages, max_tokens=full // 2)
    assert count_tokens(kept) <= full // 2
    assert kept[0] == SYSTEM and kept[-1] == user("now this")
    assert kept[1:] == messages[len(messages) - len(kept) + 1:]  # a suffix: the newest, in order
    assert kept[1]["role"] != "tool" and not kept[-2].get("tool_calls")


def test_a_budget_too_small_for_the_newest_message_says_so():
    messages = [SYSTEM, user("word " * 400)]
    with pytest.raises(PromptTooLong) as caught:
        truncate(messages, max_tokens=100)
    assert caught.value.tokens > 400 and caught.value.budget == 100
    assert "max_prompt_tokens=100" in str(caught.value)


def test_tool_definitions_count_against_the_budget():
    tools = [{"type": "function", "function": {"name": "f", "description": "word " * 300, "parameters": {}}}]
    messages = thread(4) + [user("now this")]
    budget = count_tokens(messages) + 10
    assert truncate(messages, max_tokens=budget) == messages
    assert len(truncate(messages, max_tokens=budget + 300, tools=tools)) < len(messages)
