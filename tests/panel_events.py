"""Assistants stream events for panel tests, parsed the way the openai SDK parses them off the wire."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from openai._models import construct_type
from openai.types.beta.assistant_stream_event import AssistantStreamEvent


def event(name: str, data: dict[str, Any]) -> Any:
    return construct_type(type_=AssistantStreamEvent, value={"event": name, "data": data})


def run(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "run_1", "object": "thread.run", "thread_id": "thread_1", "status": status, **extra}


def code_step(status: str, code: str, outputs: list[dict]) -> dict[str, Any]:
    call = {"id": "call_1", "type": "code_interpreter", "code_interpreter": {"input": code, "outputs": outputs}}
    return {"id": "step_1", "object": "thread.run.step", "type": "tool_calls", "status": status,
            "step_details": {"type": "tool_calls", "tool_calls": [call] if code else []}}


def code_delta(code: str = "", outputs: list[dict] | None = None) -> Any:
    ci: dict[str, Any] = {"input": code}
    if outputs is not None:
        ci["outputs"] = outputs
    return event("thread.run.step.delta", {"id": "step_1", "object": "thread.run.step.delta", "delta": {
        "step_details": {"type": "tool_calls", "tool_calls": [{"index": 0, "type": "code_interpreter", "code_interpreter": ci}]}}})


def text_delta(text: str, message_id: str = "msg_1") -> Any:
    return event("thread.message.delta", {"id": message_id, "object": "thread.message.delta", "delta": {
        "content": [{"index": 0, "type": "text", "text": {"value": text}}]}})


def message(status: str, content: list[dict], message_id: str = "msg_1") -> dict[str, Any]:
    return {"id": message_id, "object": "thread.message", "role": "assistant", "status": status, "content": content}


def text_block(value: str, annotations: list[dict] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


def fibonacci_run(answer: str, code: str, logs: str, chunk: int = 7) -> Iterator[Any]:
    """A complete run: code written in pieces, run, logs, then the answer in pieces."""
    yield event("thread.run.created", run("queued"))
    yield event("thread.run.in_progress", run("in_progress"))
    yield event("thread.run.step.created", code_step("in_progress", "", []))
    for i in range(0, len(code), chunk):
        yield code_delta(code[i : i + chunk])
    yield code_delta(outputs=[{"index": 0, "type": "logs", "logs": logs}])
    yield event("thread.run.step.completed", code_step("completed", code, [{"type": "logs", "logs": logs}]))
    yield event("thread.message.created", message("in_progress", []))
    for i in range(0, len(answer), chunk):
        yield text_delta(answer[i : i + chunk])
    yield event("thread.message.completed", message("completed", [text_block(answer)]))
    yield event("thread.run.completed", run("completed", usage={"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}))


#: A replay cassette: a plot (an image output), a CSV file, and an answer with inline and display math
#: and a link to the file.
PLOT_CASSETTE = {
    "source": "authored",
    "description": "Panel tests: a plot and a CSV file; the answer has inline and display math and links the file.",
    "turns": [
        {"user": "y = x^2 그래프를 그려줘", "turn": 0, "reply": {"content": None, "tool_calls": [{
            "name": "code_interpreter", "arguments": json.dumps({"code": (
                "import matplotlib.pyplot as plt\n"
                "xs = list(range(-5, 6))\nplt.plot(xs, [x * x for x in xs])\nplt.title('y = x^2')\nplt.show()\n"
                "with open('/mnt/data/squares.csv', 'w') as f:\n"
                "    f.write('x,y\\n' + ''.join(f'{x},{x * x}\\n' for x in xs))\n"
                "print('그래프 완성')")})}]}},
        {"user": "y = x^2 그래프를 그려줘", "turn": 1, "reply": {
            "content": "포물선 \\( y = x^2 \\) 의 그래프입니다. 꼭짓점은 \\[ (0, 0) \\] 입니다.\n\n"
                       "[표 내려받기](sandbox:/mnt/data/squares.csv)", "tool_calls": []}},
    ],
}


#: A replay cassette whose code runs for 30 s, printing as it goes: something to Stop.
SLOW_CASSETTE = {
    "source": "authored",
    "description": "Panel tests: code that counts slowly, to be stopped.",
    "turns": [
        {"user": "1부터 60까지 천천히 세어줘", "turn": 0, "reply": {"content": None, "tool_calls": [{
            "name": "code_interpreter", "arguments": json.dumps({"code": (
                "import time\nfor i in range(1, 61):\n    print(i, flush=True)\n    time.sleep(0.5)")})}]}},
        {"user": "1부터 60까지 천천히 세어줘", "turn": 1, "reply": {"content": "60까지 세었습니다.", "tool_calls": []}},
    ],
}


def record_phases(monkeypatch: Any, builder: type) -> list[str]:
    """Every status a turn passes through (numbers as N), noted after each event ``builder`` applies."""
    seen: list[str] = []
    original = builder.apply

    def apply(self: Any, event: Any) -> None:
        original(self, event)
        phase = re.sub(r"\d+(\.\d+)?", "N", self.turn.phase())
        if not seen or seen[-1] != phase:
            seen.append(phase)

    monkeypatch.setattr(builder, "apply", apply)
    return seen
