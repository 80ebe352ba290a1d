"""The kernels: warm ones waiting in a pool, one assigned to each thread, idle ones reaped.

The pool adapts unless given a fixed size: it keeps about half as many warm kernels as new threads
asked for in the last minute (at least one), starts one for every thread that waits, a few at a
time, tops up only while the machine has memory to spare, and lets surplus kernels go once they
have waited a minute unused. At most ``max_kernels`` kernels live at once: a thread that needs one past
that takes the place of the idle kernel used longest ago (its next logs say so); top-ups stop there.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import shutil
import time
from pathlib import Path

import psutil

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import kernel_boot, limits
from tutor_nb.runtime.learners import current_owner

from . import warm
from .kernel import Kernel, KernelLauncher

REFILL_QUIET = 1.0  # seconds without executions before the pool is topped up while it still has a kernel
REFILL_POLL = 0.005  # seconds between looks at whether the code that runs now is done, before a top-up
REFILL_SETTLE = 0.05  # seconds after code ended (the model's answer to it follows) before a top-up starts
DEMAND_WINDOW = 60.0  # seconds of new threads the adaptive pool sizes itself by
ADAPTIVE_MAX = 64  # warm kernels an adaptive pool keeps at most
SURPLUS_AFTER = 60.0  # seconds a warm kernel beyond the pool's size waits unused before it is stopped
KERNEL_BUDGET_MB = 150  # memory set aside per kernel started to top the pool up (a forked one holds far less)
RESERVE_FRACTION = 0.1  # of the machine's memory, left alone by top-ups


class KernelPool:
    """Which kernel serves which thread, the warm kernels ready for new threads, and every kernel alive."""

    def __init__(self, launcher: KernelLauncher, *, pool_size: int | None, idle_timeout: float,
                 max_kernels: int, kernels_per_learner: int | None = None) -> None:
        self.launcher = launcher
        self.kernels_per_learner = kernels_per_learner
        self.fixed_size, self.idle_timeout = pool_size, idle_timeout  # None: the pool adapts
        self.max_kernels = max_kernels
        self.assigned: dict[str, Kernel] = {}  # thread id -> its kernel
        self.alive: set[Kernel] = set()  # every kernel not yet retired, warm and starting ones too
        self.warm: asyncio.Queue[Kernel | BaseException] | None = None  # a failed start is handed on too
        self.locks: dict[str, asyncio.Lock] = {}  # one execution at a time per thread
        self.lost: dict[str, str] = {}  # thread id -> why its earlier variables are gone
        self.evicted: set[str] = set()  # threads whose kernel went to make room: their next logs say so
        self.closed = False
        self._lingering: list[limits.KernelCgroup] = []  # cgroups whose killed members were not yet reaped
        self.waiting = 0  # threads waiting for a kernel now
        self._asked: collections.deque[float] = collections.deque()  # when new threads asked (monotonic)
        self._failures = 0  # kernel starts that failed in a row: top-ups pause after a few
        self._warm_since: dict[Kernel, float] = {}
        self._starting: set[asyncio.Task] = set()
        self._filler: asyncio.Task | None = None
        self._reaper: asyncio.Task | None = None
        self._handed_over = float("-inf")  # when a warm kernel last went to a thread (loop time)
        # kernels started all at once share the CPU and all arrive late; a few at a time arrive in turn
        self._concurrency = max(1, os.cpu_count() or 1)
        self._starts = asyncio.Semaphore(self._concurrency)

    @property
    def pool_size(self) -> int:
        """How many warm kernels the pool keeps now: the fixed size, or what recent demand asks for."""
        if self.fixed_size is not None:
            return self.fixed_size
        now = time.monotonic()
        while self._asked and now - self._asked[0] > DEMAND_WINDOW:
            self._asked.popleft()
        return min(ADAPTIVE_MAX, max(1, math.ceil(len(self._asked) / 2)))

    def start(self) -> None:
        """Fill the pool and reap idle kernels in the background (the launcher is prepared)."""
        if self.launcher.warm is not None:
            # a forked kernel's start is mostly waiting on round trips, not CPU: twice as many at once
            self._concurrency *= 2
            self._starts = asyncio.Semaphore(self._concurrency)
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
        owner = current_owner.get()
        await self._within_learner_cap(owner)
        kernel = await self._fresh_kernel()
        if kernel.uid is not None:
            await asyncio.to_thread(limits.hand_over, workdir, kernel.uid)
        # sent, not awaited (a round trip saved on every new thread): a kernel runs requests in order,
        # so the thread's first code already finds its folder
        kernel.kc.execute(kernel_boot.chdir_code(Path(kernel.code_folder(workdir))), silent=True,
                          store_history=False, allow_stdin=False)
        kernel.thread_id, kernel.workdir, kernel.owner = thread_id, workdir, owner
        kernel.last_used = asyncio.get_running_loop().time()
        self.assigned[thread_id] = kernel
        return kernel

    async def _within_learner_cap(self, owner: str | None) -> None:
        """A learner at their kernel cap gives up the kernel of their longest-idle thread for the new one."""
        cap = self.kernels_per_learner
        if owner is None or cap is None:
            return
        theirs = [k for k in self.assigned.values() if k.owner == owner]
        def free(kernel: Kernel) -> bool:
            lock = self.locks.get(kernel.thread_id or "")
            return not kernel.busy and not (lock is not None and lock.locked())

        idle = sorted(filter(free, theirs), key=lambda k: k.last_used)
        while len(theirs) >= cap and idle:
            oldest = idle.pop(0)
            theirs.remove(oldest)
            self.lost[oldest.thread_id or ""] = (f"was stopped for one of your newer threads (a learner may have "
                                                 f"{cap} kernels at once)")
            await self.retire(oldest)
        if len(theirs) >= cap:
            raise SandboxError(f"{owner} already has {cap} threads running code at once, the most a learner may; "
                               "wait for one to finish")

    async def discard(self, thread_id: str) -> None:
        """Shut the thread's kernel down (the thread was deleted)."""
        self.lost.pop(thread_id, None)
        if not self.locks.get(thread_id, asyncio.Lock()).locked():
            self.locks.pop(thread_id, None)
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
        for task in (self._filler, self._reaper, *self._starting):
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
        await self.launcher.release(kernel)

    async def _sweep_cgroups(self, patience: float = 0.0) -> None:
        groups, self._lingering = self._lingering, []
        for group in groups:
            if not await asyncio.to_thread(group.remove, patience):
                self._lingering.append(group)

    async def _fresh_kernel(self) -> Kernel:
        """A warm kernel: at once when one is ready, else the next one started (one is started for each waiter)."""
        assert self.warm is not None
        loop = asyncio.get_running_loop()
        self._asked.append(time.monotonic())
        self.waiting += 1
        try:
            while True:
                self._ensure_filler()
                kernel = await self.warm.get()
                if isinstance(kernel, BaseException):
                    raise kernel
                self._warm_since.pop(kernel, None)
                if await kernel.km.is_alive():
                    self._handed_over = loop.time()
                    return kernel
                await self.retire(kernel)
        finally:
            self.waiting -= 1
            self._ensure_filler()

    def _ensure_filler(self) -> None:
        if self.closed or self.warm is None:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.create_task(self._fill_pool())

    def _ready(self) -> int:
        assert self.warm is not None
        return sum(isinstance(k, Kernel) for k in self.warm._queue)  # type: ignore[attr-defined]

    def _executing_lately(self) -> bool:
        now = asyncio.get_running_loop().time()
        return now - self._handed_over < REFILL_QUIET or any(
            k.busy or now - k.last_used < REFILL_QUIET for k in self.assigned.values())

    def _executing_now(self) -> bool:
        """Whether a thread runs code now (or is being given its kernel), or did REFILL_SETTLE ago; only
        within REFILL_QUIET of the last hand-over, so a top-up waits for the code that took the kernel."""
        now = asyncio.get_running_loop().time()
        if now - self._handed_over >= REFILL_QUIET:
            return False
        return (any(lock.locked() for lock in self.locks.values())
                or any(now - k.last_used < REFILL_SETTLE for k in self.assigned.values()))

    def _memory_allows(self, budget_mb: int = KERNEL_BUDGET_MB) -> bool:
        """Whether one more kernel (``budget_mb``) fits in what the machine has free, a reserve kept."""
        memory = psutil.virtual_memory()
        return memory.available - budget_mb * 1024 * 1024 > RESERVE_FRACTION * memory.total

    async def _fill_pool(self) -> None:
        """Start kernels, a few at a time, until every waiting thread has one coming and the pool is full."""
        while not self.closed:
            coming = self._ready() + len(self._starting)
            if coming < self.waiting:
                pass  # a thread waits for this one: start it now, whatever else runs
            elif (coming < self.waiting + self.pool_size and self._failures < 3 and self._memory_allows()
                  and len(self.alive) + len(self._starting) < self.max_kernels):  # top-ups never evict
                # starting a kernel costs CPU: while code runs, let it have the CPU. With kernels still ready
                # (a class at work), top up once it is quiet; with none, once the code that runs now is done
                # and answered, or REFILL_QUIET after the last hand-over (a thread that asks meanwhile has
                # one started at once, above)
                if self._ready() and self._executing_lately():
                    await asyncio.sleep(REFILL_QUIET / 4)
                    continue
                if not self._ready() and self._executing_now():
                    await asyncio.sleep(REFILL_POLL)
                    continue
            elif self._starting:
                await asyncio.wait(set(self._starting), return_when=asyncio.FIRST_COMPLETED)
                continue
            else:
                return
            if len(self._starting) >= self._concurrency:
                await asyncio.wait(set(self._starting), return_when=asyncio.FIRST_COMPLETED)
                continue
            task = asyncio.create_task(self._start_warm())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
            await asyncio.sleep(0)

    async def _start_warm(self) -> None:
        """Start one kernel into the pool; a failure goes to a waiting thread, or pauses the filling."""
        assert self.warm is not None
        try:
            kernel = await self._start_kernel()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failures += 1
            if self.waiting > self._ready():
                self.warm.put_nowait(exc)
            else:
                await asyncio.sleep(REFILL_QUIET)  # nobody waits: no hurry to try again
            return
        if self.closed:
            await self.retire(kernel)
            return
        self._failures = 0
        self._warm_since[kernel] = asyncio.get_running_loop().time()
        self.warm.put_nowait(kernel)

    async def _reap_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(max(0.05, min(10.0, self.idle_timeout / 4)))
            await self._sweep_cgroups()
            await self._trim_surplus()
            now = loop.time()
            for thread_id, kernel in list(self.assigned.items()):
                lock = self.locks.get(thread_id)
                if kernel.busy or (lock is not None and lock.locked()):
                    continue
                if now - kernel.last_used > self.idle_timeout:
                    self.lost[thread_id] = f"was shut down after {self.idle_timeout:g} s without use"
                    await self.retire(kernel)

    async def _trim_surplus(self) -> None:
        """Stop one warm kernel beyond the pool's size that has waited unused a while (one per sweep)."""
        assert self.warm is not None
        now = asyncio.get_running_loop().time()
        if self._ready() <= self.pool_size + self.waiting:
            return
        oldest = min(self._warm_since, key=self._warm_since.__getitem__, default=None)
        if oldest is None or now - self._warm_since[oldest] < SURPLUS_AFTER:
            return
        self.warm._queue.remove(oldest)  # type: ignore[attr-defined]
        del self._warm_since[oldest]
        await self.retire(oldest)

    async def _start_kernel(self) -> Kernel:
        async with self._starts:
            await self._make_room()
            try:  # counted in self.alive before its first await
                return await self._launch()
            except warm.TemplateError:  # the template died under this start: its successor (or a cold start) now
                return await self._launch()

    async def _make_room(self) -> None:
        """Wait until one more kernel fits under max_kernels, shutting down the idle one used longest ago;
        while the machine is short of memory, idle kernels go first too (but a thread is not kept waiting
        for memory that only running code holds)."""
        while not self.closed:
            capped = len(self.alive) >= self.max_kernels
            if not capped and self._memory_allows(budget_mb=0):
                return
            idle = [k for k in self.assigned.values()
                    if not k.busy and not (self.locks.get(k.thread_id or "") or asyncio.Lock()).locked()]
            if not idle and not capped:
                return
            if not idle:
                await asyncio.sleep(0.1)  # every kernel is running code (or waiting warm): one will be free soon
                continue
            victim = min(idle, key=lambda k: k.last_used)
            thread = victim.thread_id or ""
            self.lost[thread] = (f"was shut down to make room for other threads (at most {self.max_kernels} "
                                 "kernels run at once)" if capped else
                                 "was shut down to make room for other threads (the machine ran short of memory)")
            self.evicted.add(thread)
            await self.retire(victim)

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
