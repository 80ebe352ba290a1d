"""How a sandbox kernel is launched, and the code it runs first.

Run as a script (``python kernel_boot.py -f CONNECTION_FILE``) this file is the kernel launcher:
it joins the kernel's cgroup and sets rlimits on itself; then it either execs ipykernel inside
bubblewrap, or forks: the parent stays as the kernel's supervisor (the child subreaper, which ends
the kernel's whole tree when the kernel exits or the server is gone) and the child runs ipykernel,
after dropping to an unprivileged user of its own when the server runs as root. It uses the
standard library only, because it runs before the kernel and outside the tutor_nb package.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

ENV_VAR = "TUTOR_NB_KERNEL_LIMITS"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
HISTORY = "--HistoryManager.hist_file=:memory:"  # no history file shared between kernels
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
# model code runs below the server's priority: a kernel that spins (or many that start at once) cannot
# starve the server that serves every learner and must stay able to interrupt it
KERNEL_NICE = 10
_THREAD_POOLS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def kernel_argv() -> list[str]:
    """The kernelspec argv: this file run by the server's own interpreter."""
    return [sys.executable, str(Path(__file__).resolve()), "-f", "{connection_file}"]


def kernel_env(*, limits: dict, private_dir: Path, home: Path | None = None) -> dict[str, str]:
    """The kernel's environment: the server's, minus anything that looks like a secret.

    ``home`` (for a kernel with a user of its own) becomes its HOME and holds its caches."""
    env = {k: v for k, v in os.environ.items() if not any(m in k.upper() for m in _SECRET_MARKERS)}
    # PYTEST_* would make ipykernel stop capturing C-level output when the server runs under pytest
    env = {k: v for k, v in env.items() if not k.startswith(("OPENAI_", "JPY_", "TUTOR_NB_", "PYTEST_"))}
    env["MPLBACKEND"] = INLINE_BACKEND
    env["IPYTHONDIR"] = str(private_dir / "ipython")  # no user profile or startup scripts
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    if home is not None:
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), MPLCONFIGDIR=str(home / ".matplotlib"))
        env.pop("XDG_RUNTIME_DIR", None)
    threads = str(min(os.cpu_count() or 1, 4))  # big BLAS pools would eat the memory and process limits
    for name in _THREAD_POOLS:
        env.setdefault(name, threads)
    # OpenBLAS's idle threads spin for about 2**28 cycles before they sleep, each time they start or finish
    # work: with many kernels on a few cores that spinning takes the CPU from the kernels that have work (it
    # was half of a forked kernel's start here); at 2**4 they sleep at once and wake when work comes
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    env[ENV_VAR] = json.dumps(limits)
    return env


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def bwrap_prefix(bwrap: str, *, writable: Path) -> list[str]:
    """bubblewrap arguments: read-only system, private /tmp, no network, home hidden, ``writable`` writable."""
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    home = Path.home()
    if home != Path("/") and home.is_dir():
        args += ["--tmpfs", str(home)]
    needed = {Path(sys.prefix), Path(sys.base_prefix), *(Path(p) for p in sys.path if p)}
    for path in sorted(needed):
        if path.exists() and (path.is_relative_to(home) or path.is_relative_to("/tmp")):
            args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(writable), str(writable)]
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox"]
    # inside a pid namespace the kernel's parent is pid 1, which ipykernel takes for "orphaned"
    args += ["--unsetenv", "JPY_PARENT_PID", "--die-with-parent", "--"]
    return args


def setup_code(*, output_cap: int, preload: tuple[str, ...] = ("numpy", "matplotlib.pyplot")) -> str:
    """Code a fresh kernel runs once, silently: cap printed output, warm the usual imports."""
    return f"""
def _tnb_setup(cap, preload):
    import importlib, sys
    seen = [0]
    def reset(*_):
        seen[0] = 0
    get_ipython().events.register("pre_execute", reset)
    def capped(write):
        def capped_write(text):
            before = seen[0]
            seen[0] = before + len(text)
            if before >= cap:
                return len(text)
            if before + len(text) > cap:
                write(text[: cap - before])
                write("\\n[output truncated by the sandbox]\\n")
                return len(text)
            return write(text)
        return capped_write
    for stream in (sys.stdout, sys.stderr):
        stream.write = capped(stream.write)
    # a forked child that collects garbage writes to every object's page and so copies the whole heap;
    # frozen objects are left alone, so forks (multiprocessing, a fork bomb) cost far less memory
    import gc, os
    os.register_at_fork(before=gc.freeze, after_in_parent=gc.unfreeze)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    # the first value a cell shows pays for the formatters' lazy set-up (about 0.1 s); pay it now
    get_ipython().display_formatter.format([0, 1])
    # model code often picks a non-interactive backend (matplotlib.use("Agg")), under which figures are never
    # shown; after each cell, show what is still open and close it, as the inline backend does with its own
    import warnings
    warnings.filterwarnings("ignore", message=r"FigureCanvas\\w* is non-interactive, and thus cannot be shown")
    def show_open_figures(*_):
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None or not pyplot.get_fignums() or pyplot.get_backend() == {INLINE_BACKEND!r}:
            return
        import io
        from IPython.display import Image, display
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            png = io.BytesIO()
            try:
                figure.savefig(png, format="png", bbox_inches="tight")
                display(Image(png.getvalue(), format="png"))
            except Exception:
                get_ipython().showtraceback()
            finally:
                pyplot.close(figure)
    get_ipython().events.register("post_execute", show_open_figures)
_tnb_setup({output_cap!r}, {preload!r})
del _tnb_setup
"""


