"""The reliability report: fault tests record what they tried, and the suite writes ``docs/reliability.md``.

A test asks for the ``fault_report`` fixture and calls it once per fault::

    fault_report("malformed JSON body", trials=12, outcome="400 invalid_request_error, names the problem",
                 nothing_lost="objects created before are unchanged")

A fault counts as survived only if the test that recorded it passed. The report is written only when
asked, never by a plain test run (it is a tracked file, and a test run must leave the clone as it was)::

    python -m pytest --reliability-report docs/reliability.md      # or TUTOR_NB_RELIABILITY_REPORT=PATH

Then, at the end of a session that recorded any fault, that file is rewritten: faults tried in this
session replace their earlier entries, faults whose tests did not run this time (deselected slow tests,
a single file run) keep their last result, so a partial run never empties the report.

The plugin also serves the runtime the way a learner does, as ``python -m tutor_nb serve`` in its own
process (``CliServer``), for the tests that kill it or bind it beyond loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "reliability.md"  # the tracked report, rewritten only when asked
REPORT_ENV = "TUTOR_NB_RELIABILITY_REPORT"
CASSETTES = Path(__file__).resolve().parent / "data" / "cassettes"
_DATA_MARK = "<!-- reliability-data"
#: the area each test file's faults belong to, in report order
AREAS = {
    "test_sandbox_limits": "Sandbox limits",
    "test_sandbox": "Sandbox limits",
    "test_server_faults": "Server",
    "test_schemathesis": "Server",
    "test_durability": "Durability",
    "test_access": "Access",
    "test_security_browser": "Web pages",
    "test_security_uploads": "Access",
    "test_security_token": "Access",
    "test_security_sandbox": "Model code against the runtime",
}


@dataclass
class Fault:
    """One fault the suite tried, and what became of it."""

    area: str
    name: str
    trials: int
    outcome: str
    survived: bool
    nothing_lost: str
    test: str  # pytest node id
    seconds: float = 0.0
    run_on: str = ""  # UTC date of the run that produced this entry


@dataclass
class _Session:
    faults: list[Fault] = field(default_factory=list)
    pending: dict[str, list[Fault]] = field(default_factory=dict)  # node id -> faults of a running test
    failed: set[str] = field(default_factory=set)  # node ids of tests that failed this session
    started: float = field(default_factory=time.monotonic)


_SESSION = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", metavar="PATH", default=os.environ.get(REPORT_ENV) or None,
                     help=f"write the fault report to PATH (e.g. docs/reliability.md), merging the faults it already "
                          f"holds; also ${REPORT_ENV}. Without it no report is written.")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SESSION] = _Session()


def report_path(config: pytest.Config) -> Path | None:
    """Where this session writes its report, or None when it was not asked to."""
    path = config.getoption("--reliability-report", None)
    return Path(path).resolve() if path else None


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[..., Fault]:
    """Record a fault this test tries: ``fault_report(name, trials=, outcome=, nothing_lost=)``."""
    session = request.config.stash[_SESSION]
    node = request.node
    module = Path(str(node.fspath)).stem
    area = AREAS.get(module, module)
    faults = session.pending.setdefault(node.nodeid, [])

    def record(name: str, *, trials: int, outcome: str, nothing_lost: str = "", survived: bool = True) -> Fault:
        if trials < 1:
            raise ValueError(f"fault {name!r}: trials must be at least 1, got {trials}")
        fault = Fault(area=area, name=name, trials=trials, outcome=outcome, survived=survived,
                      nothing_lost=nothing_lost, test=node.nodeid)
        faults.append(fault)
        return fault

    return record


_STARTED = pytest.StashKey[float]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    session = item.config.stash.get(_SESSION, None)
    if session is None:
        return report
    if report.failed:
        session.failed.add(item.nodeid)
        for fault in session.pending.get(item.nodeid, []):
            if fault.survived:
                fault.survived, fault.outcome = False, f"TEST FAILED ({report.when}): {fault.outcome}"
    if report.when == "teardown":
        seconds = round(time.monotonic() - item.stash.get(_STARTED, time.monotonic()), 1)
        for fault in session.pending.pop(item.nodeid, []):
            fault.seconds = seconds
            session.faults.append(fault)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_SESSION, None)
    report = report_path(session.config)
    if state is None or report is None:
        return
    previous = _previous_faults(report)
    if not state.faults and not state.failed & {f.test for f in previous}:
        return  # no fault test ran: leave the last report as it is
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    for fault in state.faults:
        fault.run_on = today
    fresh = {f.test for f in state.faults}
    kept = [f for f in previous if f.test not in fresh and _test_exists(f.test)]
    for fault in kept:
        if fault.test in state.failed:  # failed before it could record anything: not survived any more
            fault.survived, fault.run_on = False, today
            fault.outcome = f"TEST FAILED: {fault.outcome.removeprefix('TEST FAILED: ')}"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render([*kept, *state.faults]), encoding="utf-8")


def _previous_faults(report: Path) -> list[Fault]:
    if not report.exists():
        return []
    text = report.read_text(encoding="utf-8")
    start = text.find(_DATA_MARK)
    if start < 0:
        return []
    end = text.find("-->", start)
    try:
        rows = json.loads(text[start + len(_DATA_MARK):end])
        return [Fault(**row) for row in rows]
    except (ValueError, TypeError):
        return []


def _test_exists(nodeid: str) -> bool:
    """An earlier entry is kept only while its test still exists."""
    path, _, name = nodeid.partition("::")
    source = ROOT / path
    function = re.sub(r"\[.*$", "", name.split("::")[-1])
    return source.exists() and f"def {function}(" in source.read_text(encoding="utf-8")


def render(faults: list[Fault]) -> str:
    """The report: a summary, then one table per area, then the data it can be merged from next time."""
    order = list(dict.fromkeys(AREAS.values()))
    faults = sorted(faults, key=lambda f: (order.index(f.area) if f.area in order else len(order), f.test))
    survived = sum(f.survived for f in faults)
    lines = [
        "# Reliability report",
        "",
        "Generated by the test suite (`tests/reliability.py`); do not edit by hand. Each row is one fault the",
        "suite tried against the runtime or its code interpreter: how many times, what happened, and how the",
        "suite checked that nothing was lost. A fault counts as survived only when its test passed.",
        "Regenerate with `python -m pytest --reliability-report docs/reliability.md tests/test_sandbox_limits.py",
        "tests/test_server_faults.py tests/test_schemathesis.py tests/test_durability.py tests/test_access.py",
        "tests/test_security_browser.py tests/test_security_uploads.py tests/test_security_token.py",
        "tests/test_security_sandbox.py`",
        "(slow tests included); a test run without `--reliability-report` writes no report.",
        "",
        f"**{survived} of {len(faults)} faults survived**, {sum(f.trials for f in faults)} trials in all. "
        f"Last run: {max(f.run_on for f in faults)} on Python {platform.python_version()}, {platform.system()}.",
        "",
    ]
    for area in dict.fromkeys(f.area for f in faults):
        rows = [f for f in faults if f.area == area]
        lines += [f"## {area}", "", "| Fault | Trials | Outcome | Survived | Nothing lost | Test (run on, seconds) |",
                  "|---|---:|---|:---:|---|---|"]
        for f in rows:
            test = f.test.split("::", 1)[-1]
            lines.append(f"| {_cell(f.name)} | {f.trials} | {_cell(f.outcome)} | {'yes' if f.survived else '**NO**'} "
                         f"| {_cell(f.nothing_lost) or '-'} | `{_cell(test)}` ({f.run_on}, {f.seconds:g} s) |")
        lines.append("")
    data = json.dumps([asdict(f) for f in faults], ensure_ascii=False, indent=0)
    lines += [f"{_DATA_MARK}\n{data}\n-->", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the runtime as a separate process ----------------------------------------------------------


class CliServer:
    """``python -m tutor_nb serve`` in its own process, on a free port, replaying the test cassettes."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90) -> None:
        self.data_dir = Path(data_dir)
        self.log = self.data_dir.parent / f"{self.data_dir.name}.server.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUTOR_NB_"))}
        environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        environment.update(env or {})
        cmd = [sys.executable, "-m", "tutor_nb", "serve", "--port", "0", "--data-dir", str(self.data_dir),
               "--backend", "replay", "--cassettes", str(CASSETTES), "--replay-delay", "0", *args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=log)
        self.base_url = self._wait_for_url(timeout)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                seen += chunk
                match = re.search(rb"http://[^\s]+/v1", seen)
                if match and b"\n" in seen[match.end():]:
                    key = re.search(rb"api_key=(\S+)", seen)
                    self.api_key = key.group(1).decode() if key else "local"
                    return match.group(0).decode()
                if not chunk:
                    break
            if self.proc.poll() is not None and not ready:
                break
        self.kill()
        raise RuntimeError(f"the runtime did not start: {seen.decode(errors='replace')}\n{self.stderr()[-3000:]}")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, **kwargs: Any) -> Any:
        import openai

        kwargs.setdefault("api_key", self.api_key)  # the token it printed, if it made one
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30)
        return openai.OpenAI(base_url=self.base_url, **kwargs)

    def descendants(self) -> list[int]:
        """Pids of every process the server started (kernels, their sandboxes)."""
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer stops it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int:
        """Ctrl-C, and wait for the clean shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def processes_of(data_dir: Path) -> list[int]:
    """Live processes whose command line names this data folder: kernels (and their sandboxes) of a server
    that used it, found even when they were started too late to be seen as its children."""
    import psutil

    needle = str(Path(data_dir).resolve())
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(needle in a for a in process.info["cmdline"] or ()):
            found.append(process.pid)
    return found


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until these processes have exited; returns the ones still alive (zombies count as gone)."""
    import psutil

    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(psutil, pid)]
        if alive:
            time.sleep(0.1)
    return alive


def _alive(psutil: Any, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_pids(pids: list[int]) -> None:
    """SIGKILL leftovers by pid (only processes this test saw its own server start)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def read_store(data_dir: Path) -> tuple[str, dict[str, Any]]:
    """SQLite's integrity_check answer and every stored row parsed by its SDK type (a corrupt row raises)."""
    import sqlite3

    from tutor_nb.runtime.store import KINDS

    by_kind = {kind: cls for cls, kind in KINDS.items()}
    db = sqlite3.connect(Path(data_dir) / "tutor_nb.sqlite3")
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT id, kind, body FROM objects ORDER BY seq").fetchall()
    finally:
        db.close()
    return integrity, {id: by_kind[kind].model_validate_json(body) for id, kind, body in rows}
