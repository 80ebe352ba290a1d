"""The kernels: warm ones waiting in a pool, one assigned to each thread, idle ones reaped."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import kernel_boot, limits

from . import warm
from .kernel import Kernel, KernelLauncher

REFILL_QUIET = 1.0  # seconds without executions before the pool is topped up while it still has a kernel


class KernelPool:
    """Which kernel serves which thread, the warm kernels ready for new threads, and every kernel alive."""

    def __init__(self, launcher: KernelLauncher, *, pool_size: int, idle_timeout: float) -> None:
        self.launcher = launcher
        self.pool_size, self.idle_timeout = pool_size, idle_timeout
        self.assigned: dict[str, Kernel] = {}  # thread id -> its kernel
        self.alive: set[Kernel] = set()  # every kernel not yet retired, warm and starting ones too
        self.warm: asyncio.Queue[Kernel] | None = None
        self.locks: dict[str, asyncio.Lock] = {}  # one execution at a time per thread
        self.lost: dict[str, str] = {}  # thread id -> why its earlier variables are gone
        self.closed = False
        self._lingering: list[limits.KernelCgroup] = []  # cgroups whose killed members were not yet reaped
        self._filler: asyncio.Task | None = None
        self._reaper: asyncio.Task | None = None
        self._handed_over = float("-inf")  # when a warm kernel last went to a thread (loop time)
        # kernels started all at once share the CPU and all arrive late; a few at a time arrive in turn
        self._starts = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    def start(self) -> None:
        """Fill the pool and reap idle kernels in the background (the launcher is prepared)."""
        self.warm = asyncio.Queue()
        self._ensure_filler()
        self._reaper = asyncio.create_task(self._reap_idle())

    def lock(self, thread_id: str) -> asyncio.Lock:
        return self.locks.setdefault(thread_id, asyncio.Lock())

    async def kernel_for(self, thread_id: str, workdir: Path) -> Kernel:
        """The thread's kernel, alive; a warm (or new) one if it has none."""
        kernel = self.assigned.get(thread_id)
        if kernel is not None:
            if await kernel.km.is_alive():
                return kernel
            self.lost[thread_id] = "had stopped"
            await self.retire(kernel)
        kernel = await self._fresh_kernel()
        # sent, not awaited (a round trip saved on every new thread): a kernel runs requests in order,
        # so the thread's first code already finds its folder
        kernel.kc.execute(kernel_boot.chdir_code(workdir), silent=True, store_history=False, allow_stdin=False)
        kernel.thread_id, kernel.workdir = thread_id, workdir
        kernel.last_used = asyncio.get_running_loop().time()
        self.assigned[thread_id] = kernel
        return kernel

    async def discard(self, thread_id: str) -> None:
        """Shut the thread's kernel down (the thread was deleted)."""
        self.lost.pop(thread_id, None)
        kernel = self.assigned.pop(thread_id, None)
        if kernel is not None:
            kernel.stop_reason = "discarded"
            await self.retire(kernel)

    async def close(self) -> None:
        """Shut every kernel down, warm ones included."""
        self.closed = True
        for kernel in self.alive:
            if kernel.busy:
                kernel.stop_reason = "closed"
        for task in (self._filler, self._reaper):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        await asyncio.gather(*(self.retire(k) for k in list(self.alive)), return_exceptions=True)
        self.assigned.clear()
        await self._sweep_cgroups(patience=5.0)
        await self.launcher.close()
        shutil.rmtree(self.launcher.private / "ipython", ignore_errors=True)  # the kernels' private IPYTHONDIR

    async def retire(self, kernel: Kernel) -> None:
        """Kill a kernel and clean up everything it had; safe to call twice."""
        if kernel not in self.alive:
            return
        self.alive.discard(kernel)
        if kernel.thread_id is not None and self.assigned.get(kernel.thread_id) is kernel:
            del self.assigned[kernel.thread_id]
        if not await kernel.shutdown():
            assert kernel.cgroup is not None
            self._lingering.append(kernel.cgroup)

    async def _sweep_cgroups(self, patience: float = 0.0) -> None:
        groups, self._lingering = self._lingering, []
        for group in groups:
            if not await asyncio.to_thread(group.remove, patience):
                self._lingering.append(group)

    async def _fresh_kernel(self) -> Kernel:
        """A warm kernel when one is ready (or about to be), else a cold start."""
        assert self.warm is not None
        while True:
            if not self.warm.empty():
                kernel = self.warm.get_nowait()
                self._handed_over = asyncio.get_running_loop().time()
                self._ensure_filler()
                if await kernel.km.is_alive():
                    return kernel
                await self.retire(kernel)
                continue
            filler = self._filler
            if filler is None or filler.done():
                break
            getter = asyncio.ensure_future(self.warm.get())
            try:
                await asyncio.wait({getter, filler}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                self.warm.put_nowait(getter.result())
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
        if task.cancelled() or task.exception() is not None or self.warm is None:
            return
        kernel = task.result()
        if self.closed:
            asyncio.ensure_future(self.retire(kernel))
        else:
            self.warm.put_nowait(kernel)

    def _ensure_filler(self) -> None:
        if self.closed or self.warm is None or self.pool_size <= 0:
            return
        if (self._filler is None or self._filler.done()) and self.warm.qsize() < self.pool_size:
            self._filler = asyncio.create_task(self._fill_pool())

    def _executing_lately(self) -> bool:
        now = asyncio.get_running_loop().time()
        return now - self._handed_over < REFILL_QUIET or any(
            k.busy or now - k.last_used < REFILL_QUIET for k in self.assigned.values())

    async def _fill_pool(self) -> None:
        assert self.warm is not None
        while not self.closed and self.warm.qsize() < self.pool_size:
            # starting a kernel costs about a CPU-second: while kernels are still ready and code is running
            # (a class at work), let the code have the CPU and top up once it is quiet
            while not self.closed and not self.warm.empty() and self._executing_lately():
                await asyncio.sleep(REFILL_QUIET / 4)
            if self.closed:
                return
            kernel = await self._start_kernel()
            if self.closed:
                await self.retire(kernel)
                return
            self.warm.put_nowait(kernel)

    async def _reap_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(max(0.05, min(30.0, self.idle_timeout / 4)))
            await self._sweep_cgroups()
            now = loop.time()
            for thread_id, kernel in list(self.assigned.items()):
                lock = self.locks.get(thread_id)
                if kernel.busy or (lock is not None and lock.locked()):
                    continue
                if now - kernel.last_used > self.idle_timeout:
                    self.lost[thread_id] = f"was shut down after {self.idle_timeout:g} s without use"
                    await self.retire(kernel)

    async def _start_kernel(self) -> Kernel:
        async with self._starts:
            try:
                return await self._launch()
            except warm.TemplateError:  # the template died under this start: its successor (or a cold start) now
                return await self._launch()

    async def _launch(self) -> Kernel:
        if self.closed:
            raise SandboxError("the sandbox is closed; create a new Sandbox to run code")
        kernel = self.launcher.new()
        self.alive.add(kernel)
        try:
            await self.launcher.boot(kernel)
        except BaseException as exc:
            log_tail = kernel.log_tail()
            await self.retire(kernel)
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, warm.TemplateError)):
                raise
            raise SandboxError(
                f"a Jupyter kernel for the code interpreter did not start ({exc!r}). Check that ipykernel is "
                f"installed in this Python environment. Kernel output:\n{log_tail}") from exc
        return kernel
