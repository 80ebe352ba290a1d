"""Kernels forked from a warm template instead of started cold (the server's side of ``kernel_template``).

A cold kernel spends about a second importing before it can run a line; a kernel forked from a process
that has already imported IPython, ipykernel, numpy, pandas and matplotlib is ready in a fraction of
that, and shares those pages with every other kernel from the same template. The seam is jupyter_client's
own: :class:`WarmProvisioner` launches the kernel by asking the template to fork, so the kernel manager,
client, interrupts, restarts and shutdown are exactly those of a cold kernel.

:class:`WarmStart` keeps one template per sandbox: it starts it in the background, replaces it when it
dies (kernels already forked live on), and gives up, saying why, when templates keep dying; the sandbox
then starts kernels cold.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import kernel_boot

SCRIPT = Path(kernel_boot.__file__).with_name("kernel_template.py")  # beside kernel_boot, which it imports
START_TIMEOUT = 60.0
MAX_QUICK_DEATHS = 3  # templates that die this many times running, each soon after starting: give up
QUICK = 30.0  # seconds: a template that dies sooner than this after its start counts as a quick death


class TemplateError(SandboxError):
    """The warm template could not fork a kernel (it died, or refused); a cold start still works."""


class Template:
    """One running template process and what it reports about the kernels it forked."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.log = log
        self.started = time.monotonic()
        self._replies: collections.deque[asyncio.Future[int]] = collections.deque()
        self._statuses: dict[int, int] = {}
        self._ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, *, env: dict[str, str], lifeline: int, cwd: Path, log: Path) -> Template:
        """Start a template and wait until it has made its imports."""
        with open(log, "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), str(lifeline), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, env=env, cwd=str(cwd), pass_fds=(lifeline,), start_new_session=True,
                limit=1 << 20)
        template = cls(proc, log)
        try:
            await asyncio.wait_for(asyncio.shield(template._ready), START_TIMEOUT)
        except BaseException as exc:
            await template.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise TemplateError(f"the warm kernel template did not start ({exc!r}); its log:\n"
                                f"{template.log_tail()}") from exc
        return template

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self._reader.done()

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def fork(self, *, argv: list[str], env: dict[str, str], cwd: str, log: str | None) -> int:
        """Have the template fork a kernel; returns its pid once it runs."""
        if not self.alive or self.proc.stdin is None:
            raise TemplateError("the warm kernel template has exited")
        reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._replies.append(reply)  # the template answers in the order it is asked
        self.proc.stdin.write((json.dumps({"argv": argv, "env": env, "cwd": cwd, "log": log}) + "\n").encode())
        try:
            await self.proc.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            raise TemplateError("the warm kernel template has exited") from exc
        return await asyncio.wait_for(asyncio.shield(reply), START_TIMEOUT)

    def status(self, pid: int) -> int | None:
        """A forked kernel's exit code as ``Popen.returncode`` gives it, or None while it runs or is unknown."""
        return self._statuses.get(pid)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                message = json.loads(line)
                if "exited" in message:
                    self._statuses[message["exited"]] = message["status"]
                elif "ready" in message:
                    if not self._ready.done():
                        self._ready.set_result(message)
                elif self._replies:
                    reply = self._replies.popleft()
                    if reply.done():
                        continue
                    if "forked" in message:
                        reply.set_result(message["forked"])
                    else:
                        reply.set_exception(TemplateError(f"the warm kernel template refused: {message.get('refused')}"))
        except (ValueError, ConnectionError):
            pass
        finally:
            gone = TemplateError("the warm kernel template exited")
            for reply in [*self._replies, self._ready]:
                if not reply.done():
                    reply.set_exception(gone)
            self._replies.clear()

    async def close(self) -> None:
        """Stop the template; the kernels it forked are not its to stop and live on."""
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        await self.proc.wait()
        self._reader.cancel()
        try:
            await self._reader
        except (asyncio.CancelledError, Exception):
            pass


