"""The code interpreter: one Jupyter kernel per thread, so state carries across runs as it did at OpenAI.

A bad execution costs only that execution: timeouts interrupt (and, if ignored, restart) the kernel,
limits from ``limits``/``kernel_boot`` bound memory, processes, files and output, and every outcome
comes back as an ``Execution`` whose ``logs`` say in words what happened.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jupyter_client import AsyncKernelClient, AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import kernel_boot, limits

Status = Literal["ok", "error", "timeout", "died", "interrupted"]

THREAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
MNT_DATA = re.compile(r"/mnt/data(?![\w.-])")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
SPEC_NAME = "tutor-nb-sandbox"
GRACE = 3.0  # seconds an interrupted kernel gets to stop before it is restarted
POLL = 0.2  # seconds between liveness checks while the kernel is quiet
CHECK_EVERY = 0.5  # seconds between memory/process/disk checks during an execution
KERNEL_THREADS = 32  # tasks the kernel itself needs (its threads) on top of max_processes
MAX_IMAGES = 50
START_TIMEOUT = 60.0
REFILL_QUIET = 1.0  # seconds without executions before the pool is topped up while it still has a kernel


@dataclass
class Execution:
    """What one piece of code did, in the shape of OpenAI's code_interpreter outputs."""

    logs: str
    images: list[bytes]
    files: list[Path]
    status: Status
    error: str | None

    def __repr__(self) -> str:
        logs = self.logs if len(self.logs) <= 60 else self.logs[:57] + "..."
        return (f"Execution(status={self.status!r}, error={self.error!r}, logs={logs!r}, "
                f"images={len(self.images)}, files={[p.name for p in self.files]})")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": f"[{self.status}] {self.error or ''}\n{self.logs}".strip()}


