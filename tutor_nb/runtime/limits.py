"""OS-level limits around a sandbox kernel: a cgroup per kernel, process-tree watch, folder accounting.

rlimits are set inside the kernel's own process (see ``kernel_boot``); what needs a view from
outside the kernel lives here. Everything degrades quietly: where cgroups are not writable the
sandbox falls back to watching the kernel's process tree from the server.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

CGROUP_FS = Path("/sys/fs/cgroup")  # tests point this elsewhere to exercise the fallback


def _own_cgroup_paths() -> dict[str, str]:
    """Map controller name ('' for cgroup v2) to this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_counter(path: Path, key: str) -> int:
    """Read ``key N`` from a cgroup events/stat file; 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class KernelCgroup:
    """One cgroup (v2) or a pair of cgroups (v1 pids + memory) holding one kernel's process tree."""

    pids_dir: Path
    memory_dir: Path | None
    v2: bool
    _dirs: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, pids_max: int, memory_bytes: int | None) -> KernelCgroup | None:
        """Make a fresh cgroup with the limits set, or None when this machine does not allow it."""
        name = f"tutor_nb-{uuid.uuid4().hex[:12]}"
        own = _own_cgroup_paths()
        v2_root = cls._v2_root()
        try:
            if "pids" in own and (CGROUP_FS / "pids").is_dir():
                return cls._create_v1(name, own, pids_max, memory_bytes)
            if v2_root is not None and "" in own:
                return cls._create_v2(v2_root / own[""].lstrip("/"), name, pids_max, memory_bytes)
        except OSError:
            return None
        return None

    @staticmethod
    def _v2_root() -> Path | None:
        for candidate in (CGROUP_FS, CGROUP_FS / "unified"):
            if (candidate / "cgroup.controllers").is_file():
                return candidate
        return None

    @classmethod
    def _create_v1(cls, name: str, own: dict[str, str], pids_max: int, memory_bytes: int | None) -> KernelCgroup:
        pids_dir = CGROUP_FS / "pids" / own["pids"].lstrip("/") / name
        pids_dir.mkdir()
        group = cls(pids_dir=pids_dir, memory_dir=None, v2=False, _dirs=[pids_dir])
        try:
            _write(pids_dir / "pids.max", str(pids_max))
            if memory_bytes and "memory" in own and (CGROUP_FS / "memory").is_dir():
                memory_dir = CGROUP_FS / "memory" / own["memory"].lstrip("/") / name
                try:
                    memory_dir.mkdir()
                    group._dirs.append(memory_dir)
                    _write(memory_dir / "memory.limit_in_bytes", str(memory_bytes))
                    group.memory_dir = memory_dir
                except OSError:
                    pass  # a pids limit alone is still worth having
        except OSError:
            group.remove()
            raise
        return group

    @classmethod
    def _create_v2(cls, parent: Path, name: str, pids_max: int, memory_bytes: int | None) -> KernelCgroup:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if "pids" not in enabled:
            _write(parent / "cgroup.subtree_control", "+pids")
        if memory_bytes and "memory" not in enabled:
            try:
                _write(parent / "cgroup.subtree_control", "+memory")
            except OSError:
                pass  # a pids limit alone is still worth having
        directory = parent / name
        directory.mkdir()
        group = cls(pids_dir=directory, memory_dir=None, v2=True, _dirs=[directory])
        try:
            _write(directory / "pids.max", str(pids_max))
            if memory_bytes and (directory / "memory.max").exists():
                _write(directory / "memory.max", str(memory_bytes))
                group.memory_dir = directory
        except OSError:
            group.remove()
            raise
        return group

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid to in order to join (done by the kernel launcher)."""
        return [str(d / "cgroup.procs") for d in self._dirs]

    def pids(self) -> set[int]:
        try:
            return {int(p) for p in (self.pids_dir / "cgroup.procs").read_text().split()}
        except (OSError, ValueError):
            return set()

    def limit_hits(self) -> int:
        """How many times a fork failed because the process limit was reached."""
        return _read_counter(self.pids_dir / "pids.events", "max")

    def oom_kills(self) -> int:
        if self.memory_dir is None:
            return 0
        name = "memory.events" if self.v2 else "memory.oom_control"
        return _read_counter(self.memory_dir / name, "oom_kill")

    def kill(self, keep: set[int] | frozenset[int] = frozenset()) -> int:
        """Stop, then SIGKILL, every process in the group except ``keep``; returns how many.

        Stopping first matters: a fork bomb refills every slot that a plain kill frees.
        """
        stopped: set[int] = set()
        for _ in range(100):
            victims = self.pids() - set(keep) - stopped
            if not victims:
                break
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
                stopped.add(pid)
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(stopped)

    def wait_until(self, keep: set[int], patience: float) -> bool:
        """Wait for killed members to finish exiting; True once only ``keep`` is left."""
        deadline = time.monotonic() + patience
        while self.pids() - keep:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def remove(self, patience: float = 1.0) -> bool:
        """Kill what is left and delete the cgroup directories; False if members still linger."""
        self.kill()
        deadline = time.monotonic() + patience
        for directory in reversed(self._dirs):
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        return False  # killed members not yet reaped; try again later
                    time.sleep(0.02)
        return True


def sweep_stale(min_age: float = 120.0) -> int:
    """Remove empty kernel cgroups left by servers that were killed; returns how many went.

    Only old ones: a fresh empty cgroup may belong to a kernel another server is launching now.
    """
    own = _own_cgroup_paths()
    parents = [CGROUP_FS / c / own[c].lstrip("/") for c in ("pids", "memory") if c in own]
    v2_root = KernelCgroup._v2_root()
    if v2_root is not None and "" in own:
        parents.append(v2_root / own[""].lstrip("/"))
    removed = 0
    for parent in parents:
        try:
            stale = [d for d in parent.glob("tutor_nb-*") if time.time() - d.stat().st_mtime > min_age]
        except OSError:
            continue
        for directory in stale:
            try:
                directory.rmdir()  # refuses while processes are inside
                removed += 1
            except OSError:
                pass
    return removed


TYPICAL_KERNEL_MB = 150  # what a kernel holds in a class: a forked one about 25 MB of its own, a cold one about 70


def default_max_kernels(memory_limit_mb: int | None) -> int:
    """As many kernels as this machine's memory holds at what a kernel typically holds (or at the per-kernel
    limit, when that is smaller), keeping a fifth for everything else; never fewer than 4. Counting every
    kernel at its limit would stop a class of 30 at 9 kernels on 24 GB; the kernels that do grow meet their
    own limit, and the pool lets idle kernels go first when the machine runs short of memory."""
    per_kernel = min(memory_limit_mb or TYPICAL_KERNEL_MB, TYPICAL_KERNEL_MB) * 1024 * 1024
    return max(4, int(psutil.virtual_memory().total * 0.8) // per_kernel)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def tree_memory(pid: int) -> int:
    """Largest virtual size (bytes) among the kernel process and its descendants: what RLIMIT_AS bounds."""
    largest = 0
    try:
        procs = [psutil.Process(pid), *descendants(pid)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            largest = max(largest, proc.memory_info().vms)
        except psutil.Error:
            pass
    return largest


def kill_processes(procs: list[psutil.Process], patience: float = 5.0) -> int:
    """Stop all, then kill all (so none can fork in between), and wait until they have exited (a killed
    process of low priority on a busy machine can take a while to); returns how many there were."""
    for signum in (signal.SIGSTOP, signal.SIGKILL):
        for proc in procs:
            try:
                proc.send_signal(signum)
            except psutil.Error:
                pass
    deadline = time.monotonic() + patience
    while any(_still_running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(procs)


def _still_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(pid: int) -> None:
    """Freeze then kill a process, its process group and every descendant (a fork bomb keeps forking)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid == pid:
        try:
            os.killpg(pgid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    procs = descendants(pid)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGSTOP)
        except psutil.Error:
            pass
    for proc in [*descendants(pid), *procs]:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if pgid is not None and pgid == pid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_regular(path: Path) -> bytes | None:
    """A regular file's bytes, or None: never through a link, never blocking on a FIFO that code put there."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


def is_hidden(relative: Path) -> bool:
    """Hidden or temporary files are not reported as outputs."""
    for part in relative.parts:
        if part.startswith(".") or part == "__pycache__":
            return True
    name = relative.name
    return name.endswith(("~", ".tmp", ".swp")) or name.startswith("~$")


Snapshot = dict[Path, tuple[int, int]]

MAX_SCANNED = 20_000  # files; a folder with more is not fully accounted (stated in the docs)


def snapshot(folder: Path) -> Snapshot:
    """Path -> (mtime_ns, size) of regular files under ``folder``, hidden ones included."""
    found: Snapshot = {}
    stack = [folder]
    while stack and len(found) < MAX_SCANNED:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found[Path(entry.path)] = (st.st_mtime_ns, st.st_blocks * 512)
            except OSError:
                continue
    return found


def folder_bytes(files: Snapshot) -> int:
    return sum(size for _, size in files.values())


def changed_files(before: Snapshot, after: Snapshot, folder: Path) -> list[Path]:
    """Visible files that are new or modified, oldest change first."""
    changed = [p for p, stamp in after.items() if before.get(p) != stamp and not is_hidden(p.relative_to(folder))]
    return sorted(changed, key=lambda p: (after[p][0], str(p)))


# -- a user of its own for each kernel (when the server runs as root) ------------------------------

UID_BASE, UID_COUNT = 1_900_000_000, 100_000  # far above login users and container subuid ranges


class KernelUsers:
    """Unprivileged uids for kernels, one per kernel, held with a lock file while the kernel lives.

    The lock (released by the OS when the server dies, however it dies) keeps two runtimes on one
    machine from handing out the same uid; a uid that still has processes is never handed out."""

    def __init__(self, lock_dir: Path, base: int = UID_BASE, count: int = UID_COUNT) -> None:
        self.lock_dir, self.base, self.count = lock_dir, base, count
        self._held: dict[int, int] = {}  # uid -> fd of its lock file
        self._next = int.from_bytes(os.urandom(4), "little") % count

    @classmethod
    def here(cls) -> KernelUsers | None:
        """Users for this machine when the server is root and may change uid, else None."""
        if os.geteuid() != 0 or not hasattr(os, "setuid"):
            return None
        lock_dir = _private_dir(Path("/run") if Path("/run").is_dir() else Path("/tmp"), "tutor_nb-kernel-uids")
        return cls(lock_dir) if lock_dir is not None and _uids_mapped(UID_BASE, UID_COUNT) else None

    def allocate(self) -> int:
        import fcntl

        busy = {st_uid for st_uid in _process_uids()}
        for step in range(self.count):
            uid = self.base + (self._next + step) % self.count
            if uid in self._held or uid in busy:
                continue
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._next = (self._next + step + 1) % self.count
            self._held[uid] = fd
            return uid
        raise OSError("no free kernel uid left")

    def release(self, uid: int) -> None:
        """End every process of ``uid`` (however it detached), then free the uid for another kernel."""
        from .kernel_boot import end_tree, processes_of

        for _ in range(3):
            if not processes_of(uid):
                break
            end_tree(-1, uid)
            time.sleep(0.05)
        fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)


def _private_dir(parent: Path, name: str) -> Path | None:
    """``parent/name`` as a folder only root can use; None if it exists but is not (a planted link)."""
    path = parent / name
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        return None
    return path


def _uids_mapped(base: int, count: int) -> bool:
    """Whether this (possibly namespaced) root can switch to these uids at all."""
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            inside, _, length = (int(p) for p in parts)
            if inside <= base and base + count <= inside + length:
                return True
    return False


def _process_uids() -> set[int]:
    uids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uids.add(os.stat(f"/proc/{entry}").st_uid)
            except OSError:
                pass
    return uids


def closed_view(needed: list[Path]) -> list[list]:
    """For each folder other users cannot enter that lies on the way to a ``needed`` path: the folder and
    the needed paths under it (what kernel_boot binds into an otherwise empty folder for the kernel)."""
    view: dict[Path, list[Path]] = {}
    for path in sorted({p.resolve() for p in needed if p.exists()}):
        closed = next((a for a in reversed(path.parents) if not os.stat(a).st_mode & 0o001), None)
        if closed is None:
            continue  # reachable as it is
        bound = view.setdefault(closed, [])
        # a path inside one already bound comes with it, if nothing closed lies between them
        if not any(path.is_relative_to(q) and _open_between(q, path) for q in bound):
            bound.append(path)
    return [[str(folder), [str(p) for p in paths]] for folder, paths in view.items()]


def _open_between(outer: Path, inner: Path) -> bool:
    return all(os.stat(a).st_mode & 0o001 for a in inner.parents if a.is_relative_to(outer) and a != outer)


def hand_over(folder: Path, uid: int) -> None:
    """Make a thread's folder (and what is in it) the kernel user's, mode 0700 on the folder itself.

    Symbolic links are never followed and files with other hard links are left alone, so code in the
    folder cannot trick the server into giving it something outside."""
    import stat

    for path in [folder, *_walk(folder)]:
        try:
            st = os.lstat(path)
            if st.st_uid == uid and path != folder:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                continue
            os.chown(path, uid, uid, follow_symlinks=False)
        except OSError:
            continue
    os.chmod(folder, 0o700)


def take_back(folder: Path) -> None:
    """Close a thread's folder to every kernel user (its kernel is gone; its uid may go to another)."""
    try:
        os.chown(folder, 0, 0, follow_symlinks=False)
        os.chmod(folder, 0o700)
    except OSError:
        pass


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    stack = [folder]
    while stack and len(found) < MAX_SCANNED:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            found.append(Path(entry.path))
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
            except OSError:
                pass
    return found