def chdir_code(folder: Path) -> str:
    return f"import os as _tnb_os\n_tnb_os.chdir({str(folder)!r})\ndel _tnb_os\n"


def _apply_limits(limits: dict) -> None:
    import resource

    os.nice(KERNEL_NICE)  # here, so that kernels under bubblewrap (which exec from here) get it too
    for procs_file in limits.get("cgroup_procs", []):
        with open(procs_file, "w") as f:
            f.write(str(os.getpid()))
    mb = 1024 * 1024
    if limits.get("memory_mb"):
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb,) * 2)
    if limits.get("file_mb"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("nproc"):
        # counts every task of this user, so it sits on top of what the user already runs; root ignores it
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"] + _user_tasks(),) * 2)


def _user_tasks() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                pass
    return count


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, read from /proc (the standard library has no process tree)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_of(uid: int) -> list[int]:
    """Every process running as ``uid`` (a kernel's own user: whatever it started, however detached)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def end_tree(root: int, uid: int | None = None) -> int:
    """Stop, then kill, every process below ``root`` (and, given ``uid``, every process of that user).

    They are stopped first, until a scan finds no new one, so none can fork while the others are killed."""
    import signal

    me = os.getpid()
    stopped: set[int] = set()
    for _ in range(50):
        found = set(_descendants(root)) | (set(processes_of(uid)) if uid is not None else set())
        fresh = found - stopped - {me}
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        stopped |= fresh
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(stopped)


PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> bool:
    try:
        return _libc().prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (kept across exec); a no-op elsewhere."""
    import signal

    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def make_undumpable() -> bool:
    """Processes of the same user can then read neither this process's environment nor its memory."""
    return _prctl(PR_SET_DUMPABLE, 0)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _isolate(view: list[list], unshare_net: bool) -> None:
    """Give this process (root, before it drops to the kernel's user) a file system view of its own.

    ``view`` lists folders that other users cannot enter (``/root``, a private data folder) with the paths
    below them the kernel needs (its Python, the sandbox root). Each such folder is covered with an empty
    tmpfs in which only those paths are bound, so the kernel reaches them and nothing else there. With
    ``unshare_net`` the kernel also gets a network of its own with no interface up: nothing to reach."""
    import tempfile

    libc = _libc()
    clone_newns, clone_newnet = 0x00020000, 0x40000000
    ms_bind, ms_rec, ms_private, ms_nosuid, ms_nodev = 4096, 16384, 1 << 18, 2, 4
    _check(libc.unshare(clone_newns | (clone_newnet if unshare_net else 0)), "unshare")
    _check(libc.mount(None, b"/", None, ms_rec | ms_private, None), "mount --make-rprivate /")
    cwd = os.getcwd()
    for closed, needed in view:
        staging = tempfile.mkdtemp(prefix="tnb-view-")
        _check(libc.mount(closed.encode(), staging.encode(), None, ms_bind | ms_rec, None), f"bind {closed}")
        _check(libc.mount(b"tmpfs", closed.encode(), b"tmpfs", ms_nosuid | ms_nodev, b"mode=0711,size=64k"),
               f"tmpfs on {closed}")
        for path in needed:
            source = os.path.join(staging, os.path.relpath(path, closed))
            _mkdirs(path if os.path.isdir(source) else os.path.dirname(path))
            if not os.path.isdir(source):
                open(path, "a").close()
            _check(libc.mount(source.encode(), path.encode(), None, ms_bind | ms_rec, None), f"bind {path}")
        _check(libc.umount2(staging.encode(), 2), f"umount {staging}")  # MNT_DETACH
        os.rmdir(staging)
    os.chdir(cwd)  # through the new mounts


def _mkdirs(path: str) -> None:
    """Like os.makedirs, but every folder it makes is 0711: passed through, never listed."""
    if not os.path.isdir(path):
        _mkdirs(os.path.dirname(path))
        os.mkdir(path, 0o711)


def _become(uid: int) -> None:
    """Drop every privilege for good: the kernel's own user and group, no supplementary groups."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _reap(child: int) -> int | None:
    """Collect every exited child (orphans come here too); the kernel's wait status once it has exited."""
    status = None
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = code


def _supervise(child: int, server_pid: int | None, uid: int | None, lifeline: int | None = None) -> None:
    """Be the kernel's parent for its whole life, then end its tree and exit as it did.

    As the child subreaper it adopts whatever the kernel's code detaches (setsid, double forks). Once the
    kernel exits or the server is gone it ends the whole tree, and exits with the kernel's own status
    (so the server reads the kernel's exit code or signal)."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel (sent to the process group)
    watched = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    status = None
    while status is None:
        info = signal.sigtimedwait(watched, 0.2)
        if info is not None and info.si_signo != signal.SIGCHLD:
            try:
                os.kill(child, signal.SIGTERM)  # a polite shutdown: the kernel goes first, then the rest
            except OSError:
                pass
        status = _reap(child)
        if status is None and _server_gone(server_pid, lifeline):
            break
    end_tree(os.getpid(), uid)
    deadline = time.monotonic() + 2.0
    while _descendants(os.getpid()) and time.monotonic() < deadline:
        status = _reap(child) if status is None else (_reap(child) or status)
        signal.sigtimedwait({signal.SIGCHLD}, 0.05)
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else 1)


def _server_gone(server_pid: int | None, lifeline: int | None) -> bool:
    """The lifeline reads as ended (its only writer, the server, is gone), or else the parent changed."""
    if lifeline is not None:
        import select

        return bool(select.select([lifeline], [], [], 0)[0])
    return bool(server_pid) and os.getppid() != server_pid


def _connection_file(argv: list[str]) -> str | None:
    for flag, value in zip(argv, argv[1:]):
        if flag == "-f":
            return value
    return None


def main(argv: list[str]) -> None:
    limits = json.loads(os.environ.pop(ENV_VAR, "{}"))
    os.environ.pop("JPY_PARENT_PID", None)  # ipykernel's own parent poller would end the kernel alone
    server_pid = limits.get("server_pid")
    args = [*argv, HISTORY]
    if limits.get("wrap"):
        # bubblewrap's --die-with-parent and its pid namespace end the kernel's whole tree with the
        # server; until bubblewrap has set that up, the kernel dies with its parent from here (set
        # first, then checked, so a server that dies in between is not missed)
        _die_with_parent()
        if server_pid and os.getppid() != server_pid:
            sys.exit("the server that launched this kernel has exited")
        _apply_limits(limits)
        cmd = [*limits["wrap"], sys.executable, "-m", "ipykernel_launcher", *args]
        os.execv(cmd[0], cmd)
    if server_pid and os.getppid() != server_pid:
        sys.exit("the server that launched this kernel has exited")
    # as ipykernel_launcher does, take the script's folder off sys.path (ipykernel puts the working folder back)
    del sys.path[0]
    launch(limits, argv)


def launch(limits: dict, argv: list[str], *, lifeline: int | None = None,
           prepare: Callable[[], None] | None = None) -> None:
    """Become the kernel (a cold launcher, or a fork of the warm template); never returns.

    This process applies the limits and, for a kernel with a user of its own, gives it its view of the
    file system, then forks: it stays as the supervisor (see ``_supervise``), and the child drops to the
    kernel's user, runs ``prepare`` and then ipykernel. ``lifeline`` is a pipe only the server writes to,
    watched instead of the parent (a forked kernel's parent is the template)."""
    server_pid = limits.get("server_pid")
    uid = limits.get("uid")
    _apply_limits({k: v for k, v in limits.items() if k != "nproc"} if uid is not None else limits)
    if uid is not None:
        _isolate(limits.get("view", []), bool(limits.get("unshare_net")))
        connection = _connection_file(argv)
        if connection:
            os.chown(os.path.dirname(connection), uid, uid)
            os.chown(connection, uid, uid)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child:
        _supervise(child, server_pid, uid, lifeline)
    if uid is not None:
        _become(uid)
        if limits.get("nproc"):
            import resource

            resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)  # this user runs nothing else
    if limits.get("probe"):
        import ipykernel  # noqa: F401  (the kernel's Python is readable from here)

        os.stat(limits["probe"])
        os._exit(0)
    if prepare is not None:
        prepare()
    run_ipykernel(argv)


def run_ipykernel(argv: list[str]) -> None:
    """Run ipykernel in this process with the sandbox's arguments (cold launch and warm fork alike)."""
    sys.argv = [sys.argv[0], *argv, HISTORY]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
