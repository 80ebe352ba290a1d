"""Benchmark: what the runtime adds to one walkthrough turn, against the floor measured in the same run.

The walkthrough's calls (create a thread, add the message, ``create_and_poll``, list the
messages, list the steps) run against an in-process runtime on ``replay``, so no model time is
left: what remains is HTTP, the run engine and the kernel. Each iteration is followed by the
floor: the same code executed by a bare ipykernel through jupyter_client, plus as many trivial
HTTP round trips (kept-alive connection, to a bare asyncio server on 127.0.0.1) as the iteration
made. Interleaving keeps the ratio fair on a noisy machine. The same number of round trips to the
runtime's own tiniest endpoint (``GET /v1``) is timed too: it shows what the server stack costs
before any endpoint logic.

Two shapes are measured:

- ``new_thread``: the walkthrough as written, a new thread each time; its kernel comes from the
  pre-started pool (the benchmark waits, untimed, for the pool to refill between iterations).
- ``same_thread``: the next turn in a thread whose kernel is already running.

The split comes from the runtime's ``Server-Timing`` header on run retrieve: ``kernel`` (time in
the sandbox: kernel hand-over and execution), ``engine`` (the rest of the run, queueing
included); HTTP and the SDK are the remainder of the client's wall time.

    python bench/run_overhead.py [--iterations 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import common

TARGET_RATIO = 4.0


def turn(client: Any, assistant_id: str, thread_id: str | None) -> tuple[common.Stopwatch, Any, str]:
    """One walkthrough turn; a new thread unless ``thread_id`` is given."""
    watch = common.Stopwatch()
    if thread_id is None:
        with watch.lap("thread"):
            thread_id = client.beta.threads.create().id
    with watch.lap("message"):
        client.beta.threads.messages.create(thread_id=thread_id, role="user", content=common.FIB_PROMPT)
    with watch.lap("create_and_poll"):
        run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    with watch.lap("messages"):
        messages = client.beta.threads.messages.list(thread_id=thread_id)
    with watch.lap("steps"):
        steps = client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run.id, order="asc")
    logs = steps.data[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs if steps.data else ""
    if run.status != "completed" or "4181" not in logs or messages.data[0].role != "assistant":
        raise RuntimeError(f"the walkthrough turn went wrong: run {run.status} {run.last_error}, logs {logs!r}")
    return watch, run, thread_id


def measure(rt: Any, shape: str, iterations: int, warmup: int, raw: common.RawKernel, bare: common.BareServer,
            code: str) -> dict[str, Any]:
    client, sent = common.counting_client(rt.client, max_retries=0)
    loop, tiny = common.Loopback(bare.url), common.Loopback(rt.base_url)
    assistant_id = common.tutor(client).id
    keep = client.beta.threads.create().id if shape == "same_thread" else None
    rows: list[dict[str, float]] = []
    try:
        for i in range(warmup + iterations):
            if shape == "new_thread":
                common.wait_for_pool(rt)
            sent.clear()
            watch, run, thread_id = turn(client, assistant_id, keep)
            requests = len(sent)
            timing = common.server_timing(
                client.beta.threads.runs.with_raw_response.retrieve(thread_id=thread_id, run_id=run.id).headers)
            if shape == "new_thread":
                client.beta.threads.delete(thread_id)  # its kernel stops too

            begin = time.perf_counter()
            if "4181" not in raw.execute(code):
                raise RuntimeError("the floor's execution printed the wrong thing")
            kernel_floor = time.perf_counter() - begin
            begin = time.perf_counter()
            for _ in range(requests):
                loop.round_trip()
            http_floor = time.perf_counter() - begin
            begin = time.perf_counter()
            for _ in range(requests):
                tiny.round_trip()
            tiny_endpoint = time.perf_counter() - begin

            if i < warmup:
                continue
            engine = (timing["queue"] + timing["engine"]) / 1e3
            kernel = timing["kernel"] / 1e3
            rows.append({"total": watch.total, "engine": engine, "kernel": kernel,
                         "http": watch.total - engine - kernel, "requests": requests,
                         "floor": kernel_floor + http_floor, "floor_kernel": kernel_floor, "floor_http": http_floor,
                         "tiny_endpoint": tiny_endpoint,
                         **{f"call_{k}": v for k, v in watch.laps.items()}})
    finally:
        loop.close()
        tiny.close()
        client.close()

    def col(name: str) -> list[float]:
        return [r[name] for r in rows]

    total, floor = common.summary(col("total")), common.summary(col("floor"))
    ratio = total["median_ms"] / floor["median_ms"]
    return {
        "shape": shape,
        "requests_per_turn": statistics.median(col("requests")),
        "total": total,
        "split_median_ms": {k: round(statistics.median(col(k)) * 1e3, 2) for k in ("http", "engine", "kernel")},
        "split_p95_ms": {k: round(common.percentile(col(k), 95) * 1e3, 2) for k in ("http", "engine", "kernel")},
        "calls_median_ms": {k[5:]: round(statistics.median(col(k)) * 1e3, 2) for k in rows[0] if k.startswith("call_")},
        "floor": floor,
        "floor_split_median_ms": {"kernel": round(statistics.median(col("floor_kernel")) * 1e3, 2),
                                  "http": round(statistics.median(col("floor_http")) * 1e3, 2)},
        "runtime_tiny_endpoint_median_ms": round(statistics.median(col("tiny_endpoint")) * 1e3, 2),
        "ratio_median": round(ratio, 2),
        "ratio_p95": round(total["p95_ms"] / floor["p95_ms"], 2),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    code = common.recorded_code()
    with common.RawKernel() as raw, common.BareServer() as bare, common.runtime(pool_size=1) as rt:
        raw.execute(code)
        shapes = [measure(rt, shape, args.iterations, args.warmup, raw, bare, code)
                  for shape in ("new_thread", "same_thread")]
    common.report("run_overhead", {"iterations": args.iterations, "warmup": args.warmup, "backend": "replay",
                                   "pool_size": 1, "shapes": shapes,
                                   "target_met": all(shape["target_met"] for shape in shapes)})


if __name__ == "__main__":
    main()
