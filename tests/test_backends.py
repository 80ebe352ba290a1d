"""Model backends: chat against a stand-in Chat Completions server over real HTTP, replay, recorder."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import socket
import time
import unicodedata
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakemodel import FakeModel, code_for, math_tutor_script
from tutor_nb.errors import (
    BackendConfigError,
    CassetteError,
    MissingAPIKeyError,
    ModelBackendError,
    NoRecordedTurnError,
)
from tutor_nb.runtime.backends import (
    CODE_TOOL,
    ChatBackend,
    ModelBackend,
    ModelRequest,
    Recorder,
    ReplayBackend,
    TextDelta,
    ToolCallDelta,
    Usage,
    make_backend,
)
from tutor_nb.runtime.backends.replay import chunk, conversation_key

KO = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"
EN = "Use code to make the first 20 Fibonacci numbers"


def fibonacci(n: int) -> list[int]:
    out = [0, 1]
    while len(out) < n:
        out.append(out[-1] + out[-2])
    return out[:n]


def request(*messages: dict[str, Any], model: str = "fake-tutor") -> ModelRequest:
    return ModelRequest(model=model, messages=list(messages), tools=[CODE_TOOL])


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def after_tool_call(question: str, output: str) -> list[dict[str, Any]]:
    """A conversation at the point where the model has called the tool once and seen the result."""
    return [
        {"role": "system", "content": "You are a personal math tutor."},
        user(question),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "code_interpreter", "arguments": json.dumps({"code": "1"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": output},
    ]


def collect(backend: ModelBackend, req: ModelRequest) -> list[Any]:
    """Stream one request in a fresh event loop, then release the backend's connections in it."""

    async def run() -> list[Any]:
        try:
            return [event async for event in backend.stream(req)]
        finally:
            await backend.aclose()

    return asyncio.run(run())


def assemble(events: list[Any]) -> dict[str, Any]:
    """What a client makes of the stream: text, whole tool calls, usage."""
    calls: dict[int, dict[str, Any]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or e.id
            call["name"] = call["name"] or e.name
            call["arguments"] += e.arguments
    usages = [e for e in events if isinstance(e, Usage)]
    return {
        "text": "".join(e.text for e in events if isinstance(e, TextDelta)),
        "tool_calls": [calls[i] for i in sorted(calls)],
        "usage": usages[-1] if usages else None,
        "usage_count": len(usages),
    }


def run_code(arguments: str) -> Any:
    """Execute model-written code the way a notebook cell would and return its last expression."""
    code = json.loads(arguments)["code"]
    *body, last = code.rstrip().split("\n")
    namespace: dict[str, Any] = {}
    exec("\n".join(body), namespace)
    return eval(last, namespace)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script_replying(**reply: Any):
    return lambda body: dict(reply)


# --------------------------------------------------------------------------- chat backend


def test_chat_streams_plain_text_and_usage():
    answer = "Hello, learner! 2 + 2 is 4, and here is why: adding two and two."
    fake_script = script_replying(content=answer, tool_calls=[], usage={"prompt_tokens": 37, "completion_tokens": 19})
    with FakeModel(fake_script) as fake:
        events = collect(ChatBackend(base_url=fake.base_url), ModelRequest("fake-tutor", [user("What is 2+2?")]))
    got = assemble(events)
    assert got["text"] == answer
    assert got["tool_calls"] == []
    assert got["usage"] == Usage(prompt_tokens=37, completion_tokens=19) and got["usage_count"] == 1
    assert isinstance(events[-1], Usage)
    assert sum(isinstance(e, TextDelta) for e in events) > 5  # streamed, not in one piece
    sent = fake.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [user("What is 2+2?")]
    assert "tools" not in sent  # some servers reject an empty tool list


def test_chat_assembles_tool_calls_from_chunks():
    question = "Please compute the first 12 Fibonacci numbers"
    with FakeModel(math_tutor_script) as fake:
        events = collect(ChatBackend(base_url=fake.base_url), request(user(question)))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) > 5
    assert deltas[0].id and deltas[0].id.startswith("call_") and deltas[0].name == "code_interpreter"
    assert all(d.id is None and d.name is None for d in deltas[1:])
    got = assemble(events)
    assert got["text"] == ""
    assert len(got["tool_calls"]) == 1
    assert json.loads(got["tool_calls"][0]["arguments"]) == {"code": code_for(question)}
    assert run_code(got["tool_calls"][0]["arguments"]) == fibonacci(12)
    assert fake.requests[0]["tools"] == [CODE_TOOL]


