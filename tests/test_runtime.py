"""The runtime through the official SDK over real HTTP, with real kernels (replay backend)."""

from __future__ import annotations

import ast
import time

import openai
import pytest
from openai import AssistantEventHandler

from conftest import FIB_NUMBERS, FIB_PROMPT


def ask(client, assistant, text, thread=None, **kwargs):
    thread = thread or client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=text)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, **kwargs)
    return thread, run


def steps_of(client, thread, run):
    return client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data


def test_walkthrough_flow(client, tutor):
    assert tutor.id.startswith("asst_") and tutor.tools[0].type == "code_interpreter"
    thread, run = ask(client, tutor, FIB_PROMPT)
    assert run.status == "completed", run.last_error
    assert run.usage is not None and run.usage.total_tokens > 0
    assert run.completed_at >= run.started_at >= run.created_at

    messages = client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"]
    answer = messages.data[0].content[0].text.value
    assert "4181" in answer and messages.data[0].run_id == run.id
    assert messages.first_id == messages.data[0].id and messages.has_more is False

    steps = steps_of(client, thread, run)
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert all(s.status == "completed" for s in steps)
    call = steps[0].step_details.tool_calls[0]
    assert call.type == "code_interpreter" and "fibonacci" in call.code_interpreter.input.lower()
    logs = call.code_interpreter.outputs[0].logs
    assert ast.literal_eval(logs) == FIB_NUMBERS
    assert steps[1].step_details.message_creation.message_id == messages.data[0].id


def test_state_carries_across_runs_in_a_thread(client, tutor):
    thread, first = ask(client, tutor, "Set x to 21 and show it")
    assert first.status == "completed"
    _, second = ask(client, tutor, "Double x", thread=thread)
    assert second.status == "completed", second.last_error
    logs = steps_of(client, thread, second)[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert logs.strip() == "42"


def test_plot_gives_png_image_output(client, tutor):
    thread, run = ask(client, tutor, "Plot y = x squared")
    assert run.status == "completed", run.last_error
    outputs = steps_of(client, thread, run)[0].step_details.tool_calls[0].code_interpreter.outputs
    images = [o for o in outputs if o.type == "image"]
    assert images, outputs
    data = client.files.content(images[0].image.file_id).read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.content[0].type == "image_file"
    assert message.content[0].image_file.file_id == images[0].image.file_id


def test_traceback_lands_in_logs_and_run_completes(client, tutor):
    thread, run = ask(client, tutor, "Divide one by zero")
    assert run.status == "completed"
    logs = steps_of(client, thread, run)[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert "ZeroDivisionError" in logs


def test_generated_file_is_cited_and_downloadable(client, tutor):
    thread, run = ask(client, tutor, "Save the squares to a CSV")
    assert run.status == "completed", run.last_error
    text = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text
    paths = [a for a in text.annotations if a.type == "file_path"]
    assert paths and paths[0].text == "sandbox:/mnt/data/squares.csv"
    assert text.value[paths[0].start_index:paths[0].end_index] == paths[0].text
    content = client.files.content(paths[0].file_path.file_id).read().decode()
    assert content.splitlines()[:2] == ["n,square", "1,1"]


def test_uploaded_attachment_is_in_the_working_folder(client, tutor):
    uploaded = client.files.create(file=("numbers.csv", b"number\n1\n2\n39\n"), purpose="assistants")
    assert uploaded.filename == "numbers.csv" and uploaded.bytes == 14
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="Sum the numbers column of the attached file",
        attachments=[{"file_id": uploaded.id, "tools": [{"type": "code_interpreter"}]}],
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id)
    assert run.status == "completed", run.last_error
    logs = steps_of(client, thread, run)[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert logs.strip() == "42"


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.code, self.text, self.logs, self.events, self.ended = [], [], [], [], False

    def on_event(self, event) -> None:
        self.events.append(event.event)

    def on_tool_call_delta(self, delta, snapshot) -> None:
        if delta.type == "code_interpreter" and delta.code_interpreter:
            if delta.code_interpreter.input:
                self.code.append(delta.code_interpreter.input)
            for output in delta.code_interpreter.outputs or []:
                if output.type == "logs":
                    self.logs.append(output.logs)

    def on_text_delta(self, delta, snapshot) -> None:
        self.text.append(delta.value)

    def on_end(self) -> None:
        self.ended = True


def test_stream_with_event_handler(client, tutor):
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIB_PROMPT)
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=tutor.id, event_handler=handler) as stream:
        stream.until_done()
    assert handler.ended
    assert len(handler.code) > 3, "code should arrive in several deltas"
    steps = steps_of(client, thread, stream.get_final_run())
    assert "".join(handler.code) == steps[0].step_details.tool_calls[0].code_interpreter.input
    assert ast.literal_eval("".join(handler.logs)) == FIB_NUMBERS
    assert "4181" in "".join(handler.text)
    events = handler.events
    assert events[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert events[-1] == "thread.run.completed"
    assert events.index("thread.run.step.created") < events.index("thread.run.step.delta")
    assert events.index("thread.message.created") < events.index("thread.message.delta")
    final = stream.get_final_messages()
    assert "4181" in final[0].content[0].text.value


def test_create_thread_and_run_stream(client, tutor):
    with client.beta.threads.create_and_run_stream(
        assistant_id=tutor.id, thread={"messages": [{"role": "user", "content": FIB_PROMPT}]}
    ) as stream:
        names = [event.event for event in stream]
    assert names[0] == "thread.created" and names[-1] == "thread.run.completed"


def test_cancel_stops_running_code(client, tutor):
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Sleep for a while")
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=tutor.id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the code is running
        steps = steps_of(client, thread, run)
        if steps and steps[0].step_details.tool_calls:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    started = time.monotonic()
    cancelling = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelling.status in ("cancelling", "cancelled")
    final = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert final.status == "cancelled" and final.cancelled_at
    assert time.monotonic() - started < 10
    assert steps_of(client, thread, final)[0].status == "cancelled"
    # the thread stays usable
    _, again = ask(client, tutor, "Set x to 21 and show it", thread=thread)
    assert again.status == "completed"


def test_one_active_run_per_thread(client, tutor):
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Sleep for a while")
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=tutor.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=tutor.id)
    assert "already has an active run" in err.value.message
    client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id).status == "cancelled"


