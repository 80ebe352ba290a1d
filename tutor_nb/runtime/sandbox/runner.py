"""The code interpreter: one Jupyter kernel per thread, so state carries across runs as it did at OpenAI.

A bad execution costs only that execution: timeouts interrupt (and, if ignored, restart) the kernel,
limits from ``limits``/``kernel_boot`` bound memory, processes, files and output, and every outcome
comes back as an ``Execution`` whose ``logs`` say in words what happened. This module follows one
execution to its end and says how it ended; ``pool`` owns the kernels, ``kernel`` one kernel's life,
``capture`` the output.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import signal
from pathlib import Path
from typing import Callable

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import limits

from .capture import Capture, Execution, Status
from .gateway import GatewayLauncher
from .kernel import POLL, REAP_CODE, Kernel, KernelLauncher
from .pool import KernelPool

log = logging.getLogger(__name__)

THREAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
MNT_DATA = re.compile(r"/mnt/data(?![\w.-])")
GRACE = 3.0  # seconds an interrupted kernel gets to stop before it is restarted
CHECK_EVERY = 0.5  # seconds between memory/process/disk checks during an execution


class Sandbox:
    """Jupyter kernels for threads, under a root folder holding one working folder per thread."""

    def __init__(self, root: Path, *, timeout: float = 60.0, idle_timeout: float = 900.0, pool_size: int | None = None,
                 memory_limit_mb: int | None = 2048, max_log_chars: int = 100_000, max_file_mb: int = 200,
                 max_workdir_mb: int = 1024, max_processes: int = 64, fork: bool = True,
                 gateway_url: str | None = None, gateway_token: str | None = None,
                 gateway_kernel: str = "python3", max_kernels: int | None = None,
                 kernels_per_learner: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.max_log_chars = max_log_chars
        self.max_file_mb = max_file_mb
        self.max_workdir_mb = max_workdir_mb
        self.max_processes = max_processes
        self.launcher: KernelLauncher | GatewayLauncher
        if gateway_url:  # every kernel on a Jupyter Kernel Gateway or Enterprise Gateway
            self.launcher = GatewayLauncher(self.root, gateway_url, token=gateway_token, kernel_name=gateway_kernel,
                                            max_log_chars=max_log_chars, memory_limit_mb=memory_limit_mb)
        else:
            self.launcher = KernelLauncher(self.root, memory_limit_mb=memory_limit_mb, max_file_mb=max_file_mb,
                                           max_processes=max_processes, max_log_chars=max_log_chars, fork=fork)
        self.pool = KernelPool(self.launcher, pool_size=pool_size, idle_timeout=idle_timeout,
                               max_kernels=max_kernels or limits.default_max_kernels(memory_limit_mb),
                               kernels_per_learner=kernels_per_learner)
        self._interrupts: set[str] = set()  # threads whose current execution must stop
        self._started = False

    @property
    def pool_size(self) -> int:
        """Warm kernels the pool keeps now (fixed when given, else from recent demand)."""
        return self.pool.pool_size

    @property
    def bwrap(self) -> str | None:
        """bubblewrap's path when kernels run under it (known once started)."""
        return self.launcher.bwrap

    @property
    def cgroups(self) -> bool:
        """Whether each kernel gets its own cgroup (known once started)."""
        return self.launcher.cgroups

    @property
    def users(self) -> limits.KernelUsers | None:
        """The kernels' own users, when the server runs as root and they work here (known once started)."""
        return self.launcher.users

    @property
    def isolation_problem(self) -> str | None:
        """Why kernels of a root server could not get users of their own (known once started)."""
        return self.launcher.isolation_problem

    @property
    def max_kernels(self) -> int:
        return self.pool.max_kernels

    # the pool's state under the names tests and benchmarks look at
    @property
    def _kernels(self) -> dict[str, Kernel]:
        return self.pool.assigned

    @property
    def _all(self) -> set[Kernel]:
        return self.pool.alive

    @property
    def _pool(self) -> asyncio.Queue[Kernel] | None:
        return self.pool.warm

    def __repr__(self) -> str:
        isolation = ", ".join(filter(None, ["bubblewrap" if self.bwrap else "", "cgroup" if self.cgroups else "",
                                            "a user per kernel" if self.users else ""]))
        cold = self.launcher.cold_reason
        start = f"gateway {self.launcher.url}" if isinstance(self.launcher, GatewayLauncher) else \
            ("cold: " + cold if cold else "fork")
        return (f"Sandbox(root={str(self.root)!r}, kernels={len(self.pool.assigned)}, "
                f"isolation={isolation or 'rlimits only'}, start={start})")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare folders and the kernelspec, then fill the pool in the background."""
        if self._started:
            return
        self._started = True
        await self.launcher.prepare()
        self.pool.start()

    def workdir(self, thread_id: str) -> Path:
        """The thread's working folder (the kernel's cwd, what code sees as /mnt/data)."""
        if not isinstance(thread_id, str) or not THREAD_ID.fullmatch(thread_id):
            raise ValueError(f"invalid thread id {thread_id!r}: use letters, digits, '_' and '-' only")
        folder = self.root / thread_id
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    async def discard(self, thread_id: str) -> None:
        """Shut the thread's kernel down (the thread was deleted); its folder is left to the caller."""
        await self.pool.discard(thread_id)

    async def close(self) -> None:
        """Shut every kernel down, pooled ones included."""
        await self.pool.close()

    async def interrupt(self, thread_id: str) -> None:
        """Stop what runs now in the thread (even if its kernel is still starting); returns once it ended."""
        lock = self.pool.locks.get(thread_id)
        if lock is None or not lock.locked():
            return
        self._interrupts.add(thread_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRACE + 10
        while thread_id in self._interrupts and loop.time() < deadline:
            await asyncio.sleep(0.05)

    # -- executing ---------------------------------------------------------------------------

    async def execute(self, thread_id: str, code: str, *, timeout: float | None = None,
                      on_output: Callable[[str], None] | None = None) -> Execution:
        """Run code in the thread's kernel and report what it printed, drew, wrote and how it ended.

        ``on_output`` hears the logs so far (whole lines) while the code runs, at most every
        ``LIVE_INTERVAL`` seconds, and once more if the execution is cancelled.
        """
        workdir = self.workdir(thread_id)
        limit = self.timeout if timeout is None else timeout
        lock = self.pool.lock(thread_id)
        async with lock:
            try:
                return await self._execute(thread_id, workdir, code, limit, on_output)
            finally:
                self._interrupts.discard(thread_id)

    async def _execute(self, thread_id: str, workdir: Path, code: str, limit: float,
                       on_output: Callable[[str], None] | None = None) -> Execution:
        await self.start()
        kernel = await self.pool.kernel_for(thread_id, workdir)
        if kernel.uid is not None:  # files the server put there since (attachments) become the kernel's too
            await asyncio.to_thread(limits.hand_over, workdir, kernel.uid)
        lost = self.pool.lost.pop(thread_id, None)
        await kernel.stage_in(workdir)  # a kernel on a gateway gets the thread's files through itself
        evicted = thread_id in self.pool.evicted
        self.pool.evicted.discard(thread_id)
        before = limits.snapshot(workdir)
        out = Capture(self.max_log_chars)
        folder = Path(kernel.code_folder(workdir))  # what /mnt/data is for the kernel
        code = MNT_DATA.sub(lambda _: str(folder), code)
        watcher = asyncio.create_task(_watch(out, folder, on_output)) if on_output else None
        try:
            ending = await self._run(kernel, code, out, limit)
        except asyncio.CancelledError:
            if on_output is not None:  # a stopped step keeps what it printed
                _tell(on_output, out.live(folder))
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        status, error = await self._conclude(kernel, ending, out, limit)
        if kernel in self.pool.alive:
            await kernel.stage_out(workdir)
        after = limits.snapshot(workdir)
        status, error = self._enforce_workdir_cap(before, after, workdir, out, status, error)
        if lost and (out.ename == "NameError" or evicted):
            out.notes.append(f"Variables from before are gone: the kernel {lost}.")
        files = limits.changed_files(before, limits.snapshot(workdir), workdir)
        return Execution(logs=out.logs(folder), images=out.images, files=files, status=status, error=error)

    async def _run(self, kernel: Kernel, code: str, out: Capture, limit: float) -> str:
        """Send the code and follow it to its end: 'idle', 'restarted' or 'died'."""
        loop = asyncio.get_running_loop()
        kernel.busy, kernel.stop_reason = True, None
        try:
            if kernel.thread_id in self._interrupts:  # interrupted before it began: do not begin
                kernel.stop_reason = "interrupted"
                return "idle"
            msg_id = kernel.kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
            deadline = loop.time() + limit
            try:
                return await self._follow(kernel, msg_id, out, deadline)
            except asyncio.CancelledError:
                kernel.stop_reason = kernel.stop_reason or "cancelled"
                try:
                    await self._follow(kernel, msg_id, out, deadline)
                except asyncio.CancelledError:
                    await self.pool.retire(kernel)  # cancelled twice: stop waiting, stop the kernel
                raise
        finally:
            kernel.busy = False
            kernel.last_used = loop.time()

    async def _follow(self, kernel: Kernel, msg_id: str, out: Capture, deadline: float) -> str:
        loop = asyncio.get_running_loop()
        stop_by: float | None = None
        next_check = loop.time() + CHECK_EVERY
        while True:
            now = loop.time()
            if stop_by is None:
                if kernel.stop_reason is None and kernel.thread_id in self._interrupts:
                    kernel.stop_reason = "interrupted"
                if kernel.stop_reason is None and now >= deadline:
                    kernel.stop_reason = "timeout"
                if kernel.stop_reason is None and now >= next_check:
                    next_check = now + CHECK_EVERY
                    kernel.stop_reason = await asyncio.to_thread(self._check_limits, kernel, out)
                if kernel.stop_reason == "processes":
                    stop_by = now + GRACE  # the tree was killed; the liveness check below sees it
                elif kernel.stop_reason is not None:
                    await kernel.interrupt()
                    stop_by = now + GRACE
            elif now >= stop_by:
                await self.pool.retire(kernel)
                return "restarted"
            try:
                msg = await kernel.kc.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if not await kernel.km.is_alive():
                    return "died"
                continue
            except (Exception, asyncio.CancelledError):
                if kernel not in self.pool.alive and not _being_cancelled():  # shut down under us (discard, close)
                    return "died"
                raise
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return "idle"
            out.handle(msg)

    def _check_limits(self, kernel: Kernel, out: Capture) -> str | None:
        """Runs in a worker thread every CHECK_EVERY seconds of an execution."""
        if kernel.pid is None:
            return None  # a kernel on a gateway: its limits are the gateway's (and its folder is there)
        out.peak_memory = max(out.peak_memory, limits.tree_memory(kernel.pid))
        if kernel.cgroup is None:
            if len(limits.descendants(kernel.pid)) + 1 - len(kernel.baseline) > self.max_processes:
                limits.kill_tree(kernel.pid)
                return "processes"
        if kernel.workdir is not None:
            if limits.folder_bytes(limits.snapshot(kernel.workdir)) > self.max_workdir_mb * 1024 * 1024:
                return "disk"
        return None

    async def _conclude(self, kernel: Kernel, ending: str, out: Capture, limit: float) -> tuple[Status, str | None]:
        """Turn how the execution ended into a status, an error and notes for the logs."""
        reason = kernel.stop_reason
        lost = "it was restarted and variables from earlier executions were lost"
        thread = kernel.thread_id or ""
        if ending == "died":
            why = await self._death_reason(kernel, out)
            await self.pool.retire(kernel)
            if reason not in ("discarded", "closed"):
                self.pool.lost[thread] = why.removeprefix("kernel ")
            if reason == "timeout":
                out.notes.append(f"Execution timed out after {limit:g} s; the {why}; {lost}.")
                return "timeout", f"timed out after {limit:g} s; {why}; variables were lost"
            out.notes.append(f"The {why} while running this code; {lost}.")
            return "died", f"{why}; variables were lost"
        if ending == "restarted":
            self.pool.lost[thread] = "was restarted after it ignored an interrupt"
            heads = {"timeout": f"timed out after {limit:g} s", "disk": "working folder cap exceeded"}
            head = heads.get(reason or "", "interrupted")
            out.notes.append(f"Execution {head}. The kernel did not stop when interrupted, so {lost}.")
            status: Status = {"timeout": "timeout", "disk": "error"}.get(reason or "", "interrupted")  # type: ignore[assignment]
            return status, f"{head}; kernel restarted, variables were lost"
        await self._after_process_limit(kernel, out)
        if reason == "timeout":
            out.notes.append(f"Execution timed out after {limit:g} s and was interrupted; variables are kept.")
            return "timeout", f"timed out after {limit:g} s"
        if reason in ("interrupted", "cancelled"):
            out.notes.append("Execution was interrupted; variables are kept.")
            return "interrupted", "interrupted"
        if reason == "disk":
            out.notes.append(f"{self._disk_words()}, so the execution was stopped.")
            return "error", "working folder cap exceeded"
        if out.ename is None:
            return "ok", None
        if out.ename == "MemoryError":
            return await self._after_memory_error(kernel, out)
        if out.ename == "OSError" and "File too large" in out.evalue:
            out.notes.append(f"A single file may be at most {self.max_file_mb} MB.")
        return "error", f"{out.ename}: {out.evalue}" if out.evalue else out.ename

    def _disk_words(self) -> str:
        return f"The working folder grew past its {self.max_workdir_mb} MB cap"

    async def _death_reason(self, kernel: Kernel, out: Capture) -> str:
        if kernel.stop_reason == "discarded":
            return "kernel was shut down because the thread was deleted"
        if kernel.stop_reason == "closed":
            return "kernel was shut down because the runtime is stopping"
        if kernel.stop_reason == "processes":
            return f"kernel started more than {self.max_processes} processes, so all its processes were stopped"
        code = await kernel.km.provisioner.poll() if kernel.km.provisioner else None
        if self.bwrap and code is not None and code > 128:
            code = -(code - 128)  # bubblewrap reports a signal as 128 + number
        oom = kernel.cgroup is not None and kernel.cgroup.oom_kills() > kernel.oom_kills
        limit = self.memory_limit_mb
        if oom or out.ename == "MemoryError" or (limit and out.peak_memory >= 0.9 * limit * 1024 * 1024):
            return f"kernel ran out of memory (limit {limit} MB)"
        if code is not None and code < 0:
            if -code == signal.SIGSEGV:
                return "kernel crashed (segmentation fault)"
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"kernel was killed ({name})"
        return f"kernel exited (exit code {code})" if code is not None else "kernel exited"

    async def _after_memory_error(self, kernel: Kernel, out: Capture) -> tuple[Status, str]:
        """A MemoryError leaves the kernel alive; restart it only if it still holds the memory."""
        limit = self.memory_limit_mb
        held = await asyncio.to_thread(limits.tree_memory, kernel.pid) if kernel.pid is not None else 0
        if limit and held >= 0.8 * limit * 1024 * 1024:
            await self.pool.retire(kernel)
            self.pool.lost[kernel.thread_id or ""] = f"ran out of memory (limit {limit} MB) and was restarted"
            out.notes.append(f"The kernel ran out of memory (limit {limit} MB) and still held it, "
                             "so it was restarted; variables from earlier executions were lost.")
            return "died", f"kernel ran out of memory (limit {limit} MB); variables were lost"
        out.notes.append(f"The code ran out of memory (limit {limit} MB); the kernel survived and variables are kept.")
        return "error", f"MemoryError: ran out of memory (limit {limit} MB)"

    async def _after_process_limit(self, kernel: Kernel, out: Capture) -> None:
        """After a fork bomb that failed to fork (cgroup pids limit, RLIMIT_NPROC), stop what it left."""
        if kernel.cgroup is not None:
            hits = kernel.cgroup.limit_hits()
            if hits <= kernel.limit_hits:
                return
            kernel.limit_hits = hits
            killed = await asyncio.to_thread(kernel.cgroup.kill, kernel.baseline)
        elif kernel.pid is None:
            return
        else:
            extra = [p for p in limits.descendants(kernel.pid) if p.pid not in kernel.baseline]
            # RLIMIT_NPROC (a kernel user of its own) counts the kernel's threads too: a fork refused for
            # want of a process is the limit at work even with fewer extra processes than max_processes
            if len(extra) <= self.max_processes and out.ename != "BlockingIOError":
                return
            killed = await asyncio.to_thread(limits.kill_processes, extra)
        try:
            await kernel.quiet(REAP_CODE)  # zombies still count against the limit
        except SandboxError:
            pass  # the kernel did not survive its flood; the next execution finds it gone and starts afresh
        if kernel.cgroup is not None:
            await asyncio.to_thread(kernel.cgroup.wait_until, kernel.baseline, 5.0)
        out.notes.append(f"The code tried to run more than {self.max_processes} processes at once; "
                         f"{killed} leftover processes were stopped.")

    def _enforce_workdir_cap(self, before: limits.Snapshot, after: limits.Snapshot, workdir: Path,
                             out: Capture, status: Status, error: str | None) -> tuple[Status, str | None]:
        cap = self.max_workdir_mb * 1024 * 1024
        total = limits.folder_bytes(after)
        if total <= cap:
            return status, error
        removed = []
        for path in sorted((p for p in after if before.get(p) != after[p]), key=lambda p: -after[p][1]):
            if total <= cap:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= after[path][1]
            removed.append(path.name)
        out.notes.append(f"{self._disk_words()}; removed new files: {', '.join(removed) or 'none'}.")
        if status == "ok":
            return "error", f"working folder over its {self.max_workdir_mb} MB cap; new files removed"
        return status, error


def _being_cancelled() -> bool:
    """Whether the current task was cancelled, as opposed to a socket closed under it."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(cancelling()) if cancelling is not None else False


#: How often a running execution's new output is passed on (the panel draws at most 20 times a second).
LIVE_INTERVAL = 0.1


async def _watch(out: Capture, workdir: Path, on_output: Callable[[str], None]) -> None:
    """Pass on the logs so far whenever they have grown, until cancelled."""
    sent = 0
    while True:
        await asyncio.sleep(LIVE_INTERVAL)
        if out.size != sent:
            sent = out.size
            _tell(on_output, out.live(workdir))


def _tell(on_output: Callable[[str], None], logs: str) -> None:
    try:
        on_output(logs)
    except Exception:  # a listener's failure must never break the execution
        log.exception("live output listener failed")
