"""Benchmark: the Responses API, against the run_overhead floor and beside a peer server (Llama Stack).

Two measurements, each against a floor taken in the same run:

- ``code_interpreter``: ``responses.create`` with the code interpreter on ``replay`` (the walkthrough's
  question; the recorded model writes the Fibonacci code, the sandbox runs it, the answer quotes it),
  against an in-process runtime, as ``run_overhead.py`` measures a run. Each iteration is followed by the
  same floor: the code executed by a bare ipykernel through jupyter_client, plus as many trivial
  keep-alive HTTP round trips as the turn made. Two shapes: ``new_container`` (an ``auto`` container per
  turn, its kernel from the pre-started pool; the container is deleted after) and ``chained`` (the next
  turn with ``previous_response_id``, in the container the chain already has). Target: at most 3x.
- ``hello``: a plain ``responses.create(input="hello")`` with no tools, through tutor_nb's ``chat``
  backend and through Llama Stack's builtin Responses provider over ``remote::openai``, both in front of
  the same stand-in model server (``tests/fakemodel.py``, streaming), each server in its own process. The
  floor is the streamed Chat Completions call made straight to that model server. What each adds is its
  median minus the floor's median. Target: tutor_nb adds at most half what Llama Stack adds.

All requests are interleaved (floor, tutor_nb, peer, floor, ...), so the figures share the machine's
mood. Clients set TCP_NODELAY, so no client-side Nagle delay is counted against a server.

Llama Stack is not installed by this script: bench/README.md says how to make its venv (``bench/.llama-stack``
or ``TUTOR_NB_BENCH_PEER``); without it the peer is skipped and the JSON says why.

    python bench/responses.py [--iterations 50] [--warmup 5] [--hello-iterations 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import common

TARGET_RATIO = 3.0
TARGET_SHARE = 0.5  # tutor_nb's added latency / the peer's
PEER_VERSION = "0.7.3"
PEER_VENV = Path(os.environ.get("TUTOR_NB_BENCH_PEER") or common.HERE / ".llama-stack")
# how the results (committed) name the peer's venv: never by a machine's folder
PEER_NAMED = "$TUTOR_NB_BENCH_PEER" if os.environ.get("TUTOR_NB_BENCH_PEER") else "bench/.llama-stack"
CODE_TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}
HELLO_REPLY = "Hello! How can I help you today?"
MODEL = "fake-tutor"


def nodelay_client(base_url: str, api_key: str = "tutor-nb-local") -> Any:
    """An ``openai.OpenAI`` client whose connections send at once (TCP_NODELAY), no retries."""
    import openai

    try:
        import httpx2 as httpx  # what newer openai SDKs are built on
    except ImportError:
        import httpx
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                         http_client=openai.DefaultHttpxClient(transport=transport))


# -- code_interpreter on replay, against the run_overhead floor ---------------------------------------


def code_turn(client: Any, previous: str | None) -> Any:
    response = client.responses.create(model="gpt-4o", instructions=common.TUTOR_INSTRUCTIONS, input=common.FIB_PROMPT,
                                       tools=[CODE_TOOL], include=["code_interpreter_call.outputs"],
                                       previous_response_id=previous)
    calls = [item for item in response.output if item.type == "code_interpreter_call"]
    logs = "".join(o.logs for c in calls for o in c.outputs or [] if o.type == "logs")
    if response.status != "completed" or "4181" not in logs or "4181" not in response.output_text:
        raise RuntimeError(f"the Responses turn went wrong: {response.status} {response.error} logs {logs!r}")
    return response


def measure_code(rt: Any, shape: str, iterations: int, warmup: int, raw: common.RawKernel,
                 bare: common.BareServer, code: str) -> dict[str, Any]:
    client, sent = common.counting_client(rt.client, max_retries=0)
    loop = common.Loopback(bare.url)
    previous = code_turn(client, None).id if shape == "chained" else None
    rows: list[dict[str, float]] = []
    try:
        for i in range(warmup + iterations):
            if shape == "new_container":
                common.wait_for_pool(rt)
            sent.clear()
            begin = time.perf_counter()
            response = code_turn(client, previous)
            total = time.perf_counter() - begin
            requests = len(sent)
            if shape == "chained":
                previous = response.id
            else:
                client.containers.delete(response.output[0].container_id)  # its kernel stops too

            begin = time.perf_counter()
            if "4181" not in raw.execute(code):
                raise RuntimeError("the floor's execution printed the wrong thing")
            kernel_floor = time.perf_counter() - begin
            begin = time.perf_counter()
            for _ in range(requests):
                loop.round_trip()
            http_floor = time.perf_counter() - begin
            if i >= warmup:
                rows.append({"total": total, "floor": kernel_floor + http_floor, "floor_kernel": kernel_floor,
                             "floor_http": http_floor, "requests": requests})
    finally:
        loop.close()
        client.close()
    total, floor = common.summary([r["total"] for r in rows]), common.summary([r["floor"] for r in rows])
    ratio = total["median_ms"] / floor["median_ms"]
    return {"shape": shape, "requests_per_turn": rows[0]["requests"], "total": total, "floor": floor,
            "floor_split_median_ms": {k: common.summary([r[f"floor_{k}"] for r in rows])["median_ms"]
                                      for k in ("kernel", "http")},
            "ratio_median": round(ratio, 2), "ratio_p95": round(total["p95_ms"] / floor["p95_ms"], 2),
            "target_ratio": TARGET_RATIO, "target_met": ratio <= TARGET_RATIO}


# -- hello, beside Llama Stack -----------------------------------------------------------------------


@contextlib.contextmanager
def process_printing_url(command: list[str], **popen: Any) -> Iterator[tuple[subprocess.Popen, str]]:
    """A child process that prints its base URL as its first line; stopped (and its children) after."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, **popen)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "http://" not in line:
            raise RuntimeError(f"{command[1]} did not start (it printed {line!r})")
        yield process, line[line.index("http://"):].split()[0]
    finally:
        common._stop_tree(process)


