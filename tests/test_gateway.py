"""Kernels on a real Jupyter Kernel Gateway, started here on 127.0.0.1: the walkthrough, state, interrupts, files.

The gateway (``jupyter-kernel-gateway``, the same REST and WebSocket protocol as Enterprise Gateway) runs in
its own process and folder with a token; the runtime reaches it only over HTTP, so every file goes in and
out through the kernel.
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import pytest

from conftest import FIB_NUMBERS, FIB_PROMPT, TUTOR_INSTRUCTIONS, data_path
from test_runtime import ask, steps_of

pytestmark = pytest.mark.slow
TOKEN = "gateway-test-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("kernel_gateway", reason="pip install jupyter-kernel-gateway (in requirements-test.txt)")
    folder = tmp_path_factory.mktemp("gateway")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUTOR_NB_", "OPENAI_"))}
    env["KG_AUTH_TOKEN"] = TOKEN  # the gateway's token, by environment (not on a command line)
    env["KG_LIST_KERNELS"] = "True"  # so the tests can see which kernels it runs
    with open(folder / "gateway.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
                                 f"--KernelGatewayApp.port={port}", "--KernelGatewayApp.port_retries=0"],
                                cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/kernelspecs", headers={"Authorization": f"token {TOKEN}"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (folder / "gateway.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass


@pytest.fixture(scope="module")
def gateway_kernels(gateway: str) -> list[str]:
    """The ids of the kernels the gateway runs now (a function: call it)."""
    def running() -> list[str]:
        answer = httpx.get(f"{gateway}/api/kernels", headers={"Authorization": f"token {TOKEN}"})
        return [k["id"] for k in answer.json()]
    return running  # type: ignore[return-value]


@pytest.fixture(scope="module")
def runtime(gateway: str, tmp_path_factory: pytest.TempPathFactory):
    from tutor_nb.runtime import start

    rt = start(backend="replay", data_dir=tmp_path_factory.mktemp("runtime"), exec_timeout=30,
               cassettes=[data_path("cassettes")], gateway_url=gateway, gateway_token=TOKEN, pool_size=0)
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def client(runtime):
    return runtime.client(max_retries=0)


@pytest.fixture(scope="module")
def tutor(client):
    return client.beta.assistants.create(instructions=TUTOR_INSTRUCTIONS, model="gpt-4o",
                                         tools=[{"type": "code_interpreter"}])


def test_the_walkthrough_runs_on_a_gateway_kernel(client, tutor, runtime, gateway_kernels) -> None:
    before = set(gateway_kernels())
    thread, run = ask(client, tutor, FIB_PROMPT)
    assert run.status == "completed", run.last_error
    logs = steps_of(client, thread, run)[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert ast.literal_eval(logs) == FIB_NUMBERS
    assert "4181" in client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert len(set(gateway_kernels()) - before) == 1  # the thread's kernel is the gateway's
    assert "start=gateway" in repr(runtime._server.app.state.runtime.sandbox)


def test_state_carries_across_runs(client, tutor) -> None:
    thread, first = ask(client, tutor, "Set x to 21 and show it")
    assert first.status == "completed", first.last_error
    _, second = ask(client, tutor, "Double x", thread=thread)
    logs = steps_of(client, thread, second)[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert logs.strip() == "42"


def test_cancel_interrupts_a_loop_and_the_thread_goes_on(client, tutor) -> None:
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Sleep for a while")
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=tutor.id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the code is running
        steps = steps_of(client, thread, run)
        if steps and steps[0].step_details.tool_calls:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    started = time.monotonic()
    client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    final = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert final.status == "cancelled" and time.monotonic() - started < 10
    _, again = ask(client, tutor, "Set x to 21 and show it", thread=thread)
    assert again.status == "completed", again.last_error


def test_a_file_goes_in_and_another_comes_back(client, tutor) -> None:
    uploaded = client.files.create(file=("numbers.csv", b"number\n1\n2\n39\n"), purpose="assistants")
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="Sum the numbers column of the attached file",
        attachments=[{"file_id": uploaded.id, "tools": [{"type": "code_interpreter"}]}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id)
    assert run.status == "completed", run.last_error
    logs = steps_of(client, thread, run)[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert logs.strip() == "42"  # read on the gateway's side, where it was staged through the kernel
    _, made = ask(client, tutor, "Save the squares to a CSV", thread=thread)
    assert made.status == "completed", made.last_error
    text = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text
    paths = [a for a in text.annotations if a.type == "file_path"]
    assert paths and paths[0].text == "sandbox:/mnt/data/squares.csv"
    content = client.files.content(paths[0].file_path.file_id).read().decode()
    assert content.splitlines()[:2] == ["n,square", "1,1"]


def test_a_plot_comes_back_as_an_image(client, tutor) -> None:
    thread, run = ask(client, tutor, "Plot y = x squared")
    assert run.status == "completed", run.last_error
    outputs = steps_of(client, thread, run)[0].step_details.tool_calls[0].code_interpreter.outputs
    images = [o for o in outputs if o.type == "image"]
    assert images and client.files.content(images[0].image.file_id).read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deleting_the_thread_shuts_its_gateway_kernel_down(client, tutor, runtime, gateway_kernels) -> None:
    thread, run = ask(client, tutor, "Set x to 21 and show it")
    assert run.status == "completed"
    kernel_id = runtime._server.app.state.runtime.sandbox.pool.assigned[thread.id].km.kernel_id
    assert kernel_id in gateway_kernels()
    client.beta.threads.delete(thread.id)
    deadline = time.monotonic() + 20
    while kernel_id in gateway_kernels():
        assert time.monotonic() < deadline, "the gateway kernel outlived its thread"
        time.sleep(0.2)


def test_a_wrong_token_is_refused_with_what_to_do(gateway: str, tmp_path: Path) -> None:
    import asyncio

    from tutor_nb.errors import SandboxError
    from tutor_nb.runtime.sandbox import Sandbox

    sandbox = Sandbox(tmp_path, gateway_url=gateway, gateway_token="wrong")
    with pytest.raises(SandboxError, match="refused the token.*--gateway-token-file"):
        asyncio.run(sandbox.start())


def test_the_gateway_kernel_gets_the_memory_limit_and_none_of_the_servers_environment(
        gateway: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from tutor_nb.runtime.sandbox import Sandbox

    monkeypatch.setenv("TUTOR_NB_SERVER_ONLY", "not for the kernel")  # set after the gateway started
    sandbox = Sandbox(tmp_path, gateway_url=gateway, gateway_token=TOKEN, memory_limit_mb=1536, pool_size=0)

    async def probe() -> str:
        try:
            result = await sandbox.execute("env", "import os\nprint(os.environ.get('KERNEL_MEMORY_LIMIT'), "
                                                  "'TUTOR_NB_SERVER_ONLY' in os.environ)")
            return result.logs
        finally:
            await sandbox.close()

    assert asyncio.run(probe()) == "1536Mi False\n"
