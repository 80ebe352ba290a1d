"""Benchmark: what one idle kernel costs in memory of its own, forked from the warm template or started cold.

A sandbox fills a pool of kernels and leaves them idle; then each runs one typical turn (the walkthrough's
Fibonacci, numpy statistics and a matplotlib figure) and idles again. For every kernel: USS (pages no
other process maps: what the kernel really adds), PSS (shared pages split between their users) and RSS.
Forked kernels share the template's imported pages copy-on-write, so their USS is what they wrote since
the fork; the template itself is reported apart, paid once per runtime.

    python bench/kernel_memory.py [--kernels 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

import common  # noqa: F401  (puts the repository on sys.path)
from tutor_nb.runtime.sandbox import Sandbox

MB = 1024 * 1024
TARGET_USS_MB = 30.0
TURN = """
numbers = [0, 1]
for _ in range(18):
    numbers.append(numbers[-1] + numbers[-2])
import numpy as np, pandas as pd, matplotlib.pyplot as plt
arr = np.array(numbers)
frame = pd.DataFrame({"n": arr})
plt.plot(arr)
plt.show()
print(arr.mean(), frame.describe().loc["max", "n"])
"""


def tree(pid: int) -> dict[str, float]:
    """USS, PSS and RSS of a kernel's whole tree in MB: its supervisor (the process the sandbox started)
    and the ipykernel under it; USS and PSS add up, RSS of the ipykernel alone."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    infos = [p.memory_full_info() for p in procs]
    return {"uss": sum(i.uss for i in infos) / MB, "pss": sum(i.pss for i in infos) / MB,
            "rss": max(i.rss for i in infos) / MB}


def memory(pids: list[int]) -> dict[str, Any]:
    trees = [tree(pid) for pid in pids]
    per = {name: [t[name] for t in trees] for name in ("uss", "pss", "rss")}
    return {f"{name}_mb": {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}
            for name, values in per.items()}


async def measure(kernels: int, fork: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tnb-bench-") as folder:
        sandbox = Sandbox(Path(folder), pool_size=kernels, fork=fork)
        await sandbox.start()
        try:
            deadline = time.monotonic() + 300
            while sandbox._pool is None or sandbox._pool.qsize() < kernels:
                if time.monotonic() > deadline:
                    raise TimeoutError("the pool did not fill")
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # idle: what the kernels hold once their start-up is over
            pooled = [k.pid for k in sandbox._pool._queue]  # type: ignore[union-attr]
            fresh = memory(pooled)
            for index in range(kernels):
                result = await sandbox.execute(f"t{index}", TURN)
                if result.status != "ok" or not result.images:
                    raise RuntimeError(f"the turn failed: {result!r}")
            await asyncio.sleep(2.0)
            used = memory([k.pid for k in sandbox._kernels.values()])
            template = None
            if sandbox.launcher.warm is not None and sandbox.launcher.warm._template is not None:
                info = psutil.Process(sandbox.launcher.warm._template.pid).memory_full_info()  # itself, not its kernels
                template = {f"{n}_mb": round(getattr(info, n) / MB, 1) for n in ("uss", "pss", "rss")}
            return {"fork": fork, "kernels": kernels, "idle_fresh": fresh, "idle_after_a_turn": used,
                    "template": template, "sandbox": repr(sandbox)}
        finally:
            await sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=8)
    args = parser.parse_args()
    forked = asyncio.run(measure(args.kernels, fork=True))
    cold = asyncio.run(measure(args.kernels, fork=False))
    common.report("kernel_memory", {
        "fork": forked,
        "cold": cold,
        "target_uss_mb": TARGET_USS_MB,
        "target_met_idle": forked["idle_fresh"]["uss_mb"]["median"] <= TARGET_USS_MB,
        "target_met_after_a_turn": forked["idle_after_a_turn"]["uss_mb"]["median"] <= TARGET_USS_MB,
    })


if __name__ == "__main__":
    main()
