"""How a sandbox kernel is launched, and the code it runs first.

Run as a script (``python kernel_boot.py -f CONNECTION_FILE``) this file is the kernel launcher:
it joins the kernel's cgroup, sets rlimits on itself, then runs ipykernel (or execs it inside
bubblewrap when that is configured), so the limits hold for the kernel and everything it starts,
and a guard ends the kernel's process tree if the server is killed. It uses
the standard library only, because it runs before the kernel and outside the tutor_nb package.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ENV_VAR = "TUTOR_NB_KERNEL_LIMITS"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
HISTORY = "--HistoryManager.hist_file=:memory:"  # no history file shared between kernels
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
_THREAD_POOLS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def kernel_argv() -> list[str]:
    """The kernelspec argv: this file run by the server's own interpreter."""
    return [sys.executable, str(Path(__file__).resolve()), "-f", "{connection_file}"]


def kernel_env(*, limits: dict, private_dir: Path) -> dict[str, str]:
    """The kernel's environment: the server's, minus anything that looks like a secret."""
    env = {k: v for k, v in os.environ.items() if not any(m in k.upper() for m in _SECRET_MARKERS)}
    # PYTEST_* would make ipykernel stop capturing C-level output when the server runs under pytest
    env = {k: v for k, v in env.items() if not k.startswith(("OPENAI_", "JPY_", "TUTOR_NB_", "PYTEST_"))}
    env["MPLBACKEND"] = INLINE_BACKEND
    env["IPYTHONDIR"] = str(private_dir / "ipython")  # no user profile or startup scripts
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    threads = str(min(os.cpu_count() or 1, 4))  # big BLAS pools would eat the memory and process limits
    for name in _THREAD_POOLS:
        env.setdefault(name, threads)
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


def _guard(server_pid: int, lifeline: int | None = None) -> None:
    """End the kernel and everything model code started in it once the server that launched it is gone.

    ipykernel's own parent check ends the kernel alone; the processes model code started would be
    orphaned and run on. They are stopped first so none can fork while the others are killed.
    A kernel forked from the warm template is not the server's child: it watches ``lifeline``
    instead, a pipe whose only writer is the server, which reads as ended once the server is gone."""
    import signal
    import time

    if lifeline is not None:
        try:
            while os.read(lifeline, 1):
                pass
        except OSError:
            pass
    else:
        while os.getppid() == server_pid:
            time.sleep(0.5)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    os._exit(1)


def start_guard(server_pid: int, lifeline: int | None = None) -> None:
    """Run ``_guard`` on a daemon thread of this (the kernel's) process."""
    import threading

    threading.Thread(target=_guard, args=(server_pid, lifeline), name="tutor_nb-guard", daemon=True).start()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (kept across exec); a no-op elsewhere."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> None:
    limits = json.loads(os.environ.pop(ENV_VAR, "{}"))
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
    if server_pid:  # its first check is immediate, so a server already gone ends this kernel at once
        start_guard(server_pid)
    _apply_limits(limits)
    # run ipykernel in this process, so the guard thread lives in the kernel; as ipykernel_launcher does,
    # take the script's folder off sys.path (ipykernel puts the working folder back)
    del sys.path[0]
    run_ipykernel(argv)


def run_ipykernel(argv: list[str]) -> None:
    """Run ipykernel in this process with the sandbox's arguments (cold launch and warm fork alike)."""
    sys.argv = [sys.argv[0], *argv, HISTORY]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
