"""What every benchmark shares: a runtime in a throwaway folder, clocks, percentiles and the report.

Benchmarks are scripts, not tests: each prints one JSON object and appends it, with the machine
it ran on, as one line of ``bench/results/<name>.jsonl``. Run them from the repository root::

    python bench/run_overhead.py

Running this file with ``--serve SETTINGS_JSON`` serves a runtime in the foreground; that is how
:func:`spawned_runtime` puts the server in its own process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the openai SDK marks every Assistants call deprecated; the benchmarks use them on purpose
warnings.filterwarnings("ignore", message=".*deprecated", category=DeprecationWarning)

RESULTS = HERE / "results"
CASSETTES = HERE / "cassettes"
#: the walkthrough's assistant and request (its recorded turns ship with tutor_nb)
TUTOR_INSTRUCTIONS = (
    "You are a personal math tutor. When asked a math question, write and run code to answer the question."
)
FIB_PROMPT = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"


# -- numbers -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating between the two nearest values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, p95, min and max of durations in seconds, given in milliseconds."""
    return {
        "n": len(seconds),
        "median_ms": round(statistics.median(seconds) * 1e3, 2),
        "p95_ms": round(percentile(seconds, 95) * 1e3, 2),
        "min_ms": round(min(seconds) * 1e3, 2),
        "max_ms": round(max(seconds) * 1e3, 2),
    }


class Stopwatch:
    """Named laps of ``time.perf_counter()``: ``with watch.lap("thread"): ...``."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}

    @contextlib.contextmanager
    def lap(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.laps[name] = self.laps.get(name, 0.0) + time.perf_counter() - begin

    @property
    def total(self) -> float:
        return sum(self.laps.values())


def server_timing(headers: Any) -> dict[str, Any]:
    """A ``Server-Timing`` header as {name: milliseconds or description}."""
    metrics: dict[str, Any] = {}
    for entry in (headers.get("server-timing") or "").split(","):
        name, *params = [p.strip() for p in entry.split(";")]
        if not name:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur":
                metrics[name] = float(value)
            elif key == "desc":
                metrics[name] = value.strip('"')
    return metrics


# -- the runtime -------------------------------------------------------------------------------


@contextlib.contextmanager
def runtime(**settings: Any) -> Iterator[Any]:
    """A runtime on a background thread of this process (as ``connect()`` gives a notebook), in a temp folder."""
    from tutor_nb.runtime import start

    settings.setdefault("backend", "replay")
    settings.setdefault("cassettes", [CASSETTES])
    with tempfile.TemporaryDirectory(prefix="tnb-bench-") as folder:
        rt = start(data_dir=folder, **settings)
        try:
            yield rt
        finally:
            rt.stop()


def sandbox_of(rt: Any) -> Any:
    """The in-process runtime's sandbox (benchmarks look inside to wait for its kernel pool)."""
    return rt._server.app.state.runtime.sandbox


def wait_for_pool(rt: Any, timeout: float = 60.0) -> None:
    """Block until the sandbox's pool of pre-started kernels is full again."""
    sandbox = sandbox_of(rt)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = sandbox._pool
        if pool is not None and pool.qsize() >= sandbox.pool_size:
            return
        time.sleep(0.02)
    raise TimeoutError("the kernel pool did not refill")


@dataclass
class SpawnedRuntime:
    """A runtime served by its own Python process."""

    process: subprocess.Popen
    base_url: str
    api_key: str  # the token it printed

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)

    def async_client(self, **kwargs: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)


@contextlib.contextmanager
def spawned_runtime(**settings: Any) -> Iterator[SpawnedRuntime]:
    """A runtime in a child process (as ``python -m tutor_nb serve`` runs), in a temp folder."""
    settings.setdefault("backend", "replay")
    settings.setdefault("cassettes", [str(CASSETTES)])
    settings.setdefault("port", 0)
    with tempfile.TemporaryDirectory(prefix="tnb-bench-") as folder:
        settings["data_dir"] = folder
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(settings)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            line = process.stdout.readline() if process.stdout else ""
            if "http://" not in line:
                raise RuntimeError(f"the runtime did not start (it printed {line!r})")
            key = line.partition("api_key=")[2].split()
            yield SpawnedRuntime(process, line[line.index("http://"):].split()[0], key[0] if key else "tutor-nb-local")
        finally:
            _stop_tree(process)


