"""The command line: the README's main job, and the runtime served in the foreground."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPEN_API_KEY")}
    env["TUTOR_NB_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_walkthrough_command_runs_offline(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tutor_nb", "walkthrough"], cwd=tmp_path, env=_env(tmp_path),
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "offline runtime" in out and "replay" in out
    assert re.search(r"run run_\w+: completed", out)
    assert "tool_calls (completed)" in out and "message_creation (completed)" in out
    assert "4181" in out and out.rstrip().endswith("(as Python values)")
    assert "match" in out.splitlines()[-1]
    # the 20 numbers fill lines (not one a line), and the answer's math is text, not LaTeX
    assert out.count("[0, 1, 1, 2, 3, 5, 8, 13, 21") >= 3
    assert not [line for line in out.splitlines() if re.fullmatch(r"\s*\d+,", line)]
    assert "\\[" not in out and "\\]" not in out and "    0, 1, 1, 2, 3, 5, 8" in out


@pytest.mark.slow
def test_serve_prints_its_url_and_stops_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tutor_nb", "serve", "--port", "0", "--data-dir", str(tmp_path / "d")],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/v1) api_key=(\S+)$", line.strip())
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        client = openai.OpenAI(base_url=match.group(1), api_key=match.group(3), max_retries=0)
        assert client.beta.assistants.create(model="m").id.startswith("asst_")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_serve_keeps_the_pool_size_it_is_given_started(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tutor_nb", "serve", "--port", "0", "--pool-size", "3", "--data-dir", str(tmp_path / "d")],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "ready at http://127.0.0.1:" in proc.stdout.readline()
        def kernels() -> int:  # one per kernel: its launcher (or bubblewrap), or a child of the warm template
            count = 0
            for child in psutil.Process(proc.pid).children():
                command = " ".join(child.cmdline())
                if "kernel_template" in command:
                    count += len(child.children())
                count += "kernel_boot" in command or "ipykernel_launcher" in command
            return count

        deadline = time.monotonic() + 60
        while kernels() < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kernels() == 3
        time.sleep(1.0)
        assert kernels() == 3
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_public_bind_without_token_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tutor_nb", "serve", "--port", "0", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "token" in done.stderr and "Traceback" not in done.stderr
