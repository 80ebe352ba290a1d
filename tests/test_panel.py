"""ChatPanel: real widget objects, fed by the real local runtime (replay, and chat with a
stand-in model over HTTP), or by stream events parsed as the openai SDK parses them."""

from __future__ import annotations

import base64
import html
import json
import socket
import threading
import time
from typing import Iterator

import ipywidgets as W
import openai
import pytest

import panel_events as ev
from fakemodel import FakeModel, math_tutor_script
from tutor_nb.errors import ExportFormatError, PanelBusyError, PanelTimeoutError
from tutor_nb.panel import ChatPanel
from tutor_nb.panel import render
from tutor_nb.panel.stream import Coalescer

KOREAN_FIB = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"
FIB_20 = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]


# ----------------------------------------------------------------------------- helpers


def walk(widget: W.Widget) -> Iterator[W.Widget]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def shown(panel: ChatPanel, kind: type = W.HTML) -> list[str]:
    """The values of every widget of ``kind`` in the panel, in display order."""
    return [w.value for w in walk(panel.widget) if type(w) is kind]


def status_line(panel: ChatPanel) -> str:
    return panel._status.value


class SendCounter:
    """Counts the comm messages widgets send (ipywidgets' single exit point, Widget._send)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = W.Widget._send

        def counting(widget: W.Widget, msg: dict, buffers: object = None) -> None:
            if msg.get("method") == "update":
                self.count += 1
            original(widget, msg, buffers)

        monkeypatch.setattr(W.Widget, "_send", counting)


# ----------------------------------------------------------------------------- rendering


def test_math_delimiters_become_dollars_outside_code_only():
    text = "합은 \\( a_1 + a_2 \\) 이고\n\\[ \\sum_{i=1}^{n} i \\]\n`\\(x\\)`\n```python\nre = r'\\(a\\)'\n```"
    out = render.convert_math_delimiters(text)
    assert "$a_1 + a_2$" in out and "$$ \\sum_{i=1}^{n} i $$" in out
    assert "`\\(x\\)`" in out and "r'\\(a\\)'" in out


def test_markdown_keeps_math_for_mathjax_and_escapes_model_html():
    body = render.markdown_html("**굵게** \\(x_1 < y_2\\) <script>alert(1)</script> [x](javascript:alert(1)) costs $5 and $10")
    assert "<strong>굵게</strong>" in body
    assert "$x_1 &lt; y_2$" in body  # underscores not turned into <em>, < escaped
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert 'href="#"' in body and "javascript:" not in body
    assert "costs $5 and $10" in body


def test_file_path_annotations_become_download_links():
    text = "Here: [the table](sandbox:/mnt/data/table.csv) and sandbox:/mnt/data/notes.txt"
    first = text.index("sandbox:")
    second = text.index("sandbox:", first + 1)
    spans = [(first, text.index(")", first)), (second, len(text))]
    links = [render.FileLink("table.csv", b"a,b\n1,2\n"), render.FileLink("notes.txt", None)]
    body = render.markdown_html(render.links_markdown(text, spans), links)
    assert 'download="table.csv" style="color:#0969da; text-decoration:underline" href="data:text/csv;base64,YSxiCjEsMgo="' in body
    assert ">the table</a>" in body and ">notes.txt</a>" in body
    assert "sandbox:" not in body


# ----------------------------------------------------------------------------- stream events -> widgets


def test_recorded_stream_renders_code_logs_answer_and_status():
    panel = ChatPanel(client=object())
    code = "fib = [0, 1]\nwhile len(fib) < 20:\n    fib.append(fib[-1] + fib[-2])\nprint(fib)"
    logs = json.dumps(FIB_20) + "\n"
    answer = "피보나치 수는 \\( F_n = F_{n-1} + F_{n-2} \\) 입니다:\n\n\\[ F_{19} = 4181 \\]"
    panel.play(KOREAN_FIB, ev.fibonacci_run(answer, code, logs))
    entry = panel.wait(timeout=10)

    assert entry["status"] == "completed" and entry["text"] == answer
    assert entry["steps"] == [{"code": code, "logs": logs, "image_file_ids": [], "status": "completed"}]
    html_values = shown(panel)
    assert any("tnb-user" in v and KOREAN_FIB in v for v in html_values)
    code_block = next(v for v in html_values if "tnb-code" in v)
    assert "<span" in code_block and "append" in code_block  # highlighted
    assert any("tnb-logs" in v and "4181" in v for v in html_values)
    (math_html,) = shown(panel, W.HTMLMath)
    assert "$F_n = F_{n-1} + F_{n-2}$" in math_html and "$$ F_{19} = 4181 $$" in math_html
    assert "피보나치 수는" in math_html
    assert "done in" in status_line(panel) and "70 tokens" in status_line(panel)
    accordion = next(w for w in walk(panel.widget) if isinstance(w, W.Accordion))
    assert accordion.selected_index == 0  # the code step is open


def test_updates_are_coalesced_to_about_20_per_second(monkeypatch):
    counter = SendCounter(monkeypatch)
    panel = ChatPanel(client=object())
    deltas = [f"토큰{i} " for i in range(2000)]

    def slow_stream():
        yield ev.event("thread.run.created", ev.run("queued"))
        yield ev.event("thread.run.in_progress", ev.run("in_progress"))
        yield ev.event("thread.message.created", ev.message("in_progress", []))
        for i, piece in enumerate(deltas):
            if i % 20 == 0:
                time.sleep(0.01)  # ~1 s of streaming, far more than 20 deltas a second
            yield ev.text_delta(piece)
        yield ev.event("thread.run.completed", ev.run("completed"))

    start = time.monotonic()
    panel.play("stream", slow_stream())
    entry = panel.wait(timeout=30)
    elapsed = time.monotonic() - start

    assert entry["text"] == "".join(deltas)
    assert shown(panel, W.HTMLMath)[0].count("토큰") == 2000
    allowed = elapsed * 20 + 4  # one flush per 50 ms, plus the first and the final one
    assert panel.flushes <= allowed, (panel.flushes, elapsed)
    # each flush sends a handful of messages (answer text, status, buttons), never the transcript
    assert counter.count <= 6 * allowed, (counter.count, elapsed)
    assert counter.count < len(deltas) / 10


def test_coalescer_flushes_at_most_once_per_interval():
    clock = [0.0]
    applied = []
    coalescer = Coalescer(lambda: applied.append(clock[0]), interval=0.05, clock=lambda: clock[0])
    for step in range(1000):  # 1000 changes over 1 s of fake time
        clock[0] = step / 1000
        coalescer.mark()
        coalescer.maybe_flush()
    assert 19 <= len(applied) <= 21
    assert all(b - a >= 0.05 - 1e-9 for a, b in zip(applied, applied[1:]))
    assert coalescer.dirty  # the last change is pending until the next flush
    coalescer.flush()
    assert not coalescer.dirty


def test_only_the_message_being_written_is_updated(monkeypatch):
    panel = ChatPanel(client=object())
    panel.play("first", ev.fibonacci_run("first answer", "1 + 1", "2"))
    panel.wait(timeout=10)
    first_widgets = {id(w) for w in walk(panel.widget)}
    touched: list[W.Widget] = []
    original = W.Widget._send

    def record(widget: W.Widget, msg: dict, buffers: object = None) -> None:
        touched.append(widget)
        original(widget, msg, buffers)

    monkeypatch.setattr(W.Widget, "_send", record)
    panel.play("second", ev.fibonacci_run("second answer " * 50, "2 + 2", "4"))
    panel.wait(timeout=10)
    old_touched = [w for w in touched if id(w) in first_widgets]
    # the earlier turn's widgets are left alone; only panel chrome and the transcript list change
    chrome = {id(panel._status), id(panel._send_button), id(panel._stop_button), id(panel._new_button), id(panel._messages),
              id(panel._script)}  # _script: the scroll-to-the-new-turn script
    assert all(id(w) in chrome for w in old_touched), [(type(w).__name__, w._dom_classes) for w in old_touched]


def test_export_and_transcript_are_plain_data():
    panel = ChatPanel(client=object())
    panel.play(KOREAN_FIB, ev.fibonacci_run("답: \\(4181\\)", "print(4181)", "4181\n"))
    panel.wait(timeout=10)
    data = json.loads(panel.export("json"))
    assert data == panel.transcript
    assert [t["role"] for t in data] == ["user", "assistant"] and data[0]["text"] == KOREAN_FIB
    md = panel.export("markdown")
    assert f"**You:**\n\n{KOREAN_FIB}" in md and "```python\nprint(4181)\n```" in md and "답: \\(4181\\)" in md
    with pytest.raises(ExportFormatError):
        panel.export("pdf")
    panel._on_export()
    assert 'download="transcript.md"' in panel._export_links.value


def test_send_while_running_is_refused_and_wait_can_time_out():
    release = threading.Event()

    def held():
        yield ev.event("thread.run.created", ev.run("queued"))
        release.wait(10)
        yield ev.event("thread.run.completed", ev.run("completed"))

    panel = ChatPanel(client=object())
    panel.play("hold", held())
    with pytest.raises(PanelBusyError):
        panel.play("again", iter(()))
    with pytest.raises(PanelTimeoutError):
        panel.wait(timeout=0.2)
    assert panel._send_button.disabled and not panel._stop_button.disabled
    release.set()
    assert panel.wait(timeout=10)["status"] == "completed"
    assert not panel._send_button.disabled and panel._stop_button.disabled


def test_new_thread_starts_over():
    panel = ChatPanel(client=object())
    panel.play("first", ev.fibonacci_run("answer", "1 + 1", "2"))
    panel.wait(timeout=10)
    assert len(panel._messages.children) == 2
    panel._conversation.thread_id = "thread_old"
    panel._new_button.click()
    assert panel.transcript == [] and panel._messages.children == () and panel.thread_id is None
    panel.play("second", ev.fibonacci_run("again", "2 + 2", "4"))
    panel.wait(timeout=10)
    assert [t["text"] for t in panel.transcript] == ["second", "again"]
    assert len(panel._messages.children) == 2


def test_repr_and_mimebundle():
    panel = ChatPanel(client=object())
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == "<ChatPanel thread=new messages=0 idle>"
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id


def test_input_is_a_textarea_and_only_the_button_sends():
    panel = ChatPanel(client=object())
    assert isinstance(panel._input, W.Textarea)
    panel._input.value = "안녕\n"  # an Enter typed (or an IME confirmation) only adds a line
    assert panel.transcript == []
    layout = panel._scroller.layout
    assert (layout.flex_flow, layout.overflow) == ("column-reverse", "auto")


# ----------------------------------------------------------------------------- real runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_gives_one_clear_line():
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{_free_port()}/v1", api_key="x", max_retries=0)
    panel = ChatPanel(client=client)
    panel.send("hello")
    entry = panel.wait(timeout=30)
    assert entry["status"] == "error"
    assert entry["error"].startswith("Cannot reach the assistant server at http://127.0.0.1:")
    assert "\n" not in entry["error"] and "Traceback" not in entry["error"]
    assert any("tnb-error" in v and "Cannot reach" in v for v in shown(panel))
    assert not panel._send_button.disabled  # still usable


@pytest.fixture(scope="module")
def replay_runtime(tmp_path_factory):
    from tutor_nb.runtime import start

    tmp = tmp_path_factory.mktemp("panel-replay")
    cassette = tmp / "panel.json"
    cassette.write_text(json.dumps(ev.PLOT_CASSETTE, ensure_ascii=False), encoding="utf-8")
    rt = start(backend="replay", data_dir=tmp / "data", cassettes=[cassette])
    yield rt
    rt.stop()


@pytest.mark.slow
def test_replay_korean_fibonacci_end_to_end(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    panel.send(KOREAN_FIB)
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    (step,) = entry["steps"]
    assert "fibonacci_numbers" in step["code"] and json.loads(step["logs"].replace("\n", "")) == FIB_20
    html_values = shown(panel)
    assert any("tnb-code" in v and "피보나치" in v for v in html_values)  # Korean comment intact
    assert any("tnb-logs" in v and "4181" in v for v in html_values)
    (answer,) = shown(panel, W.HTMLMath)
    assert "$$ 0, 1, 1, 2, 3, 5" in answer and "\\[" not in answer
    assert "0과 1에서 출발해서" in answer
    assert "tokens" in status_line(panel)
    assert panel.thread_id and panel.assistant_id


@pytest.mark.slow
def test_replay_plot_shows_the_image(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    panel.send("y = x^2 그래프를 그려줘")
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    (step,) = entry["steps"]
    assert len(step["image_file_ids"]) == 1 and "그래프 완성" in step["logs"]
    images = [w for w in walk(panel.widget) if isinstance(w, W.Image)]
    assert len(images) == 1 and bytes(images[0].value).startswith(b"\x89PNG")
    chart = "![chart](data:image/png;base64," + base64.b64encode(bytes(images[0].value)).decode() + ")"
    assert panel.export().count(chart) == 1  # the sandbox's chart, embedded once under its code
    (answer,) = shown(panel, W.HTMLMath)
    assert "$y = x^2$" in answer and "$$ (0, 0) $$" in answer
    expected_csv = base64.b64encode(("x,y\n" + "".join(f"{x},{x * x}\n" for x in range(-5, 6))).encode()).decode()
    assert f'download="squares.csv" style="{render._LINK_STYLE}" href="data:text/csv;base64,{expected_csv}">표 내려받기</a>' in answer
    assert "sandbox:" not in answer
    assert f"[표 내려받기](data:text/csv;base64,{expected_csv})" in panel.export()  # the file goes with the export


@pytest.mark.slow
def test_failed_run_shows_last_error_and_panel_stays_usable(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    panel.send("이 문장은 카세트에 없습니다")
    entry = panel.wait(timeout=120)
    assert entry["status"] == "failed"
    assert "No recorded turn" in entry["error"]
    assert any("tnb-error" in v and "Run failed" in v and "No recorded turn" in v for v in shown(panel))
    assert "failed" in status_line(panel) and not panel._send_button.disabled
    panel.send(KOREAN_FIB)  # the same panel and thread go on
    assert panel.wait(timeout=120)["status"] == "completed"


@pytest.mark.slow
def test_run_here_shows_a_match(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    panel.send(KOREAN_FIB)
    panel.wait(timeout=120)
    step_view = next(v for turn in panel._views for v in turn._items.values() if hasattr(v, "run_here"))
    step_view.run_here.click()
    assert "match" in step_view.result.value and "mismatch" not in step_view.result.value


@pytest.mark.slow
def test_blocking_mode_sends_every_update_from_the_clicking_thread(replay_runtime, monkeypatch):
    """Colab's mode: the Send callback returns when the run has ended, and no widget
    message was sent by another thread (Colab drops those, googlecolab/colabtools#3373)."""
    senders: set[str] = set()
    original = W.Widget._send

    def record(widget: W.Widget, msg: dict, buffers: object = None) -> None:
        senders.add(threading.current_thread().name)
        original(widget, msg, buffers)

    panel = ChatPanel(client=replay_runtime.client(), updates="blocking")
    monkeypatch.setattr(W.Widget, "_send", record)
    panel._input.value = KOREAN_FIB
    panel._send_button.click()
    assert panel.transcript[-1]["status"] == "completed"
    assert "4181" in shown(panel, W.HTMLMath)[0]
    assert senders == {threading.current_thread().name}


@pytest.fixture
def slow_chat_runtime(tmp_path):
    """The chat backend in front of a stand-in model whose code sleeps in the sandbox."""
    from tutor_nb.runtime import start

    def script(request):
        reply = math_tutor_script(request)
        if reply.get("tool_calls"):
            code = "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.5)"
            reply["tool_calls"] = [{"name": "code_interpreter", "arguments": json.dumps({"code": code})}]
        return reply

    with FakeModel(script) as fake:
        rt = start(backend="chat", model_base_url=fake.base_url, model="stand-in", model_api_key="x", data_dir=tmp_path)
        try:
            yield rt
        finally:
            rt.stop()


@pytest.mark.slow
def test_stop_cancels_a_running_step(slow_chat_runtime):
    panel = ChatPanel(client=slow_chat_runtime.client(), model="stand-in")
    panel.send("count slowly to 60")
    deadline = time.monotonic() + 60
    while "running code" not in status_line(panel) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "running code" in status_line(panel)
    time.sleep(1.0)
    started = time.monotonic()
    panel._stop_button.click()
    entry = panel.wait(timeout=60)
    assert time.monotonic() - started < 20  # far less than the 30 s the code would take
    assert entry["status"] == "cancelled"
    assert any("Stopped." in v for v in shown(panel))
    assert "stopped" in status_line(panel) and not panel._send_button.disabled


@pytest.mark.slow
def test_interrupt_stops_a_blocking_send(slow_chat_runtime):
    """In blocking mode the kernel cannot see the Stop click; its interrupt stops the run."""
    import _thread

    panel = ChatPanel(client=slow_chat_runtime.client(), model="stand-in", updates="blocking")

    def interrupt_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            steps = panel.transcript[-1]["steps"] if len(panel.transcript) == 2 else []
            if steps and steps[0]["code"]:
                break
            time.sleep(0.1)
        time.sleep(1.5)  # the code is running in the sandbox by now
        _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt_when_running, daemon=True)
    watcher.start()
    started = time.monotonic()
    panel._input.value = "count slowly to 60"
    panel._send_button.click()  # returns once the cancelled run has ended
    watcher.join(5)
    assert time.monotonic() - started < 40
    assert panel.transcript[-1]["status"] == "cancelled"
    assert any("Stopped." in v for v in shown(panel))


