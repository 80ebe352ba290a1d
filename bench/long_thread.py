"""Benchmark: a turn in a long thread against the first turn of a new one, in the same run.

A thread is grown to ``--turns`` turns (default 599, so the measured turns are the 600th and on):
every third turn is the walkthrough's question, whose recorded answer runs code (a ``tool_calls``
step with its output, then the answer), the others a short answer without code. Then, interleaved:

- ``first``: the walkthrough's turn (message, ``create_and_poll``, messages list, steps list) as the
  first turn of a new thread (its kernel comes from the pre-started pool, refilled untimed);
- ``second``: the next turn in that thread (its kernel already running), for reference;
- ``long``: the same turn in the long thread.

A run's cost may grow with what the model is sent, nothing else; on ``replay`` that is nearly nothing,
so the long thread's turn should cost about what a short thread's does. The target is the median of
``long`` at most 1.5x the median of ``first``. The runtime's ``Server-Timing`` splits each turn into
engine and kernel time.

    python bench/long_thread.py [--turns 599] [--iterations 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import common
from run_overhead import turn

TARGET_RATIO = 1.5
FILLER = "bench long thread: note this"


def grow(client: Any, assistant_id: str, turns: int) -> tuple[str, float]:
    """A thread of ``turns`` finished turns; returns its id and the seconds it took to make."""
    begin = time.perf_counter()
    thread_id = client.beta.threads.create().id
    for n in range(turns):
        if n % 3 == 0:
            turn(client, assistant_id, thread_id)
            continue
        client.beta.threads.messages.create(thread_id=thread_id, role="user", content=FILLER)
        run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
        if run.status != "completed":
            raise RuntimeError(f"a filler turn went wrong: {run.status} {run.last_error}")
    return thread_id, time.perf_counter() - begin


def timed(client: Any, assistant_id: str, thread_id: str) -> dict[str, float]:
    watch, run, _ = turn(client, assistant_id, thread_id)
    timing = common.server_timing(
        client.beta.threads.runs.with_raw_response.retrieve(thread_id=thread_id, run_id=run.id).headers)
    return {"total": watch.total, "engine": (timing["queue"] + timing["engine"]) / 1e3,
            "kernel": timing["kernel"] / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=599, help="turns in the long thread before the measured ones")
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"first": [], "second": [], "long": []}
    with common.runtime(pool_size=1) as rt:
        client = rt.client(max_retries=0)
        assistant_id = common.tutor(client).id
        long_thread, grown_in = grow(client, assistant_id, args.turns)
        messages_before = len(list(client.beta.threads.messages.list(thread_id=long_thread, limit=100)))
        for i in range(args.warmup + args.iterations):
            common.wait_for_pool(rt)
            fresh = client.beta.threads.create().id
            measured = {"first": timed(client, assistant_id, fresh), "second": timed(client, assistant_id, fresh),
                        "long": timed(client, assistant_id, long_thread)}
            client.beta.threads.delete(fresh)
            if i >= args.warmup:
                for shape, row in measured.items():
                    rows[shape].append(row)
        client.close()

    def median_ms(shape: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rows[shape]) * 1e3, 2)

    shapes = {shape: {"total": common.summary([r["total"] for r in rows[shape]]),
                      "split_median_ms": {k: median_ms(shape, k) for k in ("engine", "kernel")}}
              for shape in rows}
    ratio = shapes["long"]["total"]["median_ms"] / shapes["first"]["total"]["median_ms"]
    common.report("long_thread", {
        "iterations": args.iterations, "warmup": args.warmup, "backend": "replay", "pool_size": 1,
        "long_thread_turns_before": args.turns, "long_thread_messages_listed_page": messages_before,
        "long_thread_grown_in_s": round(grown_in, 1),
        "shapes": shapes,
        "ratio_long_to_first": round(ratio, 2),
        "ratio_long_to_second": round(shapes["long"]["total"]["median_ms"] / shapes["second"]["total"]["median_ms"], 2),
        "engine_ratio_long_to_second": round(median_ms("long", "engine") / median_ms("second", "engine"), 2),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
    })


if __name__ == "__main__":
    main()