def test_unmatched_replay_fails_with_clear_error(client, tutor):
    thread, run = ask(client, tutor, "Something nobody recorded")
    assert run.status == "failed"
    assert "No recorded turn" in run.last_error.message and "backend" in run.last_error.message


def test_errors_are_openai_shaped(client, tutor):
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.retrieve("thread_missing")
    assert err.value.body["message"].startswith("No thread found") and err.value.code == "not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="gpt-4o", tools=[{"type": "shell"}])
    assert "tools" in (err.value.param or "")
    raw = client._client.post(client.base_url.join("threads"), content=b"{not json",
                              headers={"content-type": "application/json", "authorization": f"Bearer {client.api_key}"})
    assert raw.status_code == 400 and "not valid JSON" in raw.json()["error"]["message"]


def test_pagination_and_crud(client):
    created = [client.beta.assistants.create(model="m", name=f"a{i}", metadata={"i": str(i)}) for i in range(5)]
    ids = [a.id for a in created]
    page = client.beta.assistants.list(limit=2, order="asc", after=ids[0])
    assert [a.id for a in page.data] == ids[1:3] and page.has_more
    everything = [a.id for a in client.beta.assistants.list(order="asc", limit=2)]  # auto-paginates
    assert everything[-5:] == ids
    before = client.beta.assistants.list(limit=2, order="asc", before=ids[4])
    assert [a.id for a in before.data] == ids[2:4]
    updated = client.beta.assistants.update(ids[0], name="renamed")
    assert updated.name == "renamed" and client.beta.assistants.retrieve(ids[0]).name == "renamed"
    assert client.beta.assistants.delete(ids[0]).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(ids[0])


def test_modify_and_delete_threads_and_messages(client):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "첫 질문"}], metadata={"class": "A"})
    assert client.beta.threads.update(thread.id, metadata={"class": "B"}).metadata == {"class": "B"}
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.content[0].text.value == "첫 질문"
    updated = client.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"seen": "yes"})
    assert updated.metadata == {"seen": "yes"} and updated.content[0].text.value == "첫 질문"
    assert client.beta.threads.messages.delete(message.id, thread_id=thread.id).deleted
    assert client.beta.threads.messages.list(thread_id=thread.id).data == []
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread_id=thread.id)
