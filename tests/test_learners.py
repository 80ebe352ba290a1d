"""One token per learner, through the official SDK over HTTP: neither learner reaches the other's objects,
the teacher reads both and sees who is active."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import openai
import pytest

from conftest import FIB_PROMPT, TUTOR_INSTRUCTIONS, data_path
from tutor_nb.errors import RuntimeStartError
from tutor_nb.runtime.learners import Learners

TEACHER = "teacher-token-0123456789abcdef"
ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef01"


def tokens_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "learners.txt"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory):
    from tutor_nb.runtime import start

    folder = tmp_path_factory.mktemp("room")
    path = tokens_file(folder, f"# the class of Tuesday\nalice {ALICE}\n\nbob   {BOB}  # sits at the back\n")
    rt = start(backend="replay", data_dir=folder / "data", cassettes=[data_path("cassettes")], token=TEACHER,
               tokens_file=path, runs_per_minute=3)
    yield rt
    rt.stop()


def client_of(rt, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=rt.base_url, api_key=token, max_retries=0)


@pytest.fixture(scope="module")
def alice_things(room):
    alice = client_of(room, ALICE)
    assistant = alice.beta.assistants.create(instructions=TUTOR_INSTRUCTIONS, model="gpt-4o",
                                             tools=[{"type": "code_interpreter"}])
    thread = alice.beta.threads.create()
    alice.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIB_PROMPT)
    run = alice.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    file = alice.files.create(file=("notes.txt", b"alice's notes"), purpose="assistants")
    store = alice.vector_stores.create(name="alice's store")
    container = alice.containers.create(name="alice's container")
    conversation = alice.conversations.create()
    return {"assistant": assistant, "thread": thread, "run": run, "file": file, "store": store,
            "container": container, "conversation": conversation}


def test_a_learner_cannot_read_or_touch_another_learners_objects(room, alice_things) -> None:
    bob = client_of(room, BOB)
    things = alice_things
    for attempt in (
        lambda: bob.beta.assistants.retrieve(things["assistant"].id),
        lambda: bob.beta.threads.retrieve(things["thread"].id),
        lambda: bob.beta.threads.messages.list(thread_id=things["thread"].id),
        lambda: bob.beta.threads.runs.retrieve(thread_id=things["thread"].id, run_id=things["run"].id),
        lambda: bob.beta.threads.runs.steps.list(thread_id=things["thread"].id, run_id=things["run"].id),
        lambda: bob.beta.threads.messages.create(thread_id=things["thread"].id, role="user", content="mine now"),
        lambda: bob.beta.threads.runs.create(thread_id=things["thread"].id, assistant_id=things["assistant"].id),
        lambda: bob.beta.threads.delete(things["thread"].id),
        lambda: bob.beta.assistants.delete(things["assistant"].id),
        lambda: bob.files.retrieve(things["file"].id),
        lambda: bob.files.content(things["file"].id).read(),
        lambda: bob.files.delete(things["file"].id),
        lambda: bob.vector_stores.retrieve(things["store"].id),
        lambda: bob.vector_stores.files.list(vector_store_id=things["store"].id),
        lambda: bob.containers.retrieve(things["container"].id),
        lambda: bob.containers.files.list(container_id=things["container"].id),
        lambda: bob.conversations.retrieve(things["conversation"].id),
        lambda: bob.conversations.items.list(conversation_id=things["conversation"].id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert bob.beta.assistants.list().data == []
    assert bob.files.list().data == []
    assert bob.vector_stores.list().data == []
    assert bob.containers.list().data == []
    # bob's own work is his, and alice's untouched
    mine = bob.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    assert [a.id for a in bob.beta.assistants.list().data] == [mine.id]
    alice = client_of(room, ALICE)
    assert mine.id not in {a.id for a in alice.beta.assistants.list().data}
    assert alice.beta.threads.messages.list(thread_id=things["thread"].id).data[0].role == "assistant"
    assert alice.files.content(things["file"].id).read() == b"alice's notes"


def test_a_learner_cannot_use_another_learners_assistant_in_their_own_thread(room, alice_things) -> None:
    bob = client_of(room, BOB)
    thread = bob.beta.threads.create()
    bob.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIB_PROMPT)
    with pytest.raises(openai.NotFoundError):
        bob.beta.threads.runs.create(thread_id=thread.id, assistant_id=alice_things["assistant"].id)
    with pytest.raises(openai.NotFoundError):
        bob.beta.threads.messages.create(thread_id=thread.id, role="user", content="see attached",
                                         attachments=[{"file_id": alice_things["file"].id,
                                                       "tools": [{"type": "code_interpreter"}]}])


def test_the_teacher_reads_everyones_and_sees_who_is_active(room, alice_things) -> None:
    teacher = client_of(room, TEACHER)
    bob = client_of(room, BOB)
    bobs = bob.beta.threads.create()
    assert teacher.beta.assistants.retrieve(alice_things["assistant"].id).id == alice_things["assistant"].id
    assert teacher.beta.threads.retrieve(bobs.id).id == bobs.id
    assert teacher.files.content(alice_things["file"].id).read() == b"alice's notes"
    listed = {a.id for a in teacher.beta.assistants.list(limit=100).data}
    assert alice_things["assistant"].id in listed
    about = httpx.get(room.base_url, headers={"Authorization": f"Bearer {TEACHER}"}).json()
    people = {row["name"]: row for row in about["learners"]}
    assert set(people) == {"alice", "bob"}
    assert people["alice"]["threads"] >= 1 and people["bob"]["threads"] >= 1
    assert people["alice"]["kernels"] == 1  # the thread that ran code keeps its kernel
    assert people["alice"]["last_seen"] and people["alice"]["requests"] > 0
    own = httpx.get(room.base_url, headers={"Authorization": f"Bearer {BOB}"}).json()
    assert own["learner"] == "bob" and "learners" not in own and "data_dir" not in own


def test_no_token_or_a_wrong_one_is_refused(room) -> None:
    for key in ("", "not-a-learner-token-at-all"):
        with pytest.raises(openai.AuthenticationError):
            client_of(room, key or "x").beta.assistants.list()
    assert httpx.get(room.base_url).status_code == 401


def test_runs_per_minute_are_counted_per_learner(tmp_path: Path) -> None:
    from tutor_nb.runtime import start

    path = tokens_file(tmp_path, f"alice {ALICE}\nbob {BOB}\n")
    rt = start(backend="replay", data_dir=tmp_path / "data", cassettes=[data_path("cassettes")], token=TEACHER,
               tokens_file=path, runs_per_minute=1)
    try:
        alice, bob = client_of(rt, ALICE), client_of(rt, BOB)
        assistant = alice.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        thread = alice.beta.threads.create()
        alice.beta.threads.messages.create(thread_id=thread.id, role="user", content="Set x to 21 and show it")
        assert alice.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id).status == "completed"
        with pytest.raises(openai.RateLimitError, match="alice has started 1 runs in the last minute"):
            alice.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        bobs_assistant = bob.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        bobs = bob.beta.threads.create()
        bob.beta.threads.messages.create(thread_id=bobs.id, role="user", content="Set x to 21 and show it")
        assert bob.beta.threads.runs.create_and_poll(thread_id=bobs.id, assistant_id=bobs_assistant.id).status == "completed"
    finally:
        rt.stop()


@pytest.mark.parametrize(("text", "mode", "error"), [
    (f"alice {ALICE}\n", 0o644, "can be read by other users"),
    (f"alice {ALICE}\nalice {BOB}\n", 0o600, "line 2: the name 'alice' is given twice"),
    (f"alice {ALICE}\nbob {ALICE}\n", 0o600, "line 2: bob's token is already used"),
    ("alice short\n", 0o600, "line 1: alice's token is shorter than 16"),
    (f"alice {ALICE} extra\n", 0o600, "line 1: expected 'NAME TOKEN'"),
    (f"al/ice {ALICE}\n", 0o600, "line 1: the name 'al/ice'"),
    ("# nobody yet\n", 0o600, "names no learner"),
    (f"alice {TEACHER}\n", 0o600, "already used (by another learner or the teacher)"),
])
def test_a_bad_tokens_file_is_refused_with_the_line(tmp_path: Path, text: str, mode: int, error: str) -> None:
    path = tokens_file(tmp_path, text, mode)
    with pytest.raises(RuntimeStartError, match=error.replace("(", r"\(").replace(")", r"\)")):
        Learners.load(path, teacher_token=TEACHER)


def test_a_good_tokens_file_loads_with_comments_and_blank_lines(tmp_path: Path) -> None:
    learners = Learners.load(tokens_file(tmp_path, f"# Tuesday\n\nalice {ALICE}  # front\n  bob\t{BOB}\n"))
    assert list(learners.by_name) == ["alice", "bob"]
    assert learners.find(BOB).name == "bob" and learners.find("nope") is None  # type: ignore[union-attr]
    assert ALICE not in repr(learners)
    assert os.stat(tmp_path / "learners.txt").st_mode & 0o077 == 0


def test_a_learner_at_their_kernel_cap_gives_up_their_longest_idle_kernel(tmp_path: Path) -> None:
    from tutor_nb.runtime import start

    path = tokens_file(tmp_path, f"alice {ALICE}\nbob {BOB}\n")
    rt = start(backend="replay", data_dir=tmp_path / "data", cassettes=[data_path("cassettes")], token=TEACHER,
               tokens_file=path, kernels_per_learner=1)
    try:
        alice, bob = client_of(rt, ALICE), client_of(rt, BOB)

        def turn(client, thread, text):
            assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
            client.beta.threads.messages.create(thread_id=thread.id, role="user", content=text)
            run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
            steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
            return steps[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs

        first, second, bobs = alice.beta.threads.create(), alice.beta.threads.create(), bob.beta.threads.create()
        assert turn(bob, bobs, "Set x to 21 and show it").strip() == "21"
        assert turn(alice, first, "Set x to 21 and show it").strip() == "21"
        assert turn(alice, second, "Set x to 21 and show it").strip() == "21"  # takes over the first's kernel
        lost = turn(alice, first, "Double x")
        assert "NameError" in lost and "was stopped for one of your newer threads" in lost
        assert turn(bob, bobs, "Double x").strip() == "42"  # another learner's kernel is not theirs to take
        sandbox = rt._server.app.state.runtime.sandbox
        assert sorted(k.owner for k in sandbox.pool.assigned.values()) == ["alice", "bob"]
    finally:
        rt.stop()