class ForkedProcess:
    """The ``Popen`` face jupyter_client's provisioner expects, for a kernel that is the template's child."""

    stdin = stdout = stderr = None

    def __init__(self, template: Template, pid: int) -> None:
        self.template = template
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._process = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.template.status(self.pid)
        if self.returncode is None and not self.template.alive:
            # the template that would report it is gone: the kernel was handed to init, which reaps it
            if self._process is None or not self._process.is_running() or \
                    self._process.status() == psutil.STATUS_ZOMBIE:
                self.returncode = self.template.status(self.pid)
                if self.returncode is None:
                    self.returncode = 1  # exited; its code went to whoever reaped it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never signal a pid that may already belong to someone else
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class WarmProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches a kernel by forking the warm template; everything after the launch is LocalProvisioner's."""

    template: Template | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if self.template is None:
            raise TemplateError("no warm template was given to this provisioner")
        if cmd[:2] != kernel_boot.kernel_argv()[:2]:
            raise TemplateError(f"the warm template only runs the sandbox's kernel, not {cmd[:2]!r}")
        stderr = kwargs.get("stderr")
        cwd = str(kwargs.get("cwd") or os.getcwd())
        pid = await self.template.fork(argv=cmd[2:], env=dict(kwargs.get("env") or os.environ), cwd=cwd,
                                       log=getattr(stderr, "name", None) if stderr is not None else None)
        self.process = ForkedProcess(self.template, pid)
        self.pid = self.pgid = pid  # the child made itself a process group leader
        self.cwd = cwd
        return self.connection_info

    async def wait(self) -> int | None:
        ret = 0
        if self.process:
            while self.process.poll() is None:
                await asyncio.sleep(0.02)
            ret = self.process.returncode
            self.process = None
        return ret


class WarmStart:
    """A sandbox's warm template: started in the background, replaced when it dies, given up when it cannot work."""

    def __init__(self, *, env: dict[str, str], folder: Path, cwd: Path) -> None:
        self.env = _template_env(env)
        self.folder = folder
        self.cwd = cwd
        self.cold_reason: str | None = None  # set once kernels must start cold, and why
        self.templates_started = 0
        read, write = os.pipe()  # both ends close on exec: the template is given the read end explicitly
        self._lifeline_r, self._lifeline_w = read, write
        self._template: Template | None = None
        self._starting: asyncio.Task[Template] | None = None
        self._quick_deaths = 0
        self.log = folder / "template.log"

    def __repr__(self) -> str:
        state = self.cold_reason or (f"template pid {self._template.pid}" if self._template else "not started")
        return f"WarmStart({state})"

    def prepare(self) -> None:
        """Start a template in the background, if none is running or starting."""
        if self.cold_reason is None and (self._template is None or not self._template.alive):
            if self._starting is None or self._starting.done():
                self._starting = asyncio.create_task(self._spawn())

    async def template(self) -> Template | None:
        """A live template to fork from, or None when kernels must start cold (``cold_reason`` says why)."""
        while self.cold_reason is None:
            if self._template is not None and self._template.alive:
                return self._template
            self.prepare()
            assert self._starting is not None
            try:
                return await asyncio.shield(self._starting)
            except TemplateError:
                continue  # _spawn counted it; try again or give up
        return None

    async def _spawn(self) -> Template:
        old = self._template
        if old is not None:
            self._template = None
            quick = time.monotonic() - old.started < QUICK
            self._quick_deaths = self._quick_deaths + 1 if quick else 0
            await old.close()
        log = self.log
        try:
            if self._quick_deaths >= MAX_QUICK_DEATHS:
                raise TemplateError(f"{self._quick_deaths} warm templates in a row died soon after starting")
            template = await Template.spawn(env=self.env, lifeline=self._lifeline_r, cwd=self.cwd, log=log)
        except TemplateError as exc:
            self._quick_deaths += 1
            if self._quick_deaths >= MAX_QUICK_DEATHS:
                self.cold_reason = f"the warm template failed, so kernels start cold: {exc}"
            raise
        self.templates_started += 1
        self._template = template
        return template

    async def close(self) -> None:
        """Stop the template and end the lifeline, so a forked kernel that somehow outlived its sandbox ends."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            try:
                await self._starting
            except (asyncio.CancelledError, Exception):
                pass
        if self._template is not None:
            await self._template.close()
            self._template = None
        self.log.unlink(missing_ok=True)
        for fd in (self._lifeline_r, self._lifeline_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._lifeline_r = self._lifeline_w = -1


def _template_env(kernel_env: dict[str, str]) -> dict[str, str]:
    """The template imports with the kernels' environment, but with BLAS held at one thread (no threads to fork)."""
    env = {k: v for k, v in kernel_env.items() if k != kernel_boot.ENV_VAR}
    for name in kernel_boot._THREAD_POOLS:
        env[name] = "1"
    return env
