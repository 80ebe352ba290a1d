"""Kernels forked from the warm template: like cold ones, forked safely, and a dead template is replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from test_sandbox import Running, running_sandbox
from tutor_nb.runtime import kernel_boot
from tutor_nb.runtime.sandbox import warm

PROBE = """
import json, os, sys, ctypes, threading
import numpy as np, matplotlib
lib = [line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line.lower()]
blas = None
for name in ('scipy_openblas_get_num_threads64_', 'openblas_get_num_threads'):
    if lib and hasattr(ctypes.CDLL(lib[0]), name):
        blas = getattr(ctypes.CDLL(lib[0]), name)()
        break
import resource
supervisor = os.getppid()  # the kernel's parent is its supervisor (kernel_boot.launch); whose parent is asked
print(json.dumps({
    "ppid": int(open(f'/proc/{supervisor}/stat').read().rsplit(')', 1)[1].split()[1]), "cwd": os.getcwd(), "sys_path": sys.path, "argv": sys.argv[1:],
    "env": sorted(os.environ), "blas_threads": blas, "random": float(np.random.rand()),
    "backend": matplotlib.get_backend(), "limit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
    "limit_fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0], "pgid_is_pid": os.getpgid(0) == os.getpid(),
    "modules_ok": all(m in sys.modules for m in ("IPython", "ipykernel", "numpy")),
}))
"""


def probe(sb: Running, thread: str) -> dict:
    result = sb.execute(thread, PROBE)
    assert result.status == "ok", result.logs
    return json.loads(result.logs)


def template_pid(sb: Running) -> int:
    warm_start = sb.sandbox.launcher.warm
    assert warm_start is not None and warm_start._template is not None
    return warm_start._template.pid


def test_a_forked_kernel_is_set_up_like_a_cold_one(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "fork", pool_size=0) as forked, \
            running_sandbox(tmp_path / "cold", pool_size=0, fork=False) as cold:
        one, two = probe(forked, "one"), probe(forked, "two")
        reference = probe(cold, "one")
        assert "start=fork" in repr(forked.sandbox) and "start=cold: asked for" in repr(cold.sandbox)
        assert one["ppid"] == template_pid(forked) != os.getpid()  # forked from the template ...
        assert reference["ppid"] == os.getpid()  # ... where a cold kernel is the server's child
        assert one["random"] != two["random"]  # numpy's global generator is not shared between kernels
        for key in ("blas_threads", "backend", "limit_as", "limit_fsize", "pgid_is_pid", "modules_ok"):
            assert one[key] == reference[key], key
        assert [a.rsplit("/", 1)[-1] for a in one["argv"]] == [a.rsplit("/", 1)[-1] for a in reference["argv"]]
        assert one["blas_threads"] == min(os.cpu_count() or 1, 4)
        assert one["cwd"] == reference["cwd"] == "/mnt/data"  # the thread's folder, as the logs show it
        cold_path = [p.replace(str(cold.sandbox.root), "ROOT") for p in reference["sys_path"]]
        assert [p.replace(str(forked.sandbox.root), "ROOT") for p in one["sys_path"]] == cold_path
        # the same environment: neither has the parent pid jupyter_client's launcher adds for ipykernel's
        # own parent check (the supervisor watches the server instead)
        assert set(reference["env"]) - set(one["env"]) == set()
        assert set(one["env"]) - set(reference["env"]) == set()


def test_the_template_holds_no_thread_socket_or_zmq_context_when_it_forks(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, pool_size=1) as sb:
        sb.wait_for_pool()
        template = psutil.Process(template_pid(sb))
        assert template.num_threads() == 1
        links = [os.readlink(f"/proc/{template.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{template.pid}/fd")]
        assert not [link for link in links if link.startswith("socket:")], links
    # and the template's own check refuses a fork when one is there
    script = (f"import sys; sys.path.insert(0, {str(Path(kernel_boot.__file__).parent)!r})\n"
              "import kernel_template, socket, threading, time\n"
              "clean = kernel_template.fork_hazards()\n"
              "s = socket.socket()\n"
              "t = threading.Thread(target=time.sleep, args=(5,), daemon=True); t.start()\n"
              "print(clean, kernel_template.fork_hazards())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    clean, dirty = out.strip().split("] [")
    assert clean == "[" and "2 threads" in dirty and "socket on fd" in dirty


def test_a_killed_template_is_replaced_and_its_kernels_live_on(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, pool_size=0) as sb:
        assert sb.execute("before", "kept = 41").status == "ok"
        old = template_pid(sb)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while sb.sandbox.launcher.warm._template.alive:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            sb.run(__import__("asyncio").sleep(0.05))
        assert sb.execute("before", "kept + 1").logs == "42\n"  # the kernel outlived its template
        after = probe(sb, "after")  # a new thread's kernel comes from a new template
        assert after["ppid"] == template_pid(sb) != old
        assert sb.sandbox.launcher.warm.templates_started == 2  # type: ignore[union-attr]
        assert "start=fork" in repr(sb.sandbox)


def test_templates_that_keep_dying_give_way_to_cold_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken_template.py"
    broken.write_text("import sys\nsys.exit('this template cannot import what kernels need')\n")
    monkeypatch.setattr(warm, "SCRIPT", broken)
    with running_sandbox(tmp_path / "root", pool_size=0) as sb:
        result = sb.execute("t", "import os\nopen(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1]")
        assert result.status == "ok" and result.logs == f"'{os.getpid()}'\n"  # a cold kernel's supervisor: the server's child
        assert "start=cold: the warm template failed" in repr(sb.sandbox)
        assert "cannot import what kernels need" in repr(sb.sandbox)


BUSY_CHECK = """
import json, os, time, resource
import numpy as np
a = np.ones((400, 400))
for _ in range(3):
    a @ a  # large enough to wake the BLAS threads, which then wait for more work
before = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(0.5)
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
print(json.dumps({"nice": os.nice(0), "cpu_while_sleeping": cpu,
                  "blas_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}))
"""


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "cold"])
def test_kernels_run_below_the_server_and_their_blas_threads_sleep_when_idle(tmp_path: Path, fork: bool) -> None:
    """Many kernels on a few cores: BLAS threads spinning for work (about 0.1 s of a core each time) and
    kernels at the server's priority took the CPU the server and the other kernels needed."""
    with running_sandbox(tmp_path, pool_size=0, fork=fork) as sb:
        result = sb.execute("t", BUSY_CHECK)
        assert result.status == "ok", result.logs
        seen = json.loads(result.logs)
    assert seen["nice"] == os.nice(0) + kernel_boot.KERNEL_NICE
    assert seen["blas_timeout"] == "4"
    # half a second asleep after some work: spinning threads would use about 0.1 s each meanwhile
    assert seen["cpu_while_sleeping"] < 0.03, seen


def test_the_kernels_of_a_sandbox_share_one_zmq_context_closed_with_it(tmp_path: Path) -> None:
    """One context (one I/O thread) for every kernel, retrying a not-yet-listening kernel within 10 ms."""
    import zmq

    with running_sandbox(tmp_path, pool_size=0) as sb:
        for thread in ("a", "b"):
            assert sb.execute(thread, "1").status == "ok"
        kernels = list(sb.sandbox._kernels.values())
        context = sb.sandbox.launcher.context
        assert len(kernels) == 2 and all(k.kc.context is context and k.km.context is context for k in kernels)
        assert context.getsockopt(zmq.RECONNECT_IVL) <= 10
    assert context.closed
