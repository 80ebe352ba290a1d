"""Benchmark: a classroom of learners using one runtime at the same time, with real kernels.

Each simulated learner (an asyncio task of one ``AsyncOpenAI`` client) makes a thread and takes
five turns back to back, all learners starting together. A turn is the walkthrough's calls: add a
message, ``create_and_poll``, list the messages, list the run's steps. The turns are recorded in
``bench/cassettes`` (Fibonacci, then code that uses its result, numpy included), so every thread
needs its own kernel and keeps its state across turns.

The runtime is served by its own process, as ``python -m tutor_nb serve`` would for a room, and
its memory is sampled twice a second: the server process, and each kernel (the ipykernel process,
RSS; at the end also USS and PSS, which do not count pages shared between kernels). CPU time used
during the class by the server, the kernels and this client process shows where a saturated
machine's time goes.

Reported: throughput, turn time p50/p95 (all turns, first turns, later turns), where the first
turns' time went (queue, engine, kernel from ``Server-Timing``), errors a learner would see (the
client keeps the SDK's default retries, as learners' clients do; the retries it needed are
counted apart), peak memory.

    python bench/classroom.py [--learners 30] [--turns 5] [--pool-size N] [--prestart] [--cold-kernels]

With no ``--pool-size`` the runtime runs on its default settings: kernels forked from the warm template
and a pool that adapts to demand. ``--prestart`` waits for a fixed pool to be full before the class
starts (a pool sized for the room). Targets: 30 learners p95 turn at most 2 s; 100 learners p95 at
most 5 s with the server and kernels together at most 6 GB; no errors either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import threading
import time
from collections import Counter
from typing import Any, Iterator

import psutil

import common

TARGET_P95_MS = {30: 2000.0, 100: 5000.0}  # by class size: up to 30 learners, up to 100
TARGET_TREE_MB = 6 * 1024  # server and kernels together, for 100 learners
PROMPTS = [
    (common.FIB_PROMPT, "4181"),
    ("bench classroom: sum of squares", "338350"),
    ("bench classroom: numpy statistics", "547.25"),  # the mean of the 20 numbers
    ("bench classroom: primes", "997"),
    ("bench classroom: golden ratio", "1.618034"),
]
MB = 1024 * 1024


class SDKRetries(logging.Handler):
    """Counts the requests the SDK retried and why (it logs both); learners' clients retry by default."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.causes: Counter[str] = Counter()
        self._logger = logging.getLogger("openai._base_client")

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Retrying request"):
            self.retries += 1
        elif str(record.msg).startswith("Encountered"):
            self.causes[record.getMessage()] += 1

    def __enter__(self) -> "SDKRetries":
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def kernels_of(server: psutil.Process) -> list[psutil.Process]:
    """The ipykernel processes under the server: launched cold (not the bubblewrap wrappers around them)
    or forked from the warm template (its children; the template itself is not a kernel)."""
    def kernel_like(proc: psutil.Process) -> bool:
        command = " ".join(proc.cmdline())
        if proc.name() == "bwrap":
            return False
        if "ipykernel_launcher" in command or "kernel_boot.py" in command:
            return True
        return "kernel_template.py" in command and proc.ppid() != server.pid  # not the template itself

    found = []
    for proc in server.children(recursive=True):
        try:
            # the ipykernel process is the last of its chain (under a supervisor or bubblewrap of the same name)
            if kernel_like(proc) and not any(kernel_like(c) for c in proc.children()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


class MemorySampler:
    """Peak RSS of the server and of its kernels, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.server = psutil.Process(pid)
        self.every = every
        self.peak_server = self.peak_kernels_total = self.peak_tree = 0
        self.peak_kernel_count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def sample(self) -> None:
        try:
            server = self.server.memory_info().rss
            tree = server + sum(_rss(p) for p in self.server.children(recursive=True))
        except psutil.Error:
            return
        kernels = [_rss(p) for p in kernels_of(self.server)]
        self.peak_server = max(self.peak_server, server)
        self.peak_tree = max(self.peak_tree, tree)
        self.peak_kernels_total = max(self.peak_kernels_total, sum(kernels))
        self.peak_kernel_count = max(self.peak_kernel_count, len(kernels))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def per_kernel(self) -> dict[str, Any]:
        """RSS, USS and PSS of each kernel now, in MB (mean and max)."""
        rss, uss, pss = [], [], []
        for proc in kernels_of(self.server):
            try:
                full = proc.memory_full_info()
            except psutil.Error:
                continue
            rss.append(full.rss / MB)
            uss.append(full.uss / MB)
            pss.append(getattr(full, "pss", full.uss) / MB)
        if not rss:
            return {"kernels": 0}
        return {"kernels": len(rss),
                **{f"{name}_mb_mean": round(statistics.mean(v), 1) for name, v in (("rss", rss), ("uss", uss), ("pss", pss))},
                **{f"{name}_mb_max": round(max(v), 1) for name, v in (("rss", rss), ("uss", uss), ("pss", pss))}}

    def tree_pss_mb(self) -> float:
        """The server and everything under it, by PSS: shared pages (a warm template's) counted once in all."""
        total = 0
        for proc in [self.server, *self.server.children(recursive=True)]:
            try:
                full = proc.memory_full_info()
            except psutil.Error:
                continue
            total += getattr(full, "pss", full.rss)
        return round(total / MB, 1)

    def peaks(self) -> dict[str, Any]:
        return {"server_rss_mb": round(self.peak_server / MB, 1),
                "kernels_rss_mb": round(self.peak_kernels_total / MB, 1),
                "tree_rss_mb": round(self.peak_tree / MB, 1),
                "kernels": self.peak_kernel_count}


def cpu_seconds(server: psutil.Process) -> dict[str, float]:
    """CPU time (user + system) used so far by the server, its kernels, and this client process."""
    def used(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    return {"server": used(server), "kernels": sum(used(p) for p in kernels_of(server)),
            "client": used(psutil.Process())}


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


async def learner(client: Any, assistant_id: str, turns: int, think: float) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    thread_id = None
    for number, (prompt, expected) in enumerate(PROMPTS[:turns]):
        begin = time.perf_counter()
        row: dict[str, Any] = {"turn": number}
        try:
            if thread_id is None:
                thread_id = (await client.beta.threads.create()).id
            await client.beta.threads.messages.create(thread_id=thread_id, role="user", content=prompt)
            run = await client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
            messages = await client.beta.threads.messages.list(thread_id=thread_id, limit=1)
            steps = await client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run.id, order="asc")
            row["seconds"] = time.perf_counter() - begin
            logs = "".join(o.logs for s in steps.data if s.step_details.type == "tool_calls"
                           for c in s.step_details.tool_calls for o in c.code_interpreter.outputs if o.type == "logs")
            answer = messages.data[0].content[0].text.value if messages.data and messages.data[0].role == "assistant" else ""
            if run.status != "completed":
                row["error"] = f"run {run.status}: {run.last_error.message if run.last_error else ''}"
            elif expected not in logs or not answer:
                row["error"] = f"unexpected output {logs[-200:]!r}"
            raw = await client.beta.threads.runs.with_raw_response.retrieve(thread_id=thread_id, run_id=run.id)
            row["timing"] = common.server_timing(raw.headers)
        except Exception as exc:  # counted, not raised: the room goes on
            row["seconds"] = time.perf_counter() - begin
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            row["error"] = f"{type(exc).__name__}: {exc}{cause}"[:300]
        done.append(row)
        if think:
            await asyncio.sleep(think)
    return done


async def classroom(base_url: str, api_key: str, learners: int, turns: int, think: float) -> tuple[list[dict[str, Any]], float]:
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key) as client:  # SDK's retries, as learners have
        assistant_id = (await client.beta.assistants.create(
            instructions=common.TUTOR_INSTRUCTIONS, model="gpt-4o", tools=[{"type": "code_interpreter"}])).id
        begin = time.perf_counter()
        rows = await asyncio.gather(*(learner(client, assistant_id, turns, think) for _ in range(learners)))
        return [r for rs in rows for r in rs], time.perf_counter() - begin


def wait_for_kernels(server: psutil.Process, count: int, timeout: float = 300.0) -> float:
    """Wait until ``count`` kernels exist and the server's tree is quiet; returns the seconds waited."""
    begin = time.monotonic()
    while len(kernels_of(server)) < count:
        if time.monotonic() - begin > timeout:
            raise TimeoutError(f"the pool did not reach {count} kernels")
        time.sleep(0.5)
    while time.monotonic() - begin < timeout:
        procs = [server, *server.children(recursive=True)]
        for p in procs:
            try:
                p.cpu_percent(None)
            except psutil.Error:
                pass
        time.sleep(1.0)
        busy = 0.0
        for p in procs:
            try:
                busy += p.cpu_percent(None)
            except psutil.Error:
                pass
        if busy < 10.0:
            break
    return time.monotonic() - begin


@contextlib.contextmanager
def local_gateway() -> Iterator[dict[str, str]]:
    """A Jupyter Kernel Gateway on 127.0.0.1 in its own process; yields the runtime settings that use it."""
    import secrets
    import socket
    import subprocess
    import sys
    import tempfile

    import httpx

    token = secrets.token_urlsafe(16)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TUTOR_NB_", "OPENAI_"))}, "KG_AUTH_TOKEN": token}
    with tempfile.TemporaryDirectory(prefix="tnb-bench-gateway-") as folder:
        proc = subprocess.Popen([sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
                                 f"--KernelGatewayApp.port={port}", "--KernelGatewayApp.port_retries=0"],
                                cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/api/kernelspecs", headers={"Authorization": f"token {token}"}).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the kernel gateway did not start (pip install jupyter-kernel-gateway)")
                time.sleep(0.2)
            yield {"gateway_url": url, "gateway_token": token}
        finally:
            common._stop_tree(proc)


def summarize(rows: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    errors = [r["error"] for r in rows if "error" in r]

    def ms(selected: list[dict[str, Any]]) -> dict[str, Any]:
        return common.summary([r["seconds"] for r in selected]) if selected else {"n": 0}

    first = [r for r in rows if r["turn"] == 0]
    split = {}
    for part in ("queue", "engine", "kernel"):
        values = [r["timing"][part] for r in first if part in r.get("timing", {})]
        if values:
            split[part] = {"median_ms": round(statistics.median(values), 1), "p95_ms": round(common.percentile(values, 95), 1)}
    return {
        "turns": len(rows),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "wall_s": round(wall, 2),
        "throughput_turns_per_s": round(len(ok) / wall, 2),
        "turn": ms(rows),
        "first_turn": ms(first),
        "later_turns": ms([r for r in rows if r["turn"] > 0]),
        "first_turn_server_split": split,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--turns", type=int, default=5, choices=range(1, len(PROMPTS) + 1))
    parser.add_argument("--pool-size", type=int, default=None, help="a fixed pool (default: the adaptive one)")
    parser.add_argument("--cold-kernels", action="store_true", help="every kernel started cold, none forked")
    parser.add_argument("--gateway", action="store_true",
                        help="kernels on a Jupyter Kernel Gateway started here on 127.0.0.1 (jupyter-kernel-gateway)")
    parser.add_argument("--prestart", action="store_true", help="wait for a full pool before the class starts")
    parser.add_argument("--think", type=float, default=0.0, help="seconds a learner reads between turns")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        gateway = stack.enter_context(local_gateway()) if args.gateway else {}
        rt = stack.enter_context(common.spawned_runtime(pool_size=args.pool_size, idle_timeout=3600,
                                                        fork_kernels=not args.cold_kernels, **gateway))
        server = psutil.Process(rt.pid)
        waited = wait_for_kernels(server, args.pool_size or 1) if args.prestart else 0.0
        cpu_before = cpu_seconds(server)
        with MemorySampler(rt.pid) as memory, SDKRetries() as retried:
            rows, wall = asyncio.run(classroom(rt.base_url, rt.api_key, args.learners, args.turns, args.think))
            memory.sample()
        cpu_after = cpu_seconds(server)
        per_kernel = memory.per_kernel()
        tree_pss = memory.tree_pss_mb()
        peaks = memory.peaks()
        result = summarize(rows, wall)
    target = TARGET_P95_MS[30] if args.learners <= 30 else TARGET_P95_MS[100]
    common.report("classroom", {
        "backend": "replay", "learners": args.learners, "turns_per_learner": args.turns,
        "pool_size": args.pool_size if args.pool_size is not None else "adaptive",
        "kernels": "gateway" if args.gateway else ("cold" if args.cold_kernels else "fork"),
        "prestarted": args.prestart, "prestart_wait_s": round(waited, 1),
        "think_s": args.think,
        **result,
        "sdk_retries": retried.retries,
        "sdk_retry_causes": dict(retried.causes),
        "cpu_s_during_class": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after},
        "memory_peak": peaks,
        "memory_per_kernel_at_end": per_kernel,
        "memory_tree_pss_mb_at_end": tree_pss,
        "target_p95_ms": target,
        "target_tree_mb": TARGET_TREE_MB if args.learners > 30 else None,
        "target_met": result["errors"] == 0 and result["turn"].get("p95_ms", 1e9) <= target
                      and (args.learners <= 30 or tree_pss <= TARGET_TREE_MB),
    })


if __name__ == "__main__":
    main()
