"""A bad execution costs only that execution: each limit ends with a clear line in the logs and a usable thread."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from test_sandbox import Running, kernel_start, running_sandbox  # noqa: F401 (kernel_start: fork and cold)
from tutor_nb.runtime import kernel_boot, limits

pytestmark = pytest.mark.slow

MB = 1024 * 1024
MEMORY_MB = 1536  # a kernel with numpy and matplotlib loaded already maps about 1 GB
FILE_MB, WORKDIR_MB, PROCESSES, LOG_CHARS = 5, 20, 24, 50_000
USABLE = "the thread runs code again; the server and other threads untouched"  # for the fault report


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory, kernel_start: dict[str, bool]) -> Iterator[Running]:
    with running_sandbox(tmp_path_factory.mktemp("limits"), **kernel_start, timeout=30, memory_limit_mb=MEMORY_MB, max_file_mb=FILE_MB,
                         max_workdir_mb=WORKDIR_MB, max_processes=PROCESSES, max_log_chars=LOG_CHARS) as running:
        yield running


def assert_usable(sb: Running, thread: str) -> None:
    after = sb.execute(thread, "print('still usable')")
    assert (after.status, after.logs) == ("ok", "still usable\n")


def test_ignored_interrupt_restarts_the_kernel(sb: Running, fault_report) -> None:
    sb.execute("deaf", "kept = 1")
    result = sb.execute("deaf", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                        timeout=1.0)
    assert result.status == "timeout"
    assert result.error == "timed out after 1 s; kernel restarted, variables were lost"
    assert "did not stop when interrupted" in result.logs and "variables from earlier executions were lost" in result.logs
    lost = sb.execute("deaf", "kept")
    assert lost.status == "error" and "ignored an interrupt" in lost.logs
    assert_usable(sb, "deaf")
    fault_report("infinite loop that ignores the interrupt", trials=1, outcome=f"{result.status}: {result.error}",
                 nothing_lost=USABLE + "; the logs say earlier variables were lost")


@pytest.mark.parametrize(("code", "error"), [
    ("import os\nos._exit(1)", "kernel exited (exit code 1); variables were lost"),
    ("import ctypes\nctypes.string_at(0)", "kernel crashed (segmentation fault); variables were lost"),
])
def test_a_crashed_kernel_is_replaced(sb: Running, code: str, error: str, fault_report) -> None:
    thread = f"crash{len(code)}"
    sb.execute(thread, "kept = 1")
    result = sb.execute(thread, code)
    assert (result.status, result.error) == ("died", error)
    assert f"The {error.split(';')[0]} while running this code" in result.logs
    assert_usable(sb, thread)
    fault_report(f"kernel crash: {code.splitlines()[-1]}", trials=1, outcome=f"{result.status}: {result.error}",
                 nothing_lost=USABLE + " (a new kernel)")


def test_one_huge_allocation_raises_and_the_kernel_survives(sb: Running, fault_report) -> None:
    sb.execute("alloc", "kept = 'yes'")
    result = sb.execute("alloc", "block = bytearray(8 * 1024**3)")
    assert result.status == "error"
    assert result.error == f"MemoryError: ran out of memory (limit {MEMORY_MB} MB)"
    assert "MemoryError" in result.logs and "variables are kept" in result.logs
    assert sb.execute("alloc", "kept").logs == "'yes'\n"
    fault_report("one 8 GB allocation", trials=1, outcome=f"{result.status}: {result.error}; the kernel survived",
                 nothing_lost="variables kept; " + USABLE)


def test_a_memory_hog_is_stopped_and_the_kernel_restarted(sb: Running, fault_report) -> None:
    sb.execute("hog", "kept = 1")
    result = sb.execute("hog", "hog = []\nwhile True:\n    hog.append(bytearray(32 * 1024**2))")
    assert result.status == "died"
    assert result.error == f"kernel ran out of memory (limit {MEMORY_MB} MB); variables were lost"
    assert "ran out of memory" in result.logs and "restarted" in result.logs
    assert_usable(sb, "hog")
    fault_report("memory bomb (32 MB blocks until the limit)", trials=1, outcome=f"{result.status}: {result.error}",
                 nothing_lost=USABLE + " (a new kernel; the logs say state was lost)")


def test_a_fork_bomb_hits_the_process_limit(sb: Running, fault_report) -> None:
    if not sb.sandbox.cgroups:
        pytest.skip("no writable cgroup here; test_process_flood_without_cgroups covers the fallback")
    sb.execute("bomb", "kept = 'yes'")
    kernel = sb.sandbox._kernels["bomb"]
    result = sb.execute("bomb", "import os\nwhile True:\n    os.fork()", timeout=25)
    assert result.status == "error" and result.error.startswith("BlockingIOError")
    assert f"more than {PROCESSES} processes" in result.logs
    assert sb.execute("bomb", "kept").logs == "'yes'\n"  # only the extra processes were stopped
    assert kernel.cgroup is not None and kernel.cgroup.pids() <= kernel.baseline
    assert_usable(sb, "bomb")
    fault_report("fork bomb (cgroup pids limit)", trials=1, outcome=f"{result.status}: {result.error}; extra "
                 "processes stopped", nothing_lost="variables kept; " + USABLE)


def test_an_output_flood_is_truncated_with_bounded_server_memory(sb: Running, fault_report) -> None:
    server = psutil.Process()
    before = server.memory_info().rss
    result = sb.execute("flood", "for i in range(100_000):\n    print('y' * 999)")  # 100 MB
    grown = server.memory_info().rss - before
    assert result.status == "ok"
    assert result.logs.startswith("y" * 999 + "\n")
    assert "[output truncated: only the first 50,000 characters are kept]" in result.logs
    assert len(result.logs) < LOG_CHARS + 200
    assert grown < 100 * MB, f"server grew by {grown // MB} MB"
    low_level = sb.execute("flood", "import os\nfor _ in range(2000):\n    os.write(1, b'z' * 50_000)")
    assert "output truncated" in low_level.logs and len(low_level.logs) < LOG_CHARS + 200
    assert_usable(sb, "flood")
    fault_report("output flood (100 MB printed, then 100 MB written to fd 1)", trials=2,
                 outcome=f"logs cut at {LOG_CHARS:,} characters with a marker; server memory grew {grown // MB} MB",
                 nothing_lost=USABLE)


def test_a_file_larger_than_the_limit_cannot_be_written(sb: Running, fault_report) -> None:
    result = sb.execute("bigfile", f"open('big.bin', 'wb').write(b'0' * {FILE_MB + 1} * 1024**2)")
    assert result.status == "error" and result.error == "OSError: [Errno 27] File too large"
    assert f"A single file may be at most {FILE_MB} MB." in result.logs
    assert (sb.sandbox.workdir("bigfile") / "big.bin").stat().st_size <= FILE_MB * MB
    assert_usable(sb, "bigfile")
    fault_report(f"a file over the {FILE_MB} MB file-size limit", trials=1, outcome=f"{result.status}: {result.error}",
                 nothing_lost=USABLE)


def test_the_working_folder_cap_removes_what_overflowed(sb: Running, fault_report) -> None:
    workdir = sb.sandbox.workdir("disk")
    (workdir / "mine.txt").write_text("uploaded before")
    result = sb.execute("disk", "for i in range(6):\n    open(f'part{i}.bin', 'wb').write(b'1' * 4 * 1024**2)")
    assert result.status == "error"
    assert result.error == f"working folder over its {WORKDIR_MB} MB cap; new files removed"
    assert f"grew past its {WORKDIR_MB} MB cap; removed new files: part" in result.logs
    assert limits.folder_bytes(limits.snapshot(workdir)) <= WORKDIR_MB * MB
    assert (workdir / "mine.txt").read_text() == "uploaded before"
    assert all(p.exists() for p in result.files)
    assert_usable(sb, "disk")
    fault_report(f"files past the {WORKDIR_MB} MB working-folder cap", trials=1,
                 outcome=f"{result.status}: {result.error}", nothing_lost="the file uploaded before kept; " + USABLE)


def test_a_disk_flood_is_stopped_while_it_runs(sb: Running, fault_report) -> None:
    workdir = sb.sandbox.workdir("flooddisk")
    code = "import itertools, time\nfor i in itertools.count():\n    open(f'f{i}.bin', 'wb').write(b'2' * 1024**2)\n    time.sleep(0.02)"
    result = sb.execute("flooddisk", code)
    assert result.status == "error" and result.error == "working folder cap exceeded"
    assert "so the execution was stopped" in result.logs
    assert limits.folder_bytes(limits.snapshot(workdir)) <= WORKDIR_MB * MB
    assert_usable(sb, "flooddisk")
    fault_report("disk flood while running", trials=1, outcome=f"{result.status}: {result.error}, stopped mid-run",
                 nothing_lost=USABLE)


def test_bubblewrap_keeps_code_inside_when_installed(sb: Running, fault_report) -> None:
    if not sb.sandbox.bwrap:
        pytest.skip("bubblewrap (bwrap) is not installed or cannot make namespaces here")
    marker = Path(tempfile.gettempdir()) / "tnb-host-visible"
    home_marker = Path.home() / "tnb-host-visible"
    result = sb.execute("jail", "import os, socket\n"
                                "try:\n    open('/usr/tnb_probe', 'w')\nexcept OSError as e:\n    print('refused', e.errno)\n"
                                f"open({str(marker)!r}, 'w').write('inside')\n"
                                f"open({str(home_marker)!r}, 'w').write('inside')\n"
                                "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
                                "except OSError as e:\n    print('network', e.errno)\n")
    assert result.status == "ok", result.logs
    assert "refused 30" in result.logs  # EROFS: the system is read-only inside
    assert "network 101" in result.logs  # ENETUNREACH: no network inside
    assert not marker.exists() and not home_marker.exists()  # /tmp and home inside are private and empty
    fault_report("reading and writing outside the working folder (bubblewrap)", trials=3,
                 outcome="system read-only (EROFS), /tmp and home private, no network (ENETUNREACH); "
                         "docs/sandbox.md says what a kernel without bubblewrap does not isolate",
                 nothing_lost="nothing written outside")


def test_process_flood_without_cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_report,
                                       kernel_start: dict[str, bool]) -> None:
    """Where cgroups are not writable (and as root RLIMIT_NPROC is ignored) a watchdog stops the tree."""
    monkeypatch.setattr(limits, "CGROUP_FS", tmp_path / "no-cgroups")
    monkeypatch.setattr(kernel_boot, "find_bwrap", lambda: None)
    with running_sandbox(tmp_path / "root", pool_size=0, max_processes=16, timeout=30, **kernel_start) as running:
        assert not running.sandbox.cgroups and running.sandbox.bwrap is None
        running.execute("flood", "kept = 1")
        pid = running.sandbox._kernels["flood"].pid
        baseline = running.sandbox._kernels["flood"].baseline  # the kernel's own tree (its supervisor's child)
        code = ("import os, time\nfor i in range(200):\n    if os.fork() == 0:\n"
                "        time.sleep(60)\n        os._exit(0)\ntime.sleep(60)")
        result = running.execute("flood", code)
        assert "more than 16 processes" in result.logs
        if result.status == "died":  # the watchdog stopped the whole tree (root ignores RLIMIT_NPROC)
            assert result.status == "died"
            assert result.error == ("kernel started more than 16 processes, so all its processes were stopped; "
                                    "variables were lost")
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        else:  # RLIMIT_NPROC (a kernel user of its own, or not root) made forking fail first; the leftovers
            assert os.geteuid() != 0 or running.sandbox.users is not None  # were stopped after the execution
            assert result.status == "error" and result.error.startswith("BlockingIOError")
        leftovers = [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] in baseline and p.pid not in baseline
                     and p.status() != "zombie"]
        assert leftovers == []
        after = running.execute("flood", "print('still usable')")
        # a flood's late forks can outlast the first sweep: the next execution stops them and says so
        # (known gap: they should all be stopped with the flood's own execution)
        assert after.status == "ok" and after.logs.startswith("still usable\n"), after
        assert after.logs == "still usable\n" or "leftover processes were stopped" in after.logs, after.logs
    assert os.path.isdir(tmp_path / "root")
    fault_report("process flood without cgroups", trials=1, outcome=f"{result.status}: {result.error}",
                 nothing_lost=USABLE)


def test_stale_kernel_cgroups_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_report) -> None:
    """A server killed with SIGKILL leaves empty cgroups behind; the next start removes the old ones only."""
    monkeypatch.setattr(limits, "CGROUP_FS", tmp_path)
    own = limits._own_cgroup_paths()
    if "pids" not in own:
        pytest.skip("this machine has no cgroup v1 pids hierarchy to mimic")
    parent = tmp_path / "pids" / own["pids"].lstrip("/")
    old, fresh, foreign = parent / "tutor_nb-old", parent / "tutor_nb-fresh", parent / "someone-else"
    for directory in (old, fresh, foreign):
        directory.mkdir(parents=True)
        os.utime(directory, (0, 0)) if directory != fresh else None
    assert limits.sweep_stale(min_age=60) == 1
    assert not old.exists() and fresh.exists() and foreign.exists()
    fault_report("cgroups left behind by a SIGKILLed server", trials=1, outcome="the next start removes its own stale "
                 "ones only", nothing_lost="fresh and foreign cgroups kept")
