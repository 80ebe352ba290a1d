"""One kernel's life: launched (forked from the warm template, or cold; as a user of its own when the server
is root, else under bubblewrap where it works; in a cgroup where they work), prepared, interrupted, retired."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelClient, AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import kernel_boot, limits

from . import warm

SPEC_NAME = "tutor-nb-sandbox"
_USERS_WORK: dict[bool, bool] = {}  # with/without a network namespace: kernel users probed and working here
POLL = 0.2  # seconds between liveness checks while the kernel is quiet
KERNEL_THREADS = 32  # tasks the kernel itself needs (its threads) on top of max_processes
START_TIMEOUT = 60.0
# ZMQ retries a connection the kernel is not listening for yet every 100 to 200 ms, and a forked kernel
# listens about 60 ms after its start: retried every 5 to 10 ms, it is reached when it listens
RECONNECT_MS = 5

#: reaps the kernel's zombie children, which still count against the process limit
REAP_CODE = """
import os as _tnb_os
while True:
    try:
        if _tnb_os.waitpid(-1, _tnb_os.WNOHANG)[0] == 0:
            break
    except ChildProcessError:
        break
del _tnb_os
"""


@dataclass(eq=False)
class Kernel:
    """A running kernel, its private folder and cgroup, and which thread (if any) it serves."""

    km: AsyncKernelManager
    kc: AsyncKernelClient
    folder: Path  # private: connection file, sockets, kernel log
    cgroup: limits.KernelCgroup | None
    sockets: Path | None = None  # set when socket paths had to be shortened
    baseline: set[int] = field(default_factory=set)  # pids of the fresh kernel's tree: never killed
    thread_id: str | None = None
    owner: str | None = None  # the learner whose thread it serves (None: the teacher, or no learners)
    workdir: Path | None = None
    last_used: float = 0.0
    busy: bool = False
    stop_reason: str | None = None
    limit_hits: int = 0
    oom_kills: int = 0
    uid: int | None = None  # the kernel's own user, when the server runs as root

    @property
    def pid(self) -> int | None:
        """The kernel's local process; None for a kernel on a gateway."""
        return self.km.provisioner.process.pid  # type: ignore[union-attr]

    def code_folder(self, workdir: Path) -> str:
        """The thread's folder as the kernel's code sees it (what /mnt/data becomes)."""
        return str(workdir)

    async def stage_in(self, workdir: Path) -> None:
        """Before an execution: make the thread's files available to the kernel (local: they are)."""

    async def stage_out(self, workdir: Path) -> None:
        """After an execution: bring what the code wrote back to the thread's folder (local: it is there)."""

    def log_tail(self) -> str:
        """The end of what the kernel wrote to stderr (why it did not start)."""
        return (self.folder / "kernel.log").read_text(errors="replace")[-2000:]

    async def quiet(self, code: str) -> None:
        """Run housekeeping code silently and wait for it to finish."""
        await self._housekeeping(code, None, check=False)

    async def ask(self, code: str, mime: str | None = None) -> str:
        """Run housekeeping code silently; returns what it printed, or displayed as ``mime``."""
        return await self._housekeeping(code, mime, check=True)

    async def _housekeeping(self, code: str, mime: str | None, *, check: bool) -> str:
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        parts: list[str] = []
        failed: str | None = None
        while loop.time() < deadline:
            try:
                msg = await self.kc.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if not await self.km.is_alive():
                    raise SandboxError("the kernel died while being prepared; try again") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and mime is None:
                parts.append(content.get("text", ""))
            elif kind == "display_data" and mime is not None:
                parts.append(content.get("data", {}).get(mime, ""))
            elif kind == "error":
                failed = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                if failed and check:
                    raise SandboxError(f"the sandbox's own code failed in the kernel ({failed})")
                return "".join(parts)
        raise SandboxError(f"the kernel did not finish preparing within {START_TIMEOUT:g} s; try again")

    async def interrupt(self) -> None:
        try:
            await self.km.interrupt_kernel()
        except Exception:
            pass  # a dead kernel is found by the liveness check

    async def shutdown(self) -> bool:
        """Kill the kernel and remove its folders; False if its cgroup could not be removed yet."""
        try:
            self.kc.stop_channels()
        except Exception:
            pass
        try:
            pid: int | None = self.pid
        except AttributeError:
            pid = None
        if pid is not None:  # first the whole tree (its supervisor adopted what detached), then the kernel
            await asyncio.to_thread(limits.kill_tree, pid)
        try:
            await self.km.shutdown_kernel(now=True)
        except Exception:
            if pid is not None:
                limits.kill_tree(pid)
        removed = self.cgroup is None or await asyncio.to_thread(self.cgroup.remove)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)
        return removed