# ----------------------------------------------------------------------------- status, suggestions, export


def test_status_follows_a_recorded_code_turn(monkeypatch):
    from tutor_nb.panel.transcript import TurnBuilder

    seen = ev.record_phases(monkeypatch, TurnBuilder)
    panel = ChatPanel(client=object())
    assert panel.status == "ready"
    panel.play("q", ev.fibonacci_run("The answer.", "print(1 + 1)", "2\n"))
    panel.wait(timeout=10)
    assert seen == ["queued…", "thinking…", "writing code…", "running code (N s)", "reading output…",
                    "writing the answer…", "done in N s, N tokens"]
    assert panel.status.startswith("done in") and panel.status in panel._status.value
    view = next(v for t in panel._views for v in t._items.values() if hasattr(v, "copy"))
    assert view._title.startswith("Code · ran in ")


def test_step_title_while_writing_and_running():
    from tutor_nb.panel.transcript import QUIET_AFTER_CODE, Step
    from tutor_nb.panel.views import step_title

    step = Step("s", code="print(1)")
    now = step.written
    assert step_title(step, now) == "Code · writing…"
    assert step_title(step, now + QUIET_AFTER_CODE / 2) == "Code · writing…"
    # a server that never says "running": a pause after the code means it has run since then
    assert step_title(step, now + 3) == "Code · running (3 s)…"
    step.status, step.finished = "completed", now + 3.5
    assert step_title(step, now + 10) == "Code · ran in 3.5 s"


