"""Benchmark: from a run's completion to ``create_and_poll`` returning it.

The completion instant is the runtime's own, with sub-second precision (``ended`` in the
``Server-Timing`` header of run retrieve; the API's ``completed_at`` is whole seconds); the
return instant is taken by the client right after ``create_and_poll``. Both clocks are this
machine's ``time.time()``.

Runs execute code that waits a set time (0 to 2.2 s, from ``bench/cassettes``), so completions
fall at every phase of the polling cycle, including just after the server's 1 s long poll ends.
Three ways of polling are compared:

- ``long_poll``: ``create_and_poll`` as the SDK does it. It marks its requests as the poll
  helper's, so the runtime holds each retrieve until the run's status changes.
- ``poll_after_header``: the poll-helper header removed: no long poll, the SDK sleeps the 25 ms
  the runtime's ``openai-poll-after-ms`` header asks for.
- ``sdk_default``: no long poll and a 1,000 ms interval: what the SDK does against a server that
  sends no ``openai-poll-after-ms`` (shown for contrast, one round only).

    python bench/poll_latency.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

TARGET_MS = 50.0
WAITS = ["0.00", "0.02", "0.10", "0.25", "0.50", "0.80", "0.99", "1.00", "1.02", "1.30", "1.70", "2.20"]


def latencies(client: Any, assistant_id: str, thread_id: str, rounds: int, **poll: Any) -> list[float]:
    found = []
    for _ in range(rounds):
        for wait in WAITS:
            client.beta.threads.messages.create(thread_id=thread_id, role="user", content=f"bench: wait {wait} s")
            run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id, **poll)
            returned = time.time()
            if run.status != "completed":
                raise RuntimeError(f"run {run.id} ended {run.status}: {run.last_error}")
            headers = client.beta.threads.runs.with_raw_response.retrieve(thread_id=thread_id, run_id=run.id).headers
            found.append(returned - float(common.server_timing(headers)["ended"]))
    return found


def main() -> None:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds through the 12 wait times (long poll, 25 ms)")
    args = parser.parse_args()
    no_long_poll = {"extra_headers": {"X-Stainless-Poll-Helper": openai.Omit()}}
    modes = {
        "long_poll": ({}, args.rounds),
        "poll_after_header": (no_long_poll, args.rounds),
        "sdk_default": ({**no_long_poll, "poll_interval_ms": 1000}, 1),
    }
    results: dict[str, Any] = {}
    with common.runtime(pool_size=1) as rt:
        client = rt.client(max_retries=0)
        assistant_id = common.tutor(client).id
        thread_id = client.beta.threads.create().id
        latencies(client, assistant_id, thread_id, 1, **modes["long_poll"][0])  # warm-up: kernel, imports
        for name, (poll, rounds) in modes.items():
            found = latencies(client, assistant_id, thread_id, rounds, **poll)
            results[name] = common.summary(found)
        client.close()
    long_poll = results["long_poll"]
    common.report("poll_latency", {
        "backend": "replay",
        "waits_s": [float(w) for w in WAITS],
        "modes": results,
        "target_ms": TARGET_MS,
        "target_met": long_poll["p95_ms"] <= TARGET_MS,
        "within_100ms_of_completion": long_poll["max_ms"] <= 100.0,
    })


if __name__ == "__main__":
    main()