def test_chat_keeps_parallel_tool_calls_apart():
    calls = [{"name": "code_interpreter", "arguments": json.dumps({"code": f"print({i} * 111)"})} for i in range(3)]
    fake_script = script_replying(content="Let me run three snippets.", tool_calls=calls,
                                  usage={"prompt_tokens": 5, "completion_tokens": 6})
    with FakeModel(fake_script) as fake:
        got = assemble(collect(ChatBackend(base_url=fake.base_url), request(user("three at once"))))
    assert got["text"] == "Let me run three snippets."
    assert [c["arguments"] for c in got["tool_calls"]] == [c["arguments"] for c in calls]
    assert len({c["id"] for c in got["tool_calls"]}) == 3


def test_chat_sees_tool_results_and_model_override():
    messages = after_tool_call("What is 6 * 7?", "42")
    with FakeModel(math_tutor_script, models=["llama3.1"]) as fake:
        backend = make_backend("chat", model_base_url=fake.base_url, model="llama3.1")
        got = assemble(collect(backend, request(*messages, model="gpt-4o")))
    assert fake.requests[0]["model"] == "llama3.1"
    assert fake.requests[0]["messages"] == messages
    assert got["text"].endswith("42") and got["tool_calls"] == []


def test_chat_estimates_usage_when_server_sends_none():
    answer = " ".join(["word"] * 100)
    fake_script = script_replying(content=answer, tool_calls=[], usage={"prompt_tokens": 9999, "completion_tokens": 9999})
    with FakeModel(fake_script, include_usage=False) as fake:
        got = assemble(collect(ChatBackend(base_url=fake.base_url), request(user("long answer please"))))
    assert got["usage_count"] == 1
    assert got["usage"].completion_tokens == 100  # counted as cl100k_base does: one token a word
    assert 0 < got["usage"].prompt_tokens < 9999


def test_chat_retries_without_stream_options_once_and_remembers():
    with FakeModel(math_tutor_script, refuse_stream_options=True) as fake:
        backend = ChatBackend(base_url=fake.base_url, max_retries=0)

        async def two_calls() -> list[list[Any]]:
            first = [e async for e in backend.stream(request(user("What is 3 + 4?")))]
            second = [e async for e in backend.stream(request(*after_tool_call("What is 3 + 4?", "7")))]
            await backend.aclose()
            return [first, second]

        first, second = asyncio.run(two_calls())
    assert ["stream_options" in r for r in fake.requests] == [True, False, False]
    assert run_code(assemble(first)["tool_calls"][0]["arguments"]) == 7
    assert assemble(second)["text"].endswith("7")
    assert assemble(second)["usage"].completion_tokens > 0


def test_chat_is_reusable_after_aclose_in_another_event_loop():
    with FakeModel(math_tutor_script) as fake:
        backend = ChatBackend(base_url=fake.base_url)
        for question in ("What is 1 + 1?", "What is 2 + 2?"):
            got = assemble(collect(backend, request(user(question))))
            assert json.loads(got["tool_calls"][0]["arguments"])["code"] == code_for(question)
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "reply, expected",
    [
        ({"status": 500, "message": "CUDA out of memory"}, ["failed (500)", "CUDA out of memory", "try again"]),
        ({"status": 503, "message": "Loading model"}, ["failed (503)", "Loading model"]),
        ({"status": 429, "message": "Rate limit reached", "code": "rate_limit_exceeded"},
         ["rate-limiting", "429", "Wait a minute"]),
        ({"status": 400, "message": "gemma:2b does not support tools"},
         ["refused the request (400)", "does not support tools", "pick one that does"]),
    ],
)
def test_chat_upstream_errors_become_readable(reply, expected):
    with FakeModel(script_replying(**reply)) as fake:
        with pytest.raises(ModelBackendError) as info:
            collect(ChatBackend(base_url=fake.base_url, max_retries=0), request(user("hi")))
    message = str(info.value)
    assert message.startswith(f"The model server at {fake.base_url}")
    for part in expected:
        assert part in message
    assert isinstance(info.value.__cause__, openai.APIStatusError)
    # a 400 is retried once without stream_options, in case that field was the problem
    assert len(fake.requests) == (2 if reply["status"] == 400 else 1)