class _Output:
    """Collects one execution's iopub messages, keeping at most ``cap`` characters of text."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False
        self.images: list[bytes] = []
        self.notes: list[str] = []
        self.ename: str | None = None
        self.evalue = ""
        self.peak_memory = 0

    def add_text(self, text: str) -> None:
        if self.truncated or not text:
            return
        text = ANSI.sub("", text)
        room = self.cap - self.size
        if len(text) > room:
            text, self.truncated = text[:room], True
        self.parts.append(text)
        self.size += len(text)

    def handle(self, msg: dict) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            self.add_text(content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = content.get("data", {})
            png = data.get("image/png")
            if png and len(self.images) < MAX_IMAGES:
                self.images.append(base64.b64decode(png))
            plain = data.get("text/plain")
            if plain and (kind == "execute_result" or not png):
                self.add_text(plain + "\n")
        elif kind == "error":
            self.ename, self.evalue = content.get("ename", "Error"), content.get("evalue", "")
            tb = content.get("traceback") or [f"{self.ename}: {self.evalue}"]
            self.add_text("\n".join(tb) + "\n")

    def logs(self, workdir: Path) -> str:
        text = "".join(self.parts)
        if self.truncated:
            text += f"\n[output truncated: only the first {self.cap:,} characters are kept]\n"
        if self.notes:
            text += "".join(f"[sandbox] {note}\n" for note in self.notes)
        return text.replace(str(workdir), "/mnt/data")


@dataclass(eq=False)
class _Kernel:
    km: AsyncKernelManager
    kc: AsyncKernelClient
    folder: Path  # private: connection file, sockets, kernel log
    cgroup: limits.KernelCgroup | None
    sockets: Path | None = None  # set when socket paths had to be shortened
    baseline: set[int] = field(default_factory=set)  # pids of the fresh kernel's tree: never killed
    thread_id: str | None = None
    workdir: Path | None = None
    last_used: float = 0.0
    busy: bool = False
    stop_reason: str | None = None
    limit_hits: int = 0
    oom_kills: int = 0

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid  # type: ignore[union-attr]


class Sandbox:
    """Jupyter kernels for threads, under a root folder holding one working folder per thread."""

    def __init__(self, root: Path, *, timeout: float = 60.0, idle_timeout: float = 900.0, pool_size: int = 1,
                 memory_limit_mb: int | None = 2048, max_log_chars: int = 100_000, max_file_mb: int = 200,
                 max_workdir_mb: int = 1024, max_processes: int = 64) -> None:
        self.root = Path(root).resolve()
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.pool_size = pool_size
        self.memory_limit_mb = memory_limit_mb
        self.max_log_chars = max_log_chars
        self.max_file_mb = max_file_mb
        self.max_workdir_mb = max_workdir_mb
        self.max_processes = max_processes
        self.bwrap: str | None = None  # set by start() when bubblewrap works here
        self.cgroups = False  # set by start() when per-kernel cgroups can be made here
        self._private = self.root / ".kernels"
        self._ksm: KernelSpecManager | None = None
        self._kernels: dict[str, _Kernel] = {}
        self._all: set[_Kernel] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._lost: dict[str, str] = {}  # thread id -> why its earlier variables are gone
        self._interrupts: set[str] = set()  # threads whose current execution must stop
        self._lingering: list[limits.KernelCgroup] = []  # cgroups whose killed members were not yet reaped
        self._pool: asyncio.Queue[_Kernel] | None = None
        self._filler: asyncio.Task | None = None
        self._handed_over = float("-inf")  # when a pooled kernel last went to a thread (loop time)
        # kernels started all at once share the CPU and all arrive late; a few at a time arrive in turn
        self._starts = asyncio.Semaphore(max(1, os.cpu_count() or 1))
        self._reaper: asyncio.Task | None = None
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        isolation = ", ".join(filter(None, ["bubblewrap" if self.bwrap else "", "cgroup" if self.cgroups else ""]))
        return (f"Sandbox(root={str(self.root)!r}, kernels={len(self._kernels)}, "
                f"isolation={isolation or 'rlimits only'})")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare folders and the kernelspec, then fill the pool in the background."""
        if self._started:
            return
        self._started = True
        self._private.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._private.chmod(0o700)
        self.bwrap = await _working_bwrap()
        await asyncio.to_thread(limits.sweep_stale)
        probe = limits.KernelCgroup.create(pids_max=1, memory_bytes=None)
        self.cgroups = probe is not None
        if probe is not None:
            probe.remove()
        self._ksm = self._write_kernelspec()
        self._pool = asyncio.Queue()
        self._ensure_filler()
        self._reaper = asyncio.create_task(self._reap_idle())

    def workdir(self, thread_id: str) -> Path:
        """The thread's working folder (the kernel's cwd, what code sees as /mnt/data)."""
        if not isinstance(thread_id, str) or not THREAD_ID.fullmatch(thread_id):
            raise ValueError(f"invalid thread id {thread_id!r}: use letters, digits, '_' and '-' only")
        folder = self.root / thread_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def discard(self, thread_id: str) -> None:
        """Shut the thread's kernel down (the thread was deleted); its folder is left to the caller."""
        self._lost.pop(thread_id, None)
        kernel = self._kernels.pop(thread_id, None)
        if kernel is not None:
            kernel.stop_reason = "discarded"
            await self._retire(kernel)

    async def close(self) -> None:
        """Shut every kernel down, pooled ones included."""
        self._closed = True
        for kernel in self._all:
            if kernel.busy:
                kernel.stop_reason = "closed"
        for task in (self._filler, self._reaper):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        await asyncio.gather(*(self._retire(k) for k in list(self._all)), return_exceptions=True)
        self._kernels.clear()
        await self._sweep_cgroups(patience=5.0)
        shutil.rmtree(self._private / "ipython", ignore_errors=True)  # the kernels' private IPYTHONDIR

    async def _sweep_cgroups(self, patience: float = 0.0) -> None:
        groups, self._lingering = self._lingering, []
        for group in groups:
            if not await asyncio.to_thread(group.remove, patience):
                self._lingering.append(group)

    async def interrupt(self, thread_id: str) -> None:
        """Stop what runs now in the thread (even if its kernel is still starting); returns once it ended."""
        lock = self._locks.get(thread_id)
        if lock is None or not lock.locked():
            return
        self._interrupts.add(thread_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRACE + 10
        while thread_id in self._interrupts and loop.time() < deadline:
            await asyncio.sleep(0.05)

    # -- executing ---------------------------------------------------------------------------

    async def execute(self, thread_id: str, code: str, *, timeout: float | None = None) -> Execution:
        """Run code in the thread's kernel and report what it printed, drew, wrote and how it ended."""
        workdir = self.workdir(thread_id)
        limit = self.timeout if timeout is None else timeout
        lock = self._locks.setdefault(thread_id, asyncio.Lock())
        async with lock:
            try:
                return await self._execute(thread_id, workdir, code, limit)
            finally:
                self._interrupts.discard(thread_id)

    async def _execute(self, thread_id: str, workdir: Path, code: str, limit: float) -> Execution:
        await self.start()
        kernel = await self._kernel_for(thread_id, workdir)
        lost = self._lost.pop(thread_id, None)
        before = limits.snapshot(workdir)
        out = _Output(self.max_log_chars)
        code = MNT_DATA.sub(lambda _: str(workdir), code)
        ending = await self._run(kernel, code, out, limit)
        status, error = await self._conclude(kernel, ending, out, limit)
        after = limits.snapshot(workdir)
        status, error = self._enforce_workdir_cap(before, after, workdir, out, status, error)
        if lost and out.ename == "NameError":
            out.notes.append(f"Variables from before are gone: the kernel {lost}.")
        files = limits.changed_files(before, limits.snapshot(workdir), workdir)
        return Execution(logs=out.logs(workdir), images=out.images, files=files, status=status, error=error)

    async def _run(self, kernel: _Kernel, code: str, out: _Output, limit: float) -> str:
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
                    await self._retire(kernel)  # cancelled twice: stop waiting, stop the kernel
                raise
        finally:
            kernel.busy = False
            kernel.last_used = loop.time()

    async def _follow(self, kernel: _Kernel, msg_id: str, out: _Output, deadline: float) -> str:
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
                    await self._send_interrupt(kernel)
                    stop_by = now + GRACE
            elif now >= stop_by:
                await self._retire(kernel)
                return "restarted"
            try:
                msg = await kernel.kc.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if not await kernel.km.is_alive():
                    return "died"
                continue
            except (Exception, asyncio.CancelledError):
                if kernel not in self._all and not _being_cancelled():  # shut down under us (discard, close)
                    return "died"
                raise
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return "idle"
            out.handle(msg)

    def _check_limits(self, kernel: _Kernel, out: _Output) -> str | None:
        """Runs in a worker thread every CHECK_EVERY seconds of an execution."""
        out.peak_memory = max(out.peak_memory, limits.tree_memory(kernel.pid))
        if kernel.cgroup is None:
            if len(limits.descendants(kernel.pid)) + 1 - len(kernel.baseline) > self.max_processes:
                limits.kill_tree(kernel.pid)
                return "processes"
        if kernel.workdir is not None:
            if limits.folder_bytes(limits.snapshot(kernel.workdir)) > self.max_workdir_mb * 1024 * 1024:
                return "disk"
        return None

    async def _conclude(self, kernel: _Kernel, ending: str, out: _Output, limit: float) -> tuple[Status, str | None]:
        """Turn how the execution ended into a status, an error and notes for the logs."""
        reason = kernel.stop_reason
        lost = "it was restarted and variables from earlier executions were lost"
        thread = kernel.thread_id or ""
        if ending == "died":
            why = await self._death_reason(kernel, out)
            await self._retire(kernel)
            if reason not in ("discarded", "closed"):
                self._lost[thread] = why.removeprefix("kernel ")
            if reason == "timeout":
                out.notes.append(f"Execution timed out after {limit:g} s; the {why}; {lost}.")
                return "timeout", f"timed out after {limit:g} s; {why}; variables were lost"
            out.notes.append(f"The {why} while running this code; {lost}.")
            return "died", f"{why}; variables were lost"
        if ending == "restarted":
            self._lost[thread] = "was restarted after it ignored an interrupt"
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

    async def _death_reason(self, kernel: _Kernel, out: _Output) -> str:
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
        return f"kernel exited (exit code {code})"

    async def _after_memory_error(self, kernel: _Kernel, out: _Output) -> tuple[Status, str]:
        """A MemoryError leaves the kernel alive; restart it only if it still holds the memory."""
        limit = self.memory_limit_mb
        held = await asyncio.to_thread(limits.tree_memory, kernel.pid)
        if limit and held >= 0.8 * limit * 1024 * 1024:
            await self._retire(kernel)
            self._lost[kernel.thread_id or ""] = f"ran out of memory (limit {limit} MB) and was restarted"
            out.notes.append(f"The kernel ran out of memory (limit {limit} MB) and still held it, "
                             "so it was restarted; variables from earlier executions were lost.")
            return "died", f"kernel ran out of memory (limit {limit} MB); variables were lost"
        out.notes.append(f"The code ran out of memory (limit {limit} MB); the kernel survived and variables are kept.")
        return "error", f"MemoryError: ran out of memory (limit {limit} MB)"

    async def _after_process_limit(self, kernel: _Kernel, out: _Output) -> None:
        """After a fork bomb that failed to fork (cgroup pids limit, RLIMIT_NPROC), stop what it left."""
        if kernel.cgroup is not None:
            hits = kernel.cgroup.limit_hits()
            if hits <= kernel.limit_hits:
                return
            kernel.limit_hits = hits
            killed = await asyncio.to_thread(kernel.cgroup.kill, kernel.baseline)
        else:
            extra = [p for p in limits.descendants(kernel.pid) if p.pid not in kernel.baseline]
            if len(extra) <= self.max_processes:
                return
            killed = await asyncio.to_thread(limits.kill_processes, extra)
        await self._quiet(kernel, _REAP_CODE)  # zombies still count against the limit
        if kernel.cgroup is not None:
            await asyncio.to_thread(kernel.cgroup.wait_until, kernel.baseline, 5.0)
        out.notes.append(f"The code tried to run more than {self.max_processes} processes at once; "
                         f"{killed} leftover processes were stopped.")

    def _enforce_workdir_cap(self, before: limits.Snapshot, after: limits.Snapshot, workdir: Path,
                             out: _Output, status: Status, error: str | None) -> tuple[Status, str | None]:
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

    # -- kernels -----------------------------------------------------------------------------

    async def _kernel_for(self, thread_id: str, workdir: Path) -> _Kernel:
        kernel = self._kernels.get(thread_id)
        if kernel is not None:
            if await kernel.km.is_alive():
                return kernel
            self._lost[thread_id] = "had stopped"
            await self._retire(kernel)
        kernel = await self._fresh_kernel()
        # sent, not awaited (a round trip saved on every new thread): a kernel runs requests in order,
        # so the thread's first code already finds its folder
        kernel.kc.execute(kernel_boot.chdir_code(workdir), silent=True, store_history=False, allow_stdin=False)
        kernel.thread_id, kernel.workdir = thread_id, workdir
        kernel.last_used = asyncio.get_running_loop().time()
        self._kernels[thread_id] = kernel
        return kernel

    async def _fresh_kernel(self) -> _Kernel:
        """A pooled kernel when one is ready (or about to be), else a cold start."""
        assert self._pool is not None
        while True:
            if not self._pool.empty():
                kernel = self._pool.get_nowait()
                self._handed_over = asyncio.get_running_loop().time()
                self._ensure_filler()
                if await kernel.km.is_alive():
                    return kernel
                await self._retire(kernel)
                continue
            filler = self._filler
            if filler is None or filler.done():
                break
            getter = asyncio.ensure_future(self._pool.get())
            try:
                await asyncio.wait({getter, filler}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                self._pool.put_nowait(getter.result())
            elif filler.done():
                break
        starting = asyncio.ensure_future(self._start_kernel())
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            starting.add_done_callback(self._adopt)
            raise

    def _adopt(self, task: asyncio.Task) -> None:
        """A kernel started for a cancelled caller goes to the pool rather than leaking."""
        if task.cancelled() or task.exception() is not None or self._pool is None:
            return
        kernel = task.result()
        if self._closed:
            asyncio.ensure_future(self._retire(kernel))
        else:
            self._pool.put_nowait(kernel)

    def _ensure_filler(self) -> None:
        if self._closed or self._pool is None or self.pool_size <= 0:
            return
        if (self._filler is None or self._filler.done()) and self._pool.qsize() < self.pool_size:
            self._filler = asyncio.create_task(self._fill_pool())

    def _executing_lately(self) -> bool:
        now = asyncio.get_running_loop().time()
        return now - self._handed_over < REFILL_QUIET or any(
            k.busy or now - k.last_used < REFILL_QUIET for k in self._kernels.values())

    async def _fill_pool(self) -> None:
        assert self._pool is not None
        while not self._closed and self._pool.qsize() < self.pool_size:
            # starting a kernel costs about a CPU-second: while kernels are still ready and code is running
            # (a class at work), let the code have the CPU and top up once it is quiet
            while not self._closed and not self._pool.empty() and self._executing_lately():
                await asyncio.sleep(REFILL_QUIET / 4)
            if self._closed:
                return
            kernel = await self._start_kernel()
            if self._closed:
                await self._retire(kernel)
                return
            self._pool.put_nowait(kernel)

    async def _reap_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(max(0.05, min(30.0, self.idle_timeout / 4)))
            await self._sweep_cgroups()
            now = loop.time()
            for thread_id, kernel in list(self._kernels.items()):
                lock = self._locks.get(thread_id)
                if kernel.busy or (lock is not None and lock.locked()):
                    continue
                if now - kernel.last_used > self.idle_timeout:
                    self._lost[thread_id] = f"was shut down after {self.idle_timeout:g} s without use"
                    await self._retire(kernel)

    async def _start_kernel(self) -> _Kernel:
        async with self._starts:
            return await self._launch_kernel()

    async def _launch_kernel(self) -> _Kernel:
        if self._closed:
            raise SandboxError("the sandbox is closed; create a new Sandbox to run code")
        folder = self._private / uuid.uuid4().hex[:10]
        folder.mkdir(mode=0o700)
        sockets = folder if len(str(folder)) < 80 else Path(tempfile.mkdtemp(prefix="tnb-"))  # socket paths max ~107
        memory = self.memory_limit_mb * 1024 * 1024 if self.memory_limit_mb else None
        cgroup = limits.KernelCgroup.create(self.max_processes + KERNEL_THREADS, memory) if self.cgroups else None
        config = {"server_pid": os.getpid(), "memory_mb": self.memory_limit_mb, "file_mb": self.max_file_mb,
                  "nproc": self.max_processes + KERNEL_THREADS,
                  "cgroup_procs": cgroup.procs_files if cgroup else [],
                  "wrap": self._bwrap_args(folder, sockets) if self.bwrap else []}
        km = AsyncKernelManager(kernel_name=SPEC_NAME, kernel_spec_manager=self._ksm, transport="ipc",
                                connection_file=str(sockets / "kernel.json"))
        env = kernel_boot.kernel_env(limits=config, private_dir=self._private)
        kernel = _Kernel(km=km, kc=km.client(), folder=folder, cgroup=cgroup,
                         sockets=None if sockets == folder else sockets)
        self._all.add(kernel)
        try:
            with open(folder / "kernel.log", "wb") as log:
                await km.start_kernel(env=env, cwd=str(self.root), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=log)
            kernel.kc = km.client()
            kernel.kc.start_channels()
            await kernel.kc.wait_for_ready(timeout=START_TIMEOUT)
            await self._quiet(kernel, kernel_boot.setup_code(output_cap=self.max_log_chars + 1000))
        except BaseException as exc:
            log_tail = (folder / "kernel.log").read_text(errors="replace")[-2000:]
            await self._retire(kernel)
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                raise
            raise SandboxError(
                f"a Jupyter kernel for the code interpreter did not start ({exc!r}). Check that ipykernel is "
                f"installed in this Python environment. Kernel output:\n{log_tail}") from exc
        kernel.baseline = {kernel.pid, *(p.pid for p in limits.descendants(kernel.pid))}
        if cgroup is not None:
            kernel.limit_hits, kernel.oom_kills = cgroup.limit_hits(), cgroup.oom_kills()
        return kernel

    def _bwrap_args(self, folder: Path, sockets: Path) -> list[str]:
        assert self.bwrap is not None
        args = kernel_boot.bwrap_prefix(self.bwrap, writable=self.root)[:-1]  # drop the final "--"
        hide = ["--tmpfs", str(self._private), "--bind", str(folder), str(folder)]  # other kernels' sockets
        if sockets != folder:
            hide += ["--bind", str(sockets), str(sockets)]
        return [*args, *hide, "--"]

    async def _quiet(self, kernel: _Kernel, code: str) -> None:
        """Run housekeeping code silently and wait for it to finish."""
        msg_id = kernel.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            try:
                msg = await kernel.kc.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if not await kernel.km.is_alive():
                    raise SandboxError("the kernel died while being prepared; try again") from None
                continue
            if (msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"):
                return
        raise SandboxError(f"the kernel did not finish preparing within {START_TIMEOUT:g} s; try again")

    async def _send_interrupt(self, kernel: _Kernel) -> None:
        try:
            await kernel.km.interrupt_kernel()
        except Exception:
            pass  # a dead kernel is found by the liveness check

    async def _retire(self, kernel: _Kernel) -> None:
        """Kill a kernel and clean up everything it had; safe to call twice."""
        if kernel not in self._all:
            return
        self._all.discard(kernel)
        if kernel.thread_id is not None and self._kernels.get(kernel.thread_id) is kernel:
            del self._kernels[kernel.thread_id]
        try:
            kernel.kc.stop_channels()
        except Exception:
            pass
        try:
            pid: int | None = kernel.pid
        except AttributeError:
            pid = None
        try:
            await kernel.km.shutdown_kernel(now=True)
        except Exception:
            if pid is not None:
                limits.kill_tree(pid)
        if kernel.cgroup is not None and not await asyncio.to_thread(kernel.cgroup.remove):
            self._lingering.append(kernel.cgroup)
        shutil.rmtree(kernel.folder, ignore_errors=True)
        if kernel.sockets is not None:
            shutil.rmtree(kernel.sockets, ignore_errors=True)

    def _write_kernelspec(self) -> KernelSpecManager:
        specs = self._private / "kernelspecs"
        spec_dir = specs / SPEC_NAME
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {"argv": kernel_boot.kernel_argv(), "display_name": "tutor_nb sandbox", "language": "python",
                # with bubblewrap between server and kernel, a signal would reach bwrap, not the kernel
                "interrupt_mode": "message" if self.bwrap else "signal"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        return KernelSpecManager(kernel_dirs=[str(specs)])


_REAP_CODE = """
import os as _tnb_os
while True:
    try:
        if _tnb_os.waitpid(-1, _tnb_os.WNOHANG)[0] == 0:
            break
    except ChildProcessError:
        break
del _tnb_os
"""


def _being_cancelled() -> bool:
    """Whether the current task was cancelled, as opposed to a socket closed under it."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(cancelling()) if cancelling is not None else False


async def _working_bwrap() -> str | None:
    """bubblewrap's path if it is installed and can make namespaces here, else None."""
    bwrap = kernel_boot.find_bwrap()
    if bwrap is None:
        return None
    probe = [*kernel_boot.bwrap_prefix(bwrap, writable=Path(tempfile.gettempdir())), "true"]
    try:
        proc = await asyncio.create_subprocess_exec(*probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return bwrap if await asyncio.wait_for(proc.wait(), 10) == 0 else None
    except (OSError, asyncio.TimeoutError):
        return None