def peer_missing() -> str | None:
    """Why Llama Stack cannot be measured here (None when it can)."""
    python = PEER_VENV / "bin" / "python"
    if not (PEER_VENV / "bin" / "llama").exists() or not python.exists():
        return (f"no Llama Stack venv at {PEER_NAMED} (set TUTOR_NB_BENCH_PEER, or make it as bench/README.md "
                "says); the peer was not measured")
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('llama-stack'))"],
                          capture_output=True, text=True, timeout=60)
    if done.stdout.strip() != PEER_VERSION:
        return (f"the venv at {PEER_NAMED} has llama-stack {done.stdout.strip() or 'missing'}, not {PEER_VERSION} "
                "(bench/README.md says how to make it); the peer was not measured")
    return None


def peer_config(model_base_url: str, folder: Path) -> str:
    """Llama Stack's run config: inference over remote::openai, its builtin Responses provider, SQLite stores."""
    sqlite = {"kv_default": {"type": "kv_sqlite", "db_path": str(folder / "kvstore.db")},
              "sql_default": {"type": "sql_sqlite", "db_path": str(folder / "sql_store.db")}}
    config = {
        "version": 2, "distro_name": "tutor-nb-bench-peer",
        "apis": ["inference", "responses", "files", "tool_runtime", "vector_io"],
        "providers": {
            "inference": [{"provider_id": "openai", "provider_type": "remote::openai",
                           "config": {"api_key": "fake", "base_url": model_base_url}}],
            "files": [{"provider_id": "builtin-files", "provider_type": "inline::localfs",
                       "config": {"storage_dir": str(folder / "files"),
                                  "metadata_store": {"table_name": "files_metadata", "backend": "sql_default"}}}],
            "tool_runtime": [], "vector_io": [],
            "responses": [{"provider_id": "builtin", "provider_type": "inline::builtin", "config": {"persistence": {
                "agent_state": {"namespace": "agents", "backend": "kv_default"},
                "responses": {"table_name": "responses", "backend": "sql_default"}}}}],
        },
        "storage": {"backends": sqlite, "stores": {
            "metadata": {"namespace": "registry", "backend": "kv_default"},
            "inference": {"table_name": "inference_store", "backend": "sql_default"},
            "conversations": {"table_name": "openai_conversations", "backend": "sql_default"},
            "prompts": {"namespace": "prompts", "backend": "kv_default"},
            "connectors": {"namespace": "connectors", "backend": "kv_default"}}},
        "registered_resources": {"models": []},
    }
    path = folder / "config.yaml"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    return str(path)


