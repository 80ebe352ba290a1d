"""Run every benchmark one after another, then print each one's headline figure and target.

Each benchmark appends its own line to ``bench/results/``; this only runs them (one at a time, so
they do not slow each other down) and reads the lines they wrote.

    python bench/run_all.py [--only run_overhead,poll_latency]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any, Callable

import common

#: benchmark -> its headline, read from its result
HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "import_time": lambda r: f"import tutor_nb median {r['import']['median_ms']} ms; heavy modules loaded: "
                             f"{r['forbidden_loaded'] or 'none'}",
    "first_exec": lambda r: f"first execution: pool median {r['pool']['first_exec']['median_ms']} ms, "
                            f"p95 {r['pool']['first_exec']['p95_ms']} ms; cold {r['cold']['first_exec']['median_ms']} ms",
    "poll_latency": lambda r: "completion to create_and_poll return: " + ", ".join(
        f"{name} median {m['median_ms']} / p95 {m['p95_ms']} ms" for name, m in r["modes"].items()),
    "run_overhead": lambda r: "; ".join(
        f"{s['shape']} median {s['total']['median_ms']} ms = {s['ratio_median']}x floor ({s['floor']['median_ms']} ms)"
        for s in r["shapes"]),
    "classroom": lambda r: f"{r['learners']} learners: {r['errors']} errors, turn p50 {r['turn']['median_ms']} ms, "
                           f"p95 {r['turn']['p95_ms']} ms, {r['throughput_turns_per_s']} turns/s, "
                           f"{r['memory_per_kernel_at_end'].get('rss_mb_mean')} MB RSS per kernel",
    "panel_stream": lambda r: f"{r['paced']['widget_messages_per_s']} widget messages/s at "
                              f"{r['paced']['delta_rate_per_s']} deltas/s, {r['paced']['kernel_us_per_delta']} us per delta",
    "responses": lambda r: "; ".join(
        f"{s['shape']} median {s['total']['median_ms']} ms = {s['ratio_median']}x floor ({s['floor']['median_ms']} ms)"
        for s in r["code_interpreter"]) + "; hello adds " + ", ".join(
        f"{name} {ms} ms" for name, ms in r["hello"]["added_median_ms"].items()),
    "file_search": lambda r: f"{r['corpus']['megabytes']} MB indexed at {r['index']['mb_per_s']} MB/s; search "
                             f"p50 {r['search']['median_ms']} / p95 {r['search']['p95_ms']} ms",
}


def last_result(name: str) -> dict[str, Any] | None:
    path = common.RESULTS / f"{name}.jsonl"
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1]) if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(HEADLINES)
    failed = []
    for name in names:
        script = common.HERE / f"{name}.py"
        if not script.exists():
            print(f"-- {name}: no such benchmark here, skipped", file=sys.stderr)
            continue
        print(f"-- {name}", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=common.ROOT, stdout=subprocess.DEVNULL).returncode:
            failed.append(name)
    print()
    for name in names:
        result = last_result(name)
        if result is None or name in failed:
            print(f"{name:13} FAILED" if name in failed else f"{name:13} no result")
            continue
        met = result.get("target_met")
        mark = "" if met is None else ("  [target met]" if met else "  [TARGET MISSED]")
        print(f"{name:13} {HEADLINES[name](result)}{mark}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
