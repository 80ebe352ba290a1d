"""Benchmark: the first code execution in a new thread: forked from the warm template, cold, and pooled.

A new thread has no kernel yet. With ``pool_size=0`` its first run gets a new kernel: by default one
forked from the warm template (a process that has imported IPython, numpy, pandas and matplotlib
already), or, with ``fork_kernels=False``, one started as a process of its own. With a pool, a kernel
made in the background is handed over. Between pooled samples the benchmark waits, untimed, for the
pool to refill, as a learner's next thread would find it after a few seconds of reading.

Per sample: ``first_exec`` is the sandbox time of the run (kernel hand-over or start, then the
walkthrough's code), from the runtime's ``Server-Timing``; ``create_and_poll`` is what the learner
waits for in all. The floor, a bare ipykernel started by jupyter_client alone, is timed in the same
run, and the fork's ratio to it is the figure the target is about.

    python bench/first_exec.py [--samples 10] [--pool-size 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

TARGET_POOL_MS = 100.0
TARGET_FORK_RATIO = 0.3  # a forked kernel's first execution against a bare ipykernel start


def first_runs(pool_size: int, samples: int, fork: bool = True) -> dict[str, Any]:
    kernel, waited = [], []
    with common.runtime(pool_size=pool_size, fork_kernels=fork) as rt:
        client = rt.client(max_retries=0)
        assistant_id = common.tutor(client).id
        for _ in range(samples + 1):  # the first sample warms the server and the SDK up
            if pool_size:
                common.wait_for_pool(rt)
            thread_id = client.beta.threads.create().id
            client.beta.threads.messages.create(thread_id=thread_id, role="user", content=common.FIB_PROMPT)
            begin = time.perf_counter()
            run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
            waited.append(time.perf_counter() - begin)
            if run.status != "completed":
                raise RuntimeError(f"run {run.id} ended {run.status}: {run.last_error}")
            headers = client.beta.threads.runs.with_raw_response.retrieve(thread_id=thread_id, run_id=run.id).headers
            kernel.append(common.server_timing(headers)["kernel"] / 1e3)
            client.beta.threads.delete(thread_id)  # stops its kernel
        client.close()
    return {"pool_size": pool_size, "fork": fork, "first_exec": common.summary(kernel[1:]),
            "create_and_poll": common.summary(waited[1:])}


def bare_kernel_start(samples: int) -> dict[str, Any]:
    starts = []
    for _ in range(samples):
        begin = time.perf_counter()
        kernel = common.RawKernel()
        starts.append(time.perf_counter() - begin)
        kernel.close()
    return common.summary(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--pool-size", type=int, default=1)
    args = parser.parse_args()
    bare = bare_kernel_start(min(args.samples, 5))
    forked = first_runs(0, args.samples)
    cold = first_runs(0, args.samples, fork=False)
    pooled = first_runs(max(args.pool_size, 1), args.samples)
    ratio = forked["first_exec"]["median_ms"] / bare["median_ms"]
    common.report("first_exec", {
        "backend": "replay",
        "fork": forked,
        "cold": cold,
        "pool": pooled,
        "bare_ipykernel_start": bare,
        "fork_to_bare_start_median": round(ratio, 3),
        "cold_to_bare_start_median": round(cold["first_exec"]["median_ms"] / bare["median_ms"], 3),
        "pool_speedup_median": round(cold["first_exec"]["median_ms"] / pooled["first_exec"]["median_ms"], 1),
        "target_fork_ratio": TARGET_FORK_RATIO,
        "target_pool_ms": TARGET_POOL_MS,
        "target_met": ratio <= TARGET_FORK_RATIO and pooled["first_exec"]["p95_ms"] <= TARGET_POOL_MS,
    })

if __name__ == "__main__":
    main()