class KernelLauncher:
    """Starts kernels with the sandbox's limits: rlimits always; as root a user of its own for each kernel
    (with a file system view and a network of its own); otherwise bubblewrap; a cgroup where they work.

    With ``fork`` (the default) a kernel is forked from the warm template (see ``warm``), which makes its
    start a fraction of a cold one and shares the imported pages; under bubblewrap kernels start cold, so
    that each keeps namespaces of its own."""

    def __init__(self, root: Path, *, memory_limit_mb: int | None, max_file_mb: int, max_processes: int,
                 max_log_chars: int, fork: bool = True) -> None:
        self.root = root
        self.private = root / ".kernels"
        self.memory_limit_mb, self.max_file_mb = memory_limit_mb, max_file_mb
        self.max_processes, self.max_log_chars = max_processes, max_log_chars
        self.bwrap: str | None = None  # set by prepare() when bubblewrap works here
        self.cgroups = False  # set by prepare() when per-kernel cgroups can be made here
        self.users: limits.KernelUsers | None = None  # set by prepare() when kernels get users of their own
        self.isolation_problem: str | None = None  # why, as root, they could not
        self._view: list[list] = []  # folders kernels may not enter, with what they need inside
        self._unshare_net = False
        self._ksm: KernelSpecManager | None = None
        self.fork = fork
        self.warm: warm.WarmStart | None = None  # set by prepare() when kernels are forked
        self._cold_reason: str | None = None if fork else "asked for"
        # one ZMQ context (and I/O thread) for every kernel's sockets, instead of two per kernel; closed by
        # close(), so no manager's shutdown that stopped short leaves a context whose term() blocks exit
        self.context = zmq.asyncio.Context()
        self.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)

    @property
    def cold_reason(self) -> str | None:
        """Why kernels start cold, or None when they are forked from the warm template."""
        return self._cold_reason or (self.warm.cold_reason if self.warm is not None else None)

    async def prepare(self) -> None:
        """Probe what isolation works here, and write the kernelspec."""
        self.private.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.private.chmod(0o700)
        await self._kernel_users()
        self.bwrap = None if self.users else await _working_bwrap()
        await asyncio.to_thread(limits.sweep_stale)
        probe = limits.KernelCgroup.create(pids_max=1, memory_bytes=None)
        self.cgroups = probe is not None
        if probe is not None:
            probe.remove()
        self._ksm = self._write_kernelspec()
        if self.fork and self.bwrap:
            # one template inside one bubblewrap would put every kernel in the same namespaces
            self._cold_reason = "with bubblewrap every kernel starts in namespaces of its own"
        elif self.fork:
            self.warm = warm.WarmStart(env=kernel_boot.kernel_env(limits={}, private_dir=self.private),
                                       folder=self.private, cwd=self.root)
            self.warm.prepare()

    async def close(self) -> None:
        """Stop the warm template and close the kernels' ZMQ context (the kernels are retired by then)."""
        if self.warm is not None:
            await self.warm.close()
        self.context.destroy(linger=0)

    def new(self) -> Kernel:
        """A kernel not yet started (its folder and cgroup made); ``boot`` starts it."""
        folder = self.private / uuid.uuid4().hex[:10]
        folder.mkdir(mode=0o700)
        sockets = folder if len(str(folder)) < 80 else Path(tempfile.mkdtemp(prefix="tnb-"))  # socket paths max ~107
        memory = self.memory_limit_mb * 1024 * 1024 if self.memory_limit_mb else None
        cgroup = limits.KernelCgroup.create(self.max_processes + KERNEL_THREADS, memory) if self.cgroups else None
        uid = self.users.allocate() if self.users else None
        if uid is not None:
            os.chown(folder, uid, uid)
            os.chown(sockets, uid, uid)
        km = AsyncKernelManager(kernel_name=SPEC_NAME, kernel_spec_manager=self._ksm, transport="ipc",
                                connection_file=str(sockets / "kernel.json"), context=self.context)
        return Kernel(km=km, kc=km.client(context=self.context), folder=folder, cgroup=cgroup,
                      sockets=None if sockets == folder else sockets, uid=uid)

    async def release(self, kernel: Kernel) -> None:
        """After shutdown: end whatever still runs as the kernel's user, free the user, close its thread's folder."""
        if kernel.uid is not None and self.users is not None:
            await asyncio.to_thread(self.users.release, kernel.uid)
            kernel.uid = None
            if kernel.workdir is not None:
                limits.take_back(kernel.workdir)

    async def boot(self, kernel: Kernel) -> None:
        """Start the kernel process and prepare it; on failure the caller retires it."""
        config = {"server_pid": os.getpid(), "memory_mb": self.memory_limit_mb, "file_mb": self.max_file_mb,
                  "uid": kernel.uid, "view": self._view, "unshare_net": self._unshare_net,
                  "nproc": self.max_processes + KERNEL_THREADS,
                  "cgroup_procs": kernel.cgroup.procs_files if kernel.cgroup else [],
                  "wrap": self._bwrap_args(kernel.folder, kernel.sockets or kernel.folder) if self.bwrap else []}
        own = kernel.folder if kernel.uid is not None else None
        env = kernel_boot.kernel_env(limits=config, private_dir=own or self.private, home=own)
        template = await self.warm.template() if self.warm is not None else None
        if template is not None:
            km = kernel.km
            km.kernel_id = uuid.uuid4().hex
            km.provisioner = warm.WarmProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)
            km.provisioner.template = template
        with open(kernel.folder / "kernel.log", "wb") as log:
            await kernel.km.start_kernel(env=env, cwd=str(self.root), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        kernel.kc = kernel.km.client(context=self.context)
        kernel.kc.start_channels()
        await wait_until_ready(kernel.kc, kernel.km.is_alive, START_TIMEOUT)
        await kernel.quiet(kernel_boot.setup_code(output_cap=self.max_log_chars + 1000))
        kernel.baseline = {kernel.pid, *(p.pid for p in limits.descendants(kernel.pid))}
        if kernel.cgroup is not None:
            kernel.limit_hits, kernel.oom_kills = kernel.cgroup.limit_hits(), kernel.cgroup.oom_kills()

    def _bwrap_args(self, folder: Path, sockets: Path) -> list[str]:
        assert self.bwrap is not None
        args = kernel_boot.bwrap_prefix(self.bwrap, writable=self.root)[:-1]  # drop the final "--"
        hide = ["--tmpfs", str(self.private), "--bind", str(folder), str(folder)]  # other kernels' sockets
        if sockets != folder:
            hide += ["--bind", str(sockets), str(sockets)]
        return [*args, *hide, "--"]

    async def _kernel_users(self) -> None:
        """As root: give each kernel a user of its own, if a probe launched that way runs here."""
        users = limits.KernelUsers.here()
        if users is None:
            return
        needed = [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path} if p]
        needed += [Path(os.path.realpath(sys.executable)).parent, Path(kernel_boot.__file__).parent, self.root]
        view = await asyncio.to_thread(limits.closed_view, needed)
        self.root.chmod(0o711)  # kernels pass through to their folders; they list nothing
        self.private.chmod(0o711)
        for folder in self.root.iterdir():  # left to the users of a server that was killed
            if folder.is_dir() and not folder.is_symlink() and folder != self.private:
                limits.take_back(folder)
        reason = "no reason given"
        for unshare_net in (True, False):  # a network of its own where this machine allows it
            if _USERS_WORK.get(unshare_net):  # probed in this process already: the view makes any root reachable
                self.users, self._view, self._unshare_net = users, view, unshare_net
                return
            uid = users.allocate()
            try:
                config = {"server_pid": os.getpid(), "uid": uid, "view": view, "unshare_net": unshare_net,
                          "probe": str(self.root)}
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, kernel_boot.__file__, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, cwd=str(self.root),
                    env={**os.environ, kernel_boot.ENV_VAR: json.dumps(config)})
                _, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
            finally:
                await asyncio.to_thread(users.release, uid)
            if proc.returncode == 0:
                _USERS_WORK[unshare_net] = True
                self.users, self._view, self._unshare_net = users, view, unshare_net
                return
            reason = (err.decode(errors="replace").strip().splitlines() or [reason])[-1]
        self.root.chmod(0o700)
        self.private.chmod(0o700)
        self.isolation_problem = (f"running as root, but kernels cannot run as users of their own here ({reason}; "
                                  "they need mount namespaces: in Docker, --cap-add SYS_ADMIN, or run the runtime "
                                  "as a user other than root, with bubblewrap)")

    def _write_kernelspec(self) -> KernelSpecManager:
        specs = self.private / "kernelspecs"
        spec_dir = specs / SPEC_NAME
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {"argv": kernel_boot.kernel_argv(), "display_name": "tutor_nb sandbox", "language": "python",
                # with bubblewrap between server and kernel, a signal would reach bwrap, not the kernel
                "interrupt_mode": "message" if self.bwrap else "signal"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        return KernelSpecManager(kernel_dirs=[str(specs)])


async def wait_until_ready(kc: Any, is_alive: Any, timeout: float) -> None:
    """``KernelClient.wait_for_ready`` without its fixed 0.2 s IOPub flush at the end, which is most of a
    forked kernel's start: the sandbox matches every IOPub message to its request, so stale ones do no harm.
    Ready means a kernel_info reply came back and IOPub delivers (a message reached it since)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        kc.kernel_info()
        try:
            reply = await kc.get_shell_msg(timeout=1.0)
        except queue.Empty:
            reply = None
        if reply is not None and reply.get("msg_type") == "kernel_info_reply":  # any: a slow kernel answers late
            try:
                await kc.get_iopub_msg(timeout=0.2)
                return
            except queue.Empty:
                pass  # subscribed too late to see this request's status: ask again
        if not await is_alive():
            raise SandboxError("the kernel exited before it answered; its log says why")
        if loop.time() > deadline:
            raise SandboxError(f"the kernel did not answer within {timeout:g} s")


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
