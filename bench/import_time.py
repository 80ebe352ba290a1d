"""Benchmark: ``import tutor_nb`` in a fresh interpreter, and what it drags in.

A notebook's first cell imports tutor_nb; the runtime's server stack, the kernel machinery and
the widgets must wait until they are used. Each sample is a new interpreter timing the import
itself (interpreter start-up excluded, reported apart); one more run with ``-X importtime`` lists
the slowest imports. ``from tutor_nb import connect`` (the usual first line) is timed too, for
information: it may load the SDK, but not the server stack until ``connect()`` is called.

    python bench/import_time.py [--samples 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

import common

TARGET_MS = 300.0
#: must not load on ``import tutor_nb``
FORBIDDEN = ("fastapi", "uvicorn", "starlette", "jupyter_client", "ipykernel", "ipywidgets", "zmq")
#: worth knowing about when they load
WATCHED = (*FORBIDDEN, "openai", "httpx", "httpx2", "pydantic", "IPython", "numpy", "pandas", "matplotlib", "dotenv")

_PROBE = """
import json, sys, time
begin = time.perf_counter()
%s
seconds = time.perf_counter() - begin
print(json.dumps({"seconds": seconds, "modules": sorted(m for m in %r if m in sys.modules)}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(common.ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONSTARTUP", None)
    return env


def probe(statement: str = "import tutor_nb") -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _PROBE % (statement, WATCHED)], capture_output=True, text=True, cwd=common.ROOT,
                         env=_env(), timeout=120, check=True)
    return json.loads(out.stdout)


def bare_interpreter() -> float:
    """Seconds for ``python -c pass``: the part of a fresh import that is not tutor_nb's."""
    import time

    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=common.ROOT, env=_env(), timeout=60, check=True)
    return time.perf_counter() - begin


def slowest_imports(count: int = 10) -> list[dict[str, Any]]:
    """The imports with the largest cumulative time under ``-X importtime``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tutor_nb"], capture_output=True,
                         text=True, cwd=common.ROOT, env=_env(), timeout=120, check=True)
    rows = []
    for line in out.stderr.splitlines():
        _, _, rest = line.partition("import time:")
        parts = rest.split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        self_us, cumulative_us, name = parts
        rows.append({"module": name.strip(), "cumulative_ms": round(int(cumulative_us) / 1e3, 1),
                     "self_ms": round(int(self_us) / 1e3, 1)})
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=9)
    args = parser.parse_args()
    probe()  # warm the file system cache and .pyc files
    samples = [probe() for _ in range(args.samples)]
    seconds = [s["seconds"] for s in samples]
    loaded = sorted({m for s in samples for m in s["modules"]})
    forbidden = [m for m in loaded if m in FORBIDDEN]
    interpreter = statistics.median(bare_interpreter() for _ in range(args.samples))
    result = common.summary(seconds)
    connect = [probe("from tutor_nb import connect") for _ in range(args.samples)]
    common.report("import_time", {
        "import": result,
        "bare_interpreter_start_ms": round(interpreter * 1e3, 1),
        "modules_loaded": loaded,
        "forbidden_loaded": forbidden,
        "from_tutor_nb_import_connect": {**common.summary([s["seconds"] for s in connect]),
                                         "modules_loaded": sorted({m for s in connect for m in s["modules"]})},
        "slowest_imports": slowest_imports(),
        "target_ms": TARGET_MS,
        "target_met": result["median_ms"] <= TARGET_MS and not forbidden,
    })


if __name__ == "__main__":
    main()