def _stop_tree(process: subprocess.Popen) -> None:
    """Stop the server gracefully, then whatever it started that outlived it (kernels)."""
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass


def _serve(settings_json: str) -> None:
    from tutor_nb.runtime.config import Settings
    from tutor_nb.runtime.server import serve

    settings = json.loads(settings_json)
    settings["data_dir"] = Path(settings["data_dir"])
    settings["cassettes"] = [Path(p) for p in settings.get("cassettes", [])]
    try:
        serve(Settings(**settings), announce=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        pass


def tutor(client: Any) -> Any:
    """The walkthrough's math tutor assistant."""
    return client.beta.assistants.create(
        name="Math Tutor", instructions=TUTOR_INSTRUCTIONS, model="gpt-4o", tools=[{"type": "code_interpreter"}]
    )


def recorded_code(prompt: str = FIB_PROMPT) -> str:
    """The code the recorded model writes for ``prompt`` (what the sandbox runs)."""
    from tutor_nb.runtime.backends import BUILTIN_CASSETTES, load_cassette

    for path in [*sorted(BUILTIN_CASSETTES.glob("*.json")), *sorted(CASSETTES.glob("*.json"))]:
        for turn in load_cassette(path):
            if turn.user == prompt and turn.tool_calls:
                return json.loads(turn.tool_calls[0][1])["code"]
    raise LookupError(f"no recorded code for {prompt!r}")


def counting_client(make: Callable[..., Any], **kwargs: Any) -> tuple[Any, list[str]]:
    """An SDK client from ``make`` (e.g. ``rt.client``) and the list of requests it sends."""
    import openai

    sent: list[str] = []
    http = openai.DefaultHttpxClient(event_hooks={"request": [lambda r: sent.append(f"{r.method} {r.url.path}")]})
    return make(http_client=http, **kwargs), sent


# -- the floor ---------------------------------------------------------------------------------


class RawKernel:
    """A bare ipykernel driven by jupyter_client alone: the floor one code execution cannot beat."""

    def __init__(self) -> None:
        from jupyter_client import KernelManager

        self._folder = tempfile.TemporaryDirectory(prefix="tnb-raw-")
        self.km = KernelManager(transport="ipc", connection_file=str(Path(self._folder.name) / "kernel.json"))
        self.km.start_kernel(cwd=self._folder.name, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code: str) -> str:
        """Run code, wait for the kernel to go idle, and return what it printed or evaluated."""
        out: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] == "execute_result":
                out.append(content["data"].get("text/plain", ""))

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=60, store_history=True)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"floor execution failed: {reply['content']}")
        return "".join(out)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        self._folder.cleanup()

    def __enter__(self) -> "RawKernel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BareServer:
    """The least an HTTP server can do: asyncio answering ``{}`` on 127.0.0.1, on its own thread."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def serve() -> None:
            self._server = await asyncio.start_server(answer, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"
            ready.set()

        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-bare-server", daemon=True)
        self._thread.start()
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(serve()))
        if not ready.wait(10):
            raise RuntimeError("the bare HTTP server did not start")

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> "BareServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Loopback:
    """Trivial HTTP round trips on one kept-alive connection: the floor of one API call."""

    def __init__(self, base_url: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        url = urlsplit(base_url)
        self.path = url.path or "/"
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def round_trip(self) -> None:
        self.conn.request("GET", self.path)
        response = self.conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"loopback request answered {response.status}")

    def close(self) -> None:
        self.conn.close()


# -- the report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures come from: they only compare with figures from the same machine and code."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--", "tutor_nb").splitlines(),
        "load_average_1m": _load_average(),
    }


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


#: the code as it was when this benchmark started (others may commit while it runs)
STARTED_ON = machine()


def report(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Print the result as JSON and append it, with the machine, to ``results/<name>.jsonl``."""
    record = {"bench": name, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {**STARTED_ON, "load_average_1m": _load_average()}, **result}
    print(json.dumps(record, ensure_ascii=False, indent=2))
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} --serve SETTINGS_JSON (benchmarks import this module)")
