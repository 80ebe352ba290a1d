"""Benchmark: 2,000 text deltas, then 2,000 live log deltas, streamed into a ChatPanel.

Measures what the kernel pays per delta (applying it to the transcript, in the run's worker
thread) and how many widget messages reach the front end per second of streaming: the panel
coalesces updates to at most ~20 a second whatever the delta rate, also while a running step's
logs stream in (one line per delta, as the runtime sends them while code runs). Widget messages
are counted at ipywidgets' single exit point, ``Widget._send``.

    python bench/panel_stream.py [--deltas 2000] [--rate 1000]

Prints one JSON object and appends it to bench/results/panel_stream.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import ipywidgets as W  # noqa: E402

import panel_events as ev  # noqa: E402
from tutor_nb.panel import ChatPanel  # noqa: E402
from tutor_nb.panel.transcript import TurnBuilder  # noqa: E402


class Meter:
    """Counts widget messages, and times applying events (worker) and flushes (widgets)."""

    def __init__(self) -> None:
        self.reset()
        send, apply, render = W.Widget._send, TurnBuilder.apply, ChatPanel._render

        def counting(widget: W.Widget, msg: dict, buffers: Any = None) -> None:
            self.messages += 1
            send(widget, msg, buffers)

        def timed_apply(builder: TurnBuilder, event: Any) -> None:
            begin = time.perf_counter()
            apply(builder, event)
            self.apply_seconds += time.perf_counter() - begin

        def timed_render(panel: ChatPanel) -> None:
            begin = time.perf_counter()
            render(panel)
            self.render_seconds += time.perf_counter() - begin

        W.Widget._send = counting  # type: ignore[method-assign]
        TurnBuilder.apply = timed_apply  # type: ignore[method-assign]
        ChatPanel._render = timed_render  # type: ignore[method-assign]

    def reset(self) -> None:
        self.messages = 0
        self.apply_seconds = 0.0
        self.render_seconds = 0.0


def deltas(count: int, rate: float | None) -> Iterator[Any]:
    yield ev.event("thread.run.created", ev.run("queued"))
    yield ev.event("thread.run.in_progress", ev.run("in_progress"))
    yield ev.event("thread.message.created", ev.message("in_progress", []))
    start = time.perf_counter()
    for i in range(count):
        if rate:
            lag = start + i / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
        yield ev.text_delta(f"단어{i} " if i % 7 else f"\\( x_{i} \\) ")
    yield ev.event("thread.run.completed", ev.run("completed", usage={"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}))


def log_deltas(count: int, rate: float | None) -> Iterator[Any]:
    """A code step whose logs stream in, one printed line per delta, while it runs."""
    code = "for i in range(2000):\n    print(i)"
    yield ev.event("thread.run.created", ev.run("queued"))
    yield ev.event("thread.run.in_progress", ev.run("in_progress"))
    yield ev.event("thread.run.step.created", ev.code_step("in_progress", "", []))
    yield ev.code_delta(code)
    yield ev.event("thread.run.step.in_progress", ev.code_step("in_progress", code, []))
    start = time.perf_counter()
    for i in range(count):
        if rate:
            lag = start + i / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
        yield ev.code_delta(outputs=[{"index": 0, "type": "logs", "logs": f"{i}\n"}])
    logs = "".join(f"{i}\n" for i in range(count))
    yield ev.event("thread.run.step.completed", ev.code_step("completed", code, [{"type": "logs", "logs": logs}]))
    yield ev.event("thread.run.completed", ev.run("completed", usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))


def measure(count: int, rate: float | None, meter: Meter, source: Any = None) -> dict[str, Any]:
    source = source or deltas
    panel = ChatPanel(client=object())
    events = list(source(count, None)) if rate is None else None
    meter.reset()
    begin = time.perf_counter()
    panel.play("bench", iter(events) if events is not None else source(count, rate))
    entry = panel.wait(timeout=600)
    elapsed = time.perf_counter() - begin
    assert entry["status"] == "completed"
    assert entry["text"].count(" ") >= count if source is deltas else entry["steps"][0]["logs"].count("\n") == count
    return {
        "deltas": count,
        "delta_rate_per_s": rate or round(count / elapsed),
        "elapsed_s": round(elapsed, 3),
        "apply_us_per_delta": round(meter.apply_seconds / count * 1e6, 1),
        "flush_ms_mean": round(meter.render_seconds / max(panel.flushes, 1) * 1e3, 2),
        "kernel_us_per_delta": round((meter.apply_seconds + meter.render_seconds) / count * 1e6, 1),
        "flushes": panel.flushes,
        "flushes_per_s": round(panel.flushes / elapsed, 1),
        "widget_messages": meter.messages,
        "widget_messages_per_s": round(meter.messages / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0, help="deltas per second for the paced run")
    args = parser.parse_args()
    meter = Meter()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    except OSError:
        commit = ""
    result = {
        "bench": "panel_stream",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "ipywidgets": W.__version__,
        "as_fast_as_possible": measure(args.deltas, None, meter),
        "paced": measure(args.deltas, args.rate, meter),
        "live_logs_paced": measure(args.deltas, args.rate, meter, log_deltas),
    }
    line = json.dumps(result, ensure_ascii=False)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with open(results / "panel_stream.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
