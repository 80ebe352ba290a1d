"""The code interpreter sandbox with real Jupyter kernels: state, logs, images, files, timeout, cancel, pool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from tutor_nb.runtime.sandbox import Execution, Sandbox

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Running:
    """A Sandbox on its own event loop, driven synchronously by tests (no pytest-asyncio needed)."""

    def __init__(self, root: Path, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.sandbox = Sandbox(root, **options)
        self.run(self.sandbox.start())

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def execute(self, thread: str, code: str, **options: Any) -> Execution:
        return self.run(self.sandbox.execute(thread, code, **options))

    def kernel_pids(self) -> set[int]:
        return {k.pid for k in self.sandbox._all}

    def wait_for_pool(self, size: int = 1, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while self.sandbox._pool is None or self.sandbox._pool.qsize() < size:
            assert time.monotonic() < deadline, "the kernel pool did not fill"
            self.run(asyncio.sleep(0.05))

    def close(self) -> None:
        self.run(self.sandbox.close())
        self.loop.close()


@contextlib.contextmanager
def running_sandbox(root: Path, **options: Any) -> Iterator[Running]:
    running = Running(root, **options)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module", params=["fork", "cold"])
def kernel_start(request: pytest.FixtureRequest) -> dict[str, bool]:
    """Every sandbox test runs on kernels forked from the warm template and on kernels started cold."""
    return {"fork": request.param == "fork"}


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory, kernel_start: dict[str, bool]) -> Iterator[Running]:
    # the module's threads keep their kernels; room for all of them, so the pool always refills
    with running_sandbox(tmp_path_factory.mktemp("sandbox"), timeout=20, pool_size=2, max_kernels=32,
                         **kernel_start) as running:
        yield running


def test_state_carries_across_executions_with_stdout_and_last_value(sb: Running) -> None:
    first = sb.execute("state", "numbers = [0, 1]\nfor _ in range(18):\n    numbers.append(numbers[-1] + numbers[-2])\n"
                                "print('made', len(numbers))\nnumbers[-1]")
    assert first.status == "ok" and first.error is None
    assert first.logs == "made 20\n4181\n"
    second = sb.execute("state", "sum(numbers)")
    assert second.status == "ok"
    assert second.logs == f"{sum([0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181])}\n"


def test_stderr_and_display_text_reach_logs(sb: Running) -> None:
    result = sb.execute("streams", "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n"
                                   "from IPython.display import display\ndisplay('shown')")
    assert "to out" in result.logs and "to err" in result.logs and "'shown'" in result.logs


def test_traceback_in_logs_without_colors(sb: Running) -> None:
    result = sb.execute("errors", "x = 1\ndef f():\n    return x / 0\nf()")
    assert result.status == "error"
    assert result.error == "ZeroDivisionError: division by zero"
    assert "Traceback" in result.logs and "return x / 0" in result.logs
    assert "ZeroDivisionError: division by zero" in result.logs
    assert "\x1b" not in result.logs
    assert sb.execute("errors", "x + 1").logs == "2\n"  # an error does not cost the thread its state


def test_matplotlib_figure_becomes_png(sb: Running) -> None:
    result = sb.execute("plot", "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9, 16])\nplt.title('squares')\nplt.show()")
    assert result.status == "ok", result.logs
    assert len(result.images) == 1
    assert result.images[0].startswith(PNG_MAGIC) and len(result.images[0]) > 1000
    unshown = sb.execute("plot", "fig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5]);")
    assert len(unshown.images) == 1 and unshown.images[0].startswith(PNG_MAGIC)


def test_mnt_data_lands_in_the_working_folder(sb: Running) -> None:
    code = ("import csv, os\n"
            "with open('/mnt/data/out.csv', 'w', newline='') as f:\n"
            "    csv.writer(f).writerows([['n', 'square'], [3, 9]])\n"
            "print(open('/mnt/data/out.csv').read().strip())\n"
            "print(os.path.abspath('out.csv'))")
    result = sb.execute("mnt", code)
    workdir = sb.sandbox.workdir("mnt")
    assert result.status == "ok", result.logs
    assert (workdir / "out.csv").read_text().splitlines() == ["n,square", "3,9"]
    assert result.logs.splitlines() == ["n,square", "3,9", "/mnt/data/out.csv"]
    assert str(workdir) not in result.logs
    assert result.files == [workdir / "out.csv"]
    assert sb.execute("mnt", "open('/mnt/data/out.csv').readline()").logs == "'n,square\\n'\n"


def test_new_and_changed_files_reported_hidden_ones_not(sb: Running) -> None:
    workdir = sb.sandbox.workdir("files")
    (workdir / "old.txt").write_text("old")
    (workdir / "keep.txt").write_text("keep")
    result = sb.execute("files", "import os, time\ntime.sleep(0.01)\nopen('old.txt', 'a').write('+')\n"
                                 "os.makedirs('sub', exist_ok=True)\nopen('sub/new.txt', 'w').write('n')\n"
                                 "open('.hidden', 'w').write('h')\nopen('scratch.tmp', 'w').write('t')")
    assert result.status == "ok", result.logs
    assert sorted(result.files) == sorted([workdir / "old.txt", workdir / "sub" / "new.txt"])
    assert all(p.is_absolute() for p in result.files)
    assert sb.execute("files", "1").files == []


def test_threads_are_separate(sb: Running) -> None:
    sb.execute("alpha", "secret = 'alpha only'")
    result = sb.execute("beta", "import os\nprint(os.getcwd())\nsecret")
    assert result.status == "error" and result.error.startswith("NameError")
    assert result.logs.startswith("/mnt/data\n")
    assert sb.execute("alpha", "import os\nos.getcwd() == %r" % str(sb.sandbox.workdir("alpha"))).logs == "True\n"


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", ".kernels", "x" * 200, "tab\t"])
def test_thread_ids_cannot_escape_the_root(sb: Running, bad: str) -> None:
    with pytest.raises(ValueError):
        sb.sandbox.workdir(bad)


def test_timeout_interrupts_and_the_thread_goes_on(sb: Running) -> None:
    sb.execute("loop", "kept = 'still here'")
    started = time.monotonic()
    result = sb.execute("loop", "while True:\n    pass", timeout=1.5)
    assert time.monotonic() - started < 10
    assert result.status == "timeout"
    assert result.error == "timed out after 1.5 s"
    assert "KeyboardInterrupt" in result.logs and "timed out after 1.5 s" in result.logs
    assert sb.execute("loop", "kept").logs == "'still here'\n"


def test_cancel_interrupts_the_kernel_and_reraises(sb: Running) -> None:
    sb.execute("cancel", "kept = 7")

    async def cancel_midway() -> float:
        task = asyncio.ensure_future(sb.sandbox.execute("cancel", "import time\nprint('begun', flush=True)\ntime.sleep(60)"))
        await asyncio.sleep(1.0)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert sb.run(cancel_midway()) < 5
    started = time.monotonic()
    after = sb.execute("cancel", "kept * 6")
    assert after.logs == "42\n" and time.monotonic() - started < 2  # the kernel is not left busy


def test_interrupt_stops_the_running_execution(sb: Running) -> None:
    sb.execute("stop", "i = 0")

    async def interrupt_midway() -> Execution:
        task = asyncio.ensure_future(sb.sandbox.execute("stop", "import time\nfor i in range(600):\n    time.sleep(0.1)"))
        await asyncio.sleep(1.0)
        await sb.sandbox.interrupt("stop")
        assert task.done()
        return await task

    result = sb.run(interrupt_midway())
    assert result.status == "interrupted" and "Execution was interrupted; variables are kept." in result.logs
    assert sb.execute("stop", "i > 0").logs == "True\n"


def test_interrupt_before_the_kernel_is_ready_skips_the_code(tmp_path: Path, kernel_start: dict[str, bool]) -> None:
    async def interrupt_at_once(sb: Running) -> Execution:
        task = asyncio.ensure_future(sb.sandbox.execute("early", "ran = True"))
        await asyncio.sleep(0)  # the execution holds the thread now and waits for a kernel (no pool)
        await sb.sandbox.interrupt("early")
        assert task.done()
        return await task

    with running_sandbox(tmp_path, pool_size=0, **kernel_start) as sb:
        result = sb.run(interrupt_at_once(sb))
        assert result.status == "interrupted"
        assert sb.execute("early", "'ran' in dir()").logs == "False\n"


def test_pool_hands_a_prestarted_kernel_to_a_new_thread_and_refills(sb: Running) -> None:
    sb.wait_for_pool()
    pooled = sb.sandbox._pool._queue[0]  # type: ignore[union-attr]
    started = time.monotonic()
    result = sb.execute("pooled", "'warm'")
    took = time.monotonic() - started
    assert result.logs == "'warm'\n"
    assert sb.sandbox._kernels["pooled"] is pooled
    assert took < 1.0, f"a pooled kernel should answer at once, took {took:.2f} s"
    sb.wait_for_pool()  # refilled in the background
    assert sb.sandbox._pool._queue[0] is not pooled  # type: ignore[union-attr]


def test_discard_shuts_the_kernel_down(sb: Running) -> None:
    sb.execute("gone", "value = 5")
    pid = sb.sandbox._kernels["gone"].pid
    sb.run(sb.sandbox.discard("gone"))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    result = sb.execute("gone", "value")
    assert result.status == "error" and result.error.startswith("NameError")


def test_discard_during_an_execution_ends_it(sb: Running) -> None:
    sb.execute("busy", "1")

    async def discard_midway() -> tuple[Execution, float]:
        task = asyncio.ensure_future(sb.sandbox.execute("busy", "import time\ntime.sleep(30)"))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await sb.sandbox.discard("busy")
        return await task, time.monotonic() - started

    result, took = sb.run(discard_midway())
    assert took < 5
    assert (result.status, result.error) == ("died", "kernel was shut down because the thread was deleted; variables were lost")


@pytest.mark.slow
def test_pool_tops_up_once_executions_quiet_down_while_it_still_has_kernels(tmp_path: Path,
                                                                           kernel_start: dict[str, bool]) -> None:
    with running_sandbox(tmp_path, pool_size=2, **kernel_start) as running:
        running.wait_for_pool(2)
        busy = running.loop.create_task(running.sandbox.execute("class", "import time\ntime.sleep(2.5)\n'done'"))
        running.run(asyncio.sleep(1.5))
        assert running.sandbox._pool.qsize() == 1 and len(running.kernel_pids()) == 3 - 1  # no start mid-execution
        assert running.run(busy).logs == "'done'\n"
        running.wait_for_pool(2)  # topped up after the quiet period
        assert len(running.kernel_pids()) == 3


def test_the_last_warm_kernel_is_replaced_once_the_code_that_took_it_is_done(tmp_path: Path) -> None:
    """A top-up would take CPU from the code that just took the pool's last kernel (a new container's first
    turn); it waits for that code, yet a thread that asks meanwhile has a kernel started for it at once."""
    with running_sandbox(tmp_path, pool_size=1) as running:
        running.wait_for_pool(1)
        busy = running.loop.create_task(running.sandbox.execute("first", "import time\ntime.sleep(0.8)\n'done'"))
        running.run(asyncio.sleep(0.4))
        assert len(running.sandbox._all) == 1, "a kernel was started while the first thread's code ran"
        started = time.monotonic()
        assert running.execute("second", "'also'").logs == "'also'\n"  # not kept waiting for the first's code
        assert time.monotonic() - started < 0.8 and not busy.done()
        assert running.run(busy).logs == "'done'\n"
        running.wait_for_pool(1)  # and the pool is full again afterwards


@pytest.mark.slow
def test_idle_kernels_shut_down_and_close_leaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        kernel_start: dict[str, bool]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-the-kernel")
    with running_sandbox(tmp_path, idle_timeout=1.0, pool_size=0, **kernel_start) as running:
        assert running.execute("idle", "import os\nos.environ.get('OPENAI_API_KEY')").logs == ""  # None shows nothing
        first = running.kernel_pids()
        running.execute("idle", "x = 1")
        running.run(asyncio.sleep(2.5))
        assert running.kernel_pids() == set()
        again = running.execute("idle", "x")
        assert again.status == "error" and "shut down after 1 s without use" in again.logs
        pids = running.kernel_pids() | first
        assert pids
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert [p.name for p in (tmp_path / ".kernels").iterdir()] == ["kernelspecs"]


def test_an_adaptive_pool_grows_while_threads_wait_then_lets_surplus_go(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tutor_nb.runtime.sandbox import pool

    monkeypatch.setattr(pool, "SURPLUS_AFTER", 0.5)
    with running_sandbox(tmp_path, idle_timeout=0.4) as running:  # no pool_size: the pool adapts
        assert running.sandbox.pool_size == 1
        running.wait_for_pool(1)

        async def class_arrives() -> list[Execution]:
            return await asyncio.gather(*(running.sandbox.execute(f"learner{i}", f"{i} * 2") for i in range(6)))

        results = running.run(class_arrives())
        assert [r.logs for r in results] == [f"{i * 2}\n" for i in range(6)]
        assert running.sandbox.pool_size == 3  # half of the six threads that asked within the last minute
        running.wait_for_pool(3)  # topped up once the executions quieted down
        monkeypatch.setattr(pool, "DEMAND_WINDOW", 0.0)  # the demand is now long past
        assert running.sandbox.pool_size == 1
        deadline = time.monotonic() + 30
        while running.sandbox._pool.qsize() > 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "surplus warm kernels were not stopped"
            running.run(asyncio.sleep(0.1))
        assert len(running.sandbox._all) == 1 + len(running.sandbox._kernels)


def test_an_adaptive_pool_does_not_top_up_beyond_free_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tutor_nb.runtime.sandbox import pool

    real = psutil.virtual_memory()
    monkeypatch.setattr(pool.psutil, "virtual_memory", lambda: real._replace(available=int(real.total * 0.1)))
    with running_sandbox(tmp_path) as running:
        assert running.execute("t", "'a thread still gets its kernel'").logs == "'a thread still gets its kernel'\n"
        running.run(asyncio.sleep(2.0))
        assert running.sandbox._pool.qsize() == 0  # type: ignore[union-attr]
        assert len(running.sandbox._all) == 1
