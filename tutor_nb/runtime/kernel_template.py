"""The warm kernel template: a process that has imported what kernels need and forks a kernel on request.

Starting a kernel costs a second of imports (IPython, ipykernel, numpy, pandas, matplotlib); a fork of a
process that has made them costs milliseconds, and the imported pages stay shared copy-on-write
between every kernel forked from it. The server runs this file as a script
(``python kernel_template.py LIFELINE_FD``) with the kernels' environment, and speaks JSON lines with it:

- the server writes a request on stdin: ``{"argv": [...], "env": {...}, "cwd": ..., "log": ...}``
  (``argv`` as ``kernel_boot`` would get it, ``env`` the kernel's whole environment);
- the template answers ``{"ready": PID}`` once warm, ``{"forked": PID}`` or ``{"refused": WHY}`` per
  request, and ``{"exited": PID, "status": CODE}`` (``Popen.returncode`` style) when a kernel ends.

Nothing that does not survive a fork exists here when it forks: no thread (BLAS pools are held at one
thread until the child sets the kernel's size), no ZMQ context, no socket; the template checks before each
fork and refuses otherwise. The child then does what ``kernel_boot`` does for a cold kernel, with
``kernel_boot.launch``: the limits, the kernel's own user and view where the server is root, the
supervisor, then ipykernel. The supervisor watches the lifeline, a pipe only the server writes to,
since its parent is this template: a kernel outlives a template that dies, and ends with the server. Standard library only here, as in ``kernel_boot``.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import traceback

import kernel_boot  # the sibling file: this folder is sys.path[0] while the script starts

_SET_BY_IMPORTS: dict[str, str] = {}  # environment variables the imports set (debugpy's), as a cold kernel has them

PRELOAD = (  # what a started kernel has imported, and numpy, pandas and matplotlib for the code it will run
    "IPython", "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.history", "IPython.core.oinspect",
    "IPython.core.pylabtools", "IPython.core.ultratb", "IPython.extensions.storemagic", "ipykernel.kernelapp",
    "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.iostream", "ipykernel.debugger", "jupyter_client.session",
    "sqlite3", "tornado.platform.asyncio", "tornado.queues", "tornado.locks", "http.server", "encodings.idna",
    "numpy", "pandas", "matplotlib.pyplot", "matplotlib.font_manager", "matplotlib.backends.backend_agg",
    # not matplotlib_inline (its package imports the inline backend, which hooks figures into the shell
    # running at the time): the kernel imports it with its first figure
)


def warm() -> list[str]:
    """Import what kernels need, then freeze the heap so no child's garbage collector copies its pages."""
    before = dict(os.environ)
    missing = []
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception as exc:  # a kernel without pandas still works; it just imports nothing
            missing.append(f"{name}: {exc!r}")
    _SET_BY_IMPORTS.update({k: v for k, v in os.environ.items() if k not in before})
    gc.collect()
    gc.freeze()
    return missing


def fork_hazards() -> list[str]:
    """What would not survive a fork here: other threads, open sockets, a ZMQ context."""
    hazards = []
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        hazards.append(f"{threads} threads")
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                hazards.append(f"socket on fd {fd}")
        except OSError:
            pass  # the listing's own descriptor, closed already
    zmq = sys.modules.get("zmq")
    if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
        hazards.append("a ZMQ context")
    return hazards


def _send(message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data):]


def _set_blas_threads(count: int) -> None:
    """Grow the BLAS pool, held at one thread in the template, to the kernel's size."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            libraries = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads", "openblas_set_num_threads64_"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(count)
                break


def _reseed() -> None:
    """Children of one template share its random state; numpy's global generator is seeded afresh here
    (Python's ``random`` does it at fork itself)."""
    random = sys.modules.get("numpy.random")
    if random is not None:
        random.seed()


def _redirect(log: str | None, keep: int) -> None:
    """stdin and stdout to /dev/null, stderr to the kernel's log, every other descriptor but ``keep`` closed."""
    devnull = os.open(os.devnull, os.O_RDWR)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log else devnull
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(err, 2)
    for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


def become_kernel(request: dict, lifeline: int) -> None:
    """In the forked child: prepare as kernel_boot does for a cold kernel, then run ipykernel. Never returns."""
    code = 1
    try:
        os.setsid()  # its own process group, so an interrupt reaches the kernel and what it started
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _redirect(request.get("log"), keep=lifeline)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({**_SET_BY_IMPORTS, **request["env"]})
        limits = json.loads(os.environ.pop(kernel_boot.ENV_VAR, "{}"))
        os.environ.pop("JPY_PARENT_PID", None)  # ipykernel's own parent poller would end the kernel alone

        def prepare() -> None:  # in the kernel itself, after the supervisor forked it
            _set_blas_threads(int(os.environ.get("OPENBLAS_NUM_THREADS") or 1))
            _reseed()

        kernel_boot.launch(limits, request["argv"], lifeline=lifeline, prepare=prepare)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _handle(line: bytes, lifeline: int) -> None:
    try:
        request = json.loads(line)
        if not isinstance(request, dict) or not isinstance(request.get("argv"), list):
            raise ValueError("a request needs argv, env and cwd")
    except ValueError as exc:
        _send({"refused": f"bad request: {exc}"})
        return
    hazards = fork_hazards()
    if hazards:
        _send({"refused": "the template cannot fork safely (" + ", ".join(hazards) + ")"})
        return
    pid = os.fork()
    if pid == 0:
        become_kernel(request, lifeline)
    _send({"forked": pid})


def serve(lifeline: int) -> None:
    """Answer requests until the server closes stdin or goes away (the lifeline ends)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pending = b""
    while True:
        ready, _, _ = select.select([0, lifeline, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap()
        if lifeline in ready:
            return  # nobody writes to it: readable means the server is gone
        if 0 in ready:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                _handle(line, lifeline)


def main(argv: list[str]) -> None:
    lifeline = int(argv[0])
    del sys.path[0]  # as kernel_boot does: the kernels' sys.path does not hold this folder
    missing = warm()
    hazards = fork_hazards()
    if hazards:
        sys.exit("the template cannot fork safely after its imports: " + ", ".join(hazards))
    _send({"ready": os.getpid(), "missing": missing})
    serve(lifeline)


if __name__ == "__main__":
    main(sys.argv[1:])
