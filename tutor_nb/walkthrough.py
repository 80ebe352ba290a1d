"""The code-interpreter walkthrough as a terminal program: ``python -m tutor_nb walkthrough``.

It makes the same calls as notebooks/01_code_interpreter_walkthrough.ipynb, on the local
runtime (offline unless a model is configured), and prints what each call returned.
"""

from __future__ import annotations

import time
from typing import Any

TUTOR_INSTRUCTIONS = (
    "You are a personal math tutor. When asked a math question, write and run code to answer the question."
)
FIBONACCI_PROMPT = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"


def _heading(n: int, title: str) -> None:
    print(f"\n── {n}. {title} " + "─" * max(0, 60 - len(title)))


def main(
    *, backend: str | None = None, model_base_url: str | None = None, model_api_key: str | None = None,
    model: str | None = None,
) -> int:
    from . import code_calls, compare, connect, rerun, show_json

    _heading(1, "Connect")
    client = connect(backend=backend, model_base_url=model_base_url, model_api_key=model_api_key, model=model)

    _heading(2, "Create a math-tutor assistant with the code_interpreter tool")
    assistant = client.beta.assistants.create(
        name="Math tutor", instructions=TUTOR_INSTRUCTIONS, model=model or "gpt-4o",
        tools=[{"type": "code_interpreter"}],
    )
    show_json(assistant)

    _heading(3, "Open a thread, post the question, run it and wait")
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIBONACCI_PROMPT)
    print(f"question: {FIBONACCI_PROMPT}")
    started = time.perf_counter()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    print(f"run {run.id}: {run.status} in {time.perf_counter() - started:.2f} s", end="")
    print(f", {run.usage.total_tokens} tokens" if run.usage else "")
    if run.status != "completed":
        print(f"The run did not complete: {run.last_error.message if run.last_error else run.status}")
        return 1

    _heading(4, "The messages of the thread (newest first)")
    messages = client.beta.threads.messages.list(thread_id=thread.id)
    for message in messages.data:
        text = "".join(block.text.value for block in message.content if block.type == "text")
        print(f"[{message.role}] {text}\n")

    _heading(5, "The run's steps: what the assistant did, in order")
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
    for step in steps.data:
        print(f"{step.id}: {step.type} ({step.status})")
    show_json(steps)

    _heading(6, "The code the model wrote, and what the sandbox printed")
    calls = code_calls(steps)
    for call in calls:
        print(call.code)
        print("--- logs ---")
        print(call.logs)

    _heading(7, "Run the same code here, and compare")
    result = rerun(calls[-1])
    comparison = compare(calls[-1], result)
    print(_plain(comparison))
    return 0 if comparison else 1


def _plain(obj: Any) -> str:
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if bundle is not None:
        data = bundle()
        data = data[0] if isinstance(data, tuple) else data
        if "text/plain" in data:
            return data["text/plain"]
    return repr(obj)
