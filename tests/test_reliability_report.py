"""The fault report is written only where asked: a plain test run leaves every tracked file as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import reliability

REPORT_ENV = "TUTOR_NB_RELIABILITY_REPORT"

FAULT_TEST = '''
def test_one_fault(fault_report):
    fault_report("a made-up fault", trials=3, outcome="handled", nothing_lost="all kept")
'''


def run_pytest(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != REPORT_ENV}
    environment["PYTHONPATH"] = os.pathsep.join([str(Path(reliability.__file__).parent), environment.get("PYTHONPATH", "")])
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "reliability", "-p", "no:cacheprovider",
                           str(folder / "test_fault.py"), *args],
                          cwd=folder, env=environment, capture_output=True, text=True, timeout=120)


def test_a_plain_run_writes_no_report(tmp_path):
    (tmp_path / "test_fault.py").write_text(FAULT_TEST)
    before = reliability.REPORT.read_bytes()
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert reliability.REPORT.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith((".", "__"))) == ["test_fault.py"]


def test_the_report_goes_where_the_flag_or_the_variable_says(tmp_path):
    (tmp_path / "test_fault.py").write_text(FAULT_TEST)
    flagged, named = tmp_path / "by_flag.md", tmp_path / "by_env.md"
    done = run_pytest(tmp_path, "--reliability-report", str(flagged))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| a made-up fault | 3 | handled | yes | all kept |" in flagged.read_text()
    done = run_pytest(tmp_path, env={REPORT_ENV: str(named)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "**1 of 1 faults survived**" in named.read_text()