def test_chat_consumer_can_stop_early():
    """The engine stops reading when a run is cancelled; the HTTP stream must close at once."""
    with FakeModel(math_tutor_script, delay=0.05) as fake:
        backend = ChatBackend(base_url=fake.base_url)

        async def first_piece() -> Any:
            stream = backend.stream(request(user("What is 5 + 5?")))
            first = await stream.__anext__()
            await stream.aclose()
            await backend.aclose()
            return first

        started = time.monotonic()
        first = asyncio.run(first_piece())
        elapsed = time.monotonic() - started
    assert isinstance(first, ToolCallDelta) and first.name == "code_interpreter"
    assert elapsed < 0.6  # the whole answer takes over a second at this pace


def test_chat_unknown_model_names_model_and_fix():
    with FakeModel(math_tutor_script, models=["llama3.1"]) as fake:
        with pytest.raises(ModelBackendError) as info:
            collect(ChatBackend(base_url=fake.base_url, max_retries=0), request(user("hi"), model="gpt-4o"))
    message = str(info.value)
    assert "no model named 'gpt-4o'" in message and "404" in message and "ollama pull gpt-4o" in message


def test_chat_bad_key_is_named_but_never_shown():
    secret = "sk-test-SECRETSECRET1234"
    with FakeModel(math_tutor_script, api_key="sk-the-right-one") as fake:
        with pytest.raises(ModelBackendError) as info:
            collect(ChatBackend(base_url=fake.base_url, api_key=secret, max_retries=0), request(user("hi")))
    assert fake.headers[0]["authorization"] == f"Bearer {secret}"  # the key was really sent
    message = str(info.value)
    assert "401" in message and "OPENAI_API_KEY" in message
    assert "SECRET" not in message and secret[-4:] not in message


def test_chat_scrubs_a_key_echoed_by_the_server():
    secret = "sk-test-SECRETSECRET1234"
    fake_script = script_replying(status=502, message=f"upstream refused key {secret} for this project")
    with FakeModel(fake_script) as fake:
        with pytest.raises(ModelBackendError) as info:
            collect(ChatBackend(base_url=fake.base_url, api_key=secret, max_retries=0), request(user("hi")))
    assert "upstream refused key" in str(info.value)
    assert "SECRET" not in str(info.value)


def test_chat_connection_refused_says_where_and_what_to_do():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(ModelBackendError) as info:
        collect(ChatBackend(base_url=url, max_retries=0), request(user("hi")))
    message = str(info.value)
    assert message.startswith(f"Could not reach the model at {url}: connection refused.")
    assert "Ollama" in message and 'backend="replay"' in message


@pytest.mark.parametrize("option", ["respond_after", "delay"])
def test_chat_timeout_is_explained(option):
    with FakeModel(math_tutor_script, **{option: 1.5}) as fake:
        started = time.monotonic()
        with pytest.raises(ModelBackendError) as info:
            collect(ChatBackend(base_url=fake.base_url, timeout=0.3, max_retries=0), request(user("hi")))
    assert time.monotonic() - started < 1.4
    assert f"The model at {fake.base_url} did not answer in time" in str(info.value)


def test_chat_without_key_or_server_asks_for_one(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        make_backend("chat")


def test_fake_model_speaks_the_sdk_wire_format_unstreamed():
    """Other test files drive FakeModel through the official SDK; check its non-streaming side too."""
    with FakeModel(math_tutor_script, models=["fake-tutor", "llama3.1"]) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="unused", max_retries=0)
        completion = client.chat.completions.create(model="fake-tutor", messages=[user("What is 9 * 9?")],
                                                    tools=[CODE_TOOL])
        models = [m.id for m in client.models.list()]
        client.close()
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert run_code(call.function.arguments) == 81
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert models == ["fake-tutor", "llama3.1"]


# --------------------------------------------------------------------------- replay backend


@pytest.fixture(scope="module")
def replay() -> ReplayBackend:
    return ReplayBackend()


@pytest.mark.parametrize("question", [KO, EN])
def test_replay_walkthrough_turn_0_writes_fibonacci_code(replay, question):
    got = assemble(collect(replay, request(user(question))))
    assert got["text"] == ""
    [call] = got["tool_calls"]
    assert call["name"] == "code_interpreter" and call["id"].startswith("call_")
    assert run_code(call["arguments"]) == fibonacci(20)
    assert got["usage"].prompt_tokens > 0 and got["usage"].completion_tokens > 0