def test_export_embeds_charts_once_and_writes_files_when_asked(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"chart-bytes"
    panel = ChatPanel(client=object())
    panel._conversation.files["file-chart"] = png
    panel.play("plot", iter([
        ev.event("thread.run.created", ev.run("queued")),
        ev.event("thread.run.step.created", ev.code_step("in_progress", "", [])),
        ev.code_delta("plt.show()"),
        ev.event("thread.run.step.completed", ev.code_step("completed", "plt.show()", [{"type": "image", "image": {"file_id": "file-chart"}}])),
        ev.event("thread.message.completed", {**ev.message("completed", [
            {"type": "image_file", "image_file": {"file_id": "file-chart"}}, ev.text_block("Here it is.")])}),
        ev.event("thread.run.completed", ev.run("completed")),
    ]))
    panel.wait(timeout=10)
    md = panel.export()
    data_uri = "![chart](data:image/png;base64," + base64.b64encode(png).decode() + ")"
    assert md.count(data_uri) == 1 and "file-chart" not in md.replace(data_uri, "")
    assert md.index("plt.show()") < md.index(data_uri) < md.index("Here it is.")
    beside = panel.export(images=str(tmp_path / "transcript_files"))
    assert "![chart](transcript_files/file-chart.png)" in beside
    assert (tmp_path / "transcript_files" / "file-chart.png").read_bytes() == png
    panel._export_button.click()
    assert panel._export_links.value.count(render._LINK_STYLE) == 2
    panel.new_thread()
    assert panel._export_links.value == ""


def test_unannotated_sandbox_link_gets_the_file_of_that_name():
    class Files:
        def list(self, purpose):
            assert purpose == "assistants_output"
            old = type("F", (), {"id": "file-old", "filename": "table.csv", "created_at": 1})
            new = type("F", (), {"id": "file-new", "filename": "table.csv", "created_at": 2})
            return type("Page", (), {"data": [new, old]})

        def content(self, file_id):
            return type("Body", (), {"read": lambda self: f"bytes of {file_id}".encode()})()

    client = type("Client", (), {"files": Files(), "base_url": None})()
    panel = ChatPanel(client=client, suggestions=None)
    text = "Download [the table](sandbox:/mnt/data/table.csv), or [the notes](sandbox:/mnt/data/gone.txt)"
    panel.play("table", iter([
        ev.event("thread.run.created", ev.run("queued")),
        ev.event("thread.message.completed", ev.message("completed", [ev.text_block(text)])),
        ev.event("thread.run.completed", ev.run("completed")),
    ]))
    panel.wait(timeout=10)
    (answer,) = shown(panel, W.HTMLMath)
    expected = base64.b64encode(b"bytes of file-new").decode()
    assert f'download="table.csv" style="{render._LINK_STYLE}" href="data:text/csv;base64,{expected}">the table</a>' in answer
    assert "This file stayed in the sandbox" in answer and 'href="#"' not in answer


def test_plain_text_math_for_terminals():
    text = "Roots: \\(x = 2\\) and $x = 3$.\n\n\\[ x = \\frac{5 \\pm \\sqrt{b^2 - 4ac}}{2a} \\]\n\ncosts $5 and $10, `a_1`"
    out = render.plain_text(text)
    assert "x = 2" in out and "x = 3" in out and "x = (5 ± √(b² - 4ac))/(2a)" in out
    assert "costs $5 and $10" in out and "`a_1`" in out and "\\" not in out


@pytest.mark.slow
def test_suggestions_on_replay_and_a_suggestion_answered(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    assert len(panel.suggestions) >= 15
    assert "Use code to divide 10 by each number in 5, 2, 0, 1" in panel.suggestions
    chips = [w for w in walk(panel._chips) if isinstance(w, W.Button) and "tnb-chip" in w._dom_classes]
    assert chips and [c.description for c in chips] == panel.suggestions[: len(chips)]
    chips[0].click()
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    assert panel.transcript[0]["text"] == panel.suggestions[0]
    assert entry["steps"] and entry["text"]
    assert not ChatPanel(client=openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x")).suggestions


@pytest.mark.slow
def test_traceback_question_shows_the_error_then_the_fix(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    panel.send("Use code to divide 10 by each number in 5, 2, 0, 1")
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    first, second = entry["steps"]
    assert "ZeroDivisionError" in first["logs"] and "10 / 0: undefined" in second["logs"]


@pytest.mark.slow
def test_unmatched_question_gets_one_short_line(replay_runtime):
    panel = ChatPanel(client=replay_runtime.client())
    panel.send("Tell me a joke about integrals")
    entry = panel.wait(timeout=120)
    assert entry["status"] == "failed"
    (notice,) = [v for v in shown(panel) if "tnb-error" in v]
    line = notice.split("<details", 1)[0]
    assert "No recorded answer for this question offline: try one of the suggestions, or connect a model." in line
    assert "Offline, the built-in cassettes answer" not in line and "No recorded turn" in notice


def test_copy_to_cell_says_what_the_page_did():
    from tutor_nb.panel import frontend

    panel = ChatPanel(client=object())
    panel.play("q", ev.fibonacci_run("answer", "print('한글')", "한글\n"))
    panel.wait(timeout=10)
    view = next(v for t in panel._views for v in t._items.values() if hasattr(v, "copy"))
    view.copy.click()
    (output,) = view.output.outputs
    script = output["data"]["application/javascript"]
    assert json.dumps("print('한글')") in script and view.token in script
    assert html.escape(frontend.ASKED) in view.result.value and view.copied is None
    view.report.value = "copied 1733100000000"  # what the page types into the hidden input
    assert view.copied == "copied" and html.escape(frontend.OUTCOMES["copied"]) in view.result.value
    assert view.output.outputs == ()  # the script never runs twice
    view.copy.click()
    view.report.value = "inserted 1733100000001"
    assert html.escape(frontend.OUTCOMES["inserted"]) in view.result.value
    view.report.value = "nonsense"
    assert view.copied == "inserted"


def test_chips_show_a_few_suggestions_at_a_time_and_send_the_one_clicked():
    questions = [f"question {i}" for i in range(6)]
    panel = ChatPanel(client=object(), suggestions=questions)
    assert panel.suggestions == questions

    def chips() -> list[W.Button]:
        return [w for w in panel._chips.children if isinstance(w, W.Button) and "tnb-chip" in w._dom_classes]

    assert [c.description for c in chips()] == questions[:4]
    panel._more.click()
    assert [c.description for c in chips()] == ["question 4", "question 5", "question 0", "question 1"]
    assert not ChatPanel(client=object()).suggestions  # "auto" offers nothing for a server it does not know
    release = threading.Event()

    def held():
        yield ev.event("thread.run.created", ev.run("queued"))
        release.wait(10)
        yield ev.event("thread.run.completed", ev.run("completed"))

    panel._conversation.start = (lambda start: lambda text, events=None: start(text, events=held()))(panel._conversation.start)
    chips()[1].click()
    assert panel.transcript[0]["text"] == "question 5"
    panel._coalescer.flush()
    assert all(c.disabled for c in chips())  # no second question while one is answered
    release.set()
    panel.wait(timeout=10)
    assert not any(c.disabled for c in chips())


def test_a_pause_in_the_code_is_not_taken_for_running_once_the_server_announces_it():
    from tutor_nb.panel.transcript import QUIET_AFTER_CODE, Turn, TurnBuilder

    server: dict[str, bool] = {}
    first = TurnBuilder(Turn("assistant"), server)
    for event in (ev.event("thread.run.step.created", ev.code_step("in_progress", "", [])), ev.code_delta("x = 1")):
        first.apply(event)
    (step,) = first.turn.steps
    assert step.phase(step.written + QUIET_AFTER_CODE + 1) == "running"  # guessed: no signal seen yet
    first.apply(ev.event("thread.run.step.in_progress", ev.code_step("in_progress", "x = 1", [])))
    assert server == {"announces_running": True}
    second = TurnBuilder(Turn("assistant"), server)
    for event in (ev.event("thread.run.step.created", ev.code_step("in_progress", "", [])), ev.code_delta("y = ")):
        second.apply(event)
    (step,) = second.turn.steps
    assert step.phase(step.written + 30) == "writing"  # a slow model pausing mid-code is still writing