@contextlib.contextmanager
def llama_stack(model_base_url: str) -> Iterator[str]:
    """Llama Stack serving on a free port (its base URL), logs to a temp file, stopped after."""
    with tempfile.TemporaryDirectory(prefix="tnb-bench-peer-") as folder:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(Path(folder) / "llama-stack.log", "w", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLAMA_STACK_"))}
        env.update(SQLITE_STORE_DIR=folder, HOME=folder)
        process = subprocess.Popen([str(PEER_VENV / "bin" / "llama"), "stack", "run",
                                    peer_config(model_base_url, Path(folder)), "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            client = nodelay_client(base_url)
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"Llama Stack exited ({process.returncode}): "
                                       f"{(Path(folder) / 'llama-stack.log').read_text()[-2000:]}")
                try:
                    if any(m.id.endswith(MODEL) for m in client.models.list()):
                        break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("Llama Stack did not serve its models within 180 s: "
                                       f"{(Path(folder) / 'llama-stack.log').read_text()[-2000:]}")
                time.sleep(0.5)
            client.close()
            yield base_url
        finally:
            common._stop_tree(process)
            log.close()


def hello(client: Any, model: str) -> None:
    response = client.responses.create(model=model, input="hello")
    if response.status != "completed" or response.output_text != HELLO_REPLY:
        raise RuntimeError(f"hello went wrong: {response.status} {response.output_text!r}")


def model_call(client: Any) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}],
                                            stream=True, stream_options={"include_usage": True})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    if text != HELLO_REPLY:
        raise RuntimeError(f"the model server answered {text!r}")


def measure_hello(iterations: int, warmup: int) -> dict[str, Any]:
    missing = peer_missing()
    serve_model = [sys.executable, str(Path(__file__).resolve()), "--serve-model"]
    with process_printing_url(serve_model, cwd=common.ROOT) as (_, model_url), \
            common.spawned_runtime(backend="chat", model_base_url=model_url, model_api_key="fake",
                                   pool_size=0) as rt, \
            (contextlib.nullcontext(None) if missing else llama_stack(model_url)) as peer_url:
        targets = {"model_call": (nodelay_client(model_url), None), "tutor_nb": (nodelay_client(rt.base_url, rt.api_key), MODEL)}
        if peer_url:
            targets["llama_stack"] = (nodelay_client(peer_url), f"openai/{MODEL}")
        times: dict[str, list[float]] = {name: [] for name in targets}
        for i in range(warmup + iterations):
            for name, (client, model) in targets.items():
                begin = time.perf_counter()
                model_call(client) if model is None else hello(client, model)
                if i >= warmup:
                    times[name].append(time.perf_counter() - begin)
    result: dict[str, Any] = {name: common.summary(values) for name, values in times.items()}
    floor = result["model_call"]["median_ms"]
    added = {name: round(result[name]["median_ms"] - floor, 2) for name in times if name != "model_call"}
    result["added_median_ms"] = added
    # the same, iteration by iteration (each server against the floor measured next to it): steadier on a busy machine
    result["added_paired_median_ms"] = {
        name: round(statistics.median(t - f for t, f in zip(times[name], times["model_call"])) * 1e3, 2)
        for name in added}
    if missing:
        result["llama_stack"] = {"skipped": missing}
        result["target_met"] = None
    else:
        share = added["tutor_nb"] / added["llama_stack"] if added["llama_stack"] > 0 else float("inf")
        result.update(added_share=round(share, 2), target_share=TARGET_SHARE, target_met=share <= TARGET_SHARE,
                      peer=f"llama-stack {PEER_VERSION}, builtin Responses provider over remote::openai")
    return result


def serve_model() -> None:
    """The stand-in model server (tests/fakemodel.py) answering every chat with HELLO_REPLY, in the foreground."""
    sys.path.insert(0, str(common.ROOT / "tests"))
    from fakemodel import FakeModel

    def script(request: dict[str, Any]) -> dict[str, Any]:
        return {"content": HELLO_REPLY, "tool_calls": [], "usage": {"prompt_tokens": 8, "completion_tokens": 9}}

    with FakeModel(script, models=[MODEL]) as fake:
        print(fake.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--hello-iterations", type=int, default=100)
    args = parser.parse_args()
    code = common.recorded_code()
    with common.RawKernel() as raw, common.BareServer() as bare, common.runtime(pool_size=1) as rt:
        raw.execute(code)
        shapes = [measure_code(rt, shape, args.iterations, args.warmup, raw, bare, code)
                  for shape in ("new_container", "chained")]
    greeting = measure_hello(args.hello_iterations, args.warmup)
    common.report("responses", {
        "iterations": args.iterations, "warmup": args.warmup, "code_interpreter": shapes, "hello": greeting,
        "target_met": all(s["target_met"] for s in shapes) and greeting["target_met"] is not False,
    })


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-model"]:
        serve_model()
    else:
        main()