def test_replay_walkthrough_korean_comment_and_answer(replay):
    code = json.loads(assemble(collect(replay, request(user(KO))))["tool_calls"][0]["arguments"])["code"]
    assert code.startswith("# ") and any("\uac00" <= ch <= "\ud7a3" for ch in code.splitlines()[0])
    output = repr(fibonacci(20))
    got = assemble(collect(replay, request(*after_tool_call(KO, output))))
    assert got["tool_calls"] == []
    assert "\\[ " + ", ".join(map(str, fibonacci(20))) + " \\]" in got["text"]
    assert "피보나치" in got["text"]


def test_turn_index_counts_assistant_messages_after_last_user():
    history = [user("earlier question"), {"role": "assistant", "content": "earlier answer"}]
    assert conversation_key(history + [user(KO)]) == (KO, 0)
    assert conversation_key(history + after_tool_call(KO, "[0, 1]")) == (KO, 1)
    two_calls = after_tool_call(KO, "a") + after_tool_call(KO, "b")[2:]
    assert conversation_key(two_calls) == (KO, 2)


def test_replay_matches_after_nfc_and_whitespace_and_content_parts(replay):
    decomposed = "  " + unicodedata.normalize("NFD", KO).replace(" ", " \n\t ") + "\n"
    assert decomposed != KO
    parts = [{"type": "text", "text": "Use code to make"}, {"type": "text", "text": "the first 20   Fibonacci numbers "}]
    for content in (decomposed, parts):
        got = assemble(collect(replay, request(user(content))))
        assert run_code(got["tool_calls"][0]["arguments"]) == fibonacci(20)


def test_replay_unmatched_message_explains_how_to_use_a_real_model(replay):
    long_question = "Explain the Collatz conjecture " + "in great detail " * 10
    with pytest.raises(NoRecordedTurnError) as info:
        collect(replay, request(user(long_question)))
    message = str(info.value)
    assert isinstance(info.value, ModelBackendError)
    assert 'No recorded turn exists for this message: "Explain the Collatz conjecture in great' in message
    assert "…" in message and long_question.strip() not in message
    assert 'tutor_nb.connect(backend="chat", model_base_url=' in message
    assert "OPENAI_API_KEY" in message
    assert "python -m tutor_nb serve --backend chat --record FILE" in message
    assert KO in message  # tells an offline learner what it can answer


def test_replay_unmatched_turn_says_which_calls_exist(replay):
    too_far = after_tool_call(EN, "x") + after_tool_call(EN, "y")[2:]
    with pytest.raises(NoRecordedTurnError, match=r"model call #2; the cassette has calls \[0, 1\]"):
        collect(replay, request(*too_far))


def test_replay_streams_many_small_pieces_that_reassemble_exactly(replay):
    [walkthrough] = [f for f in replay.files if f.name == "walkthrough.json"]
    cassette = json.loads(walkthrough.read_text(encoding="utf-8"))
    recorded = {(t["user"], t["turn"]): t["reply"] for t in cassette["turns"]}
    turn0 = collect(replay, request(user(KO)))
    turn1 = collect(replay, request(*after_tool_call(KO, "[...]")))
    args = [e.arguments for e in turn0 if isinstance(e, ToolCallDelta)]
    texts = [e.text for e in turn1 if isinstance(e, TextDelta)]
    assert len(args) > 20 and len(texts) > 20
    assert max(map(len, args)) <= 12 and max(map(len, texts)) <= 12
    assert "".join(args) == recorded[(KO, 0)]["tool_calls"][0]["arguments"]
    assert "".join(texts) == recorded[(KO, 1)]["content"]
    assert assemble(turn1)["usage"] == Usage(**recorded[(KO, 1)]["usage"])


def test_chunk_round_trips_any_text():
    rng = random.Random(7)
    alphabet = "ab c\n\t  가나다 {}\"\\é1"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        pieces = chunk(text)
        assert "".join(pieces) == text
        assert all(pieces)


def test_replay_delay_paces_the_stream():
    backend = ReplayBackend(delay=0.01)
    started = time.monotonic()
    events = collect(backend, request(user(EN)))
    assert time.monotonic() - started >= 0.01 * (len(events) - 3) * 0.8


def write_cassette(path: Path, question: str, content: str) -> Path:
    path.write_text(json.dumps({"source": "authored", "description": "test", "turns": [
        {"user": question, "turn": 0, "reply": {"content": content, "tool_calls": []}}]}), encoding="utf-8")
    return path


def test_user_cassettes_add_to_and_override_builtin(tmp_path):
    folder = tmp_path / "more"
    folder.mkdir()
    write_cassette(folder / "a.json", "What is a prime?", "A number with exactly two divisors.")
    write_cassette(tmp_path / "override.json", EN, "Overridden answer.")
    backend = make_backend("replay", cassettes=[folder, tmp_path / "override.json"])
    assert assemble(collect(backend, request(user("what is a  prime?".replace("w", "W")))))["text"] == (
        "A number with exactly two divisors."
    )
    got = assemble(collect(backend, request(user(EN))))
    assert got["text"] == "Overridden answer." and got["usage"].completion_tokens >= 1
    assert run_code(assemble(collect(backend, request(user(KO))))["tool_calls"][0]["arguments"]) == fibonacci(20)


def test_bad_cassettes_name_the_file(tmp_path):
    with pytest.raises(CassetteError, match="does not exist"):
        ReplayBackend(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CassetteError, match="broken.json"):
        ReplayBackend(broken)
    shapeless = tmp_path / "shapeless.json"
    shapeless.write_text(json.dumps({"turns": [{"turn": 0}]}), encoding="utf-8")
    with pytest.raises(CassetteError, match=r"shapeless.json: turn #0 is malformed"):
        ReplayBackend(shapeless)


# --------------------------------------------------------------------------- recorder


def test_recorder_writes_a_cassette_that_replays_identically(tmp_path):
    path = tmp_path / "cassettes" / "mine.json"
    question = "Show me the first 8 Fibonacci numbers"
    conversation0 = request(user(question), model="gpt-4o")
    with FakeModel(math_tutor_script) as fake:
        recorder = make_backend("chat", model_base_url=fake.base_url, model="llama3.1", record=path)
        assert isinstance(recorder, Recorder) and recorder.name == "chat"
        live0 = collect(recorder, conversation0)
        output = repr(run_code(assemble(live0)["tool_calls"][0]["arguments"]))
        conversation1 = request(*after_tool_call(question, output), model="gpt-4o")
        live1 = collect(recorder, conversation1)
    assert output == repr(fibonacci(8))
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["source"] == f"recorded from llama3.1 on {dt.date.today().isoformat()}"
    assert [(t["user"], t["turn"]) for t in saved["turns"]] == [(question, 0), (question, 1)]
    assert list(path.parent.iterdir()) == [path]  # no temp files left behind

    replay = ReplayBackend(path, builtin=False)
    for live, conversation in ((live0, conversation0), (live1, conversation1)):
        played = assemble(collect(replay, conversation))
        recorded = assemble(live)
        assert played["text"] == recorded["text"]
        assert [(c["name"], c["arguments"]) for c in played["tool_calls"]] == [
            (c["name"], c["arguments"]) for c in recorded["tool_calls"]]
        assert played["usage"] == recorded["usage"]
    assert assemble(live1)["text"].endswith(repr(fibonacci(8)))


def test_recorder_replaces_a_rerecorded_turn_and_skips_failures(tmp_path):
    path = tmp_path / "mine.json"
    answers = iter(["first answer", "second answer"])
    fake_script = lambda body: {"content": next(answers, None), "tool_calls": [],  # noqa: E731
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    with FakeModel(fake_script) as fake:
        recorder = Recorder(ChatBackend(base_url=fake.base_url, max_retries=0), path)
        collect(recorder, request(user("say something")))
        collect(recorder, request(user("say   something")))
        fake.script = script_replying(status=500, message="boom")
        with pytest.raises(ModelBackendError):
            collect(recorder, request(user("another question")))
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert [t["reply"]["content"] for t in saved["turns"]] == ["second answer"]


# --------------------------------------------------------------------------- factory


def test_make_backend_builds_each_kind_and_rejects_nonsense(tmp_path):
    replay = make_backend("replay", replay_delay=0.05)
    assert isinstance(replay, ReplayBackend) and isinstance(replay, ModelBackend) and replay.delay == 0.05
    chat = make_backend("chat", model_base_url="http://127.0.0.1:11434/v1", model="llama3.1")
    assert isinstance(chat, ChatBackend) and isinstance(chat, ModelBackend)
    assert chat.base_url == "http://127.0.0.1:11434/v1" and chat.model == "llama3.1"
    with pytest.raises(BackendConfigError, match="--backend chat together with --record"):
        make_backend("replay", record=tmp_path / "x.json")
    with pytest.raises(BackendConfigError, match="Choose one of: replay, chat"):
        make_backend("gpt")
