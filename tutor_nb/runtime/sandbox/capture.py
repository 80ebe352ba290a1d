"""Collecting one execution's output from the kernel's iopub channel, and what an execution returns."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["ok", "error", "timeout", "died", "interrupted"]

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
MAX_IMAGES = 50


@dataclass
class Execution:
    """What one piece of code did, in the shape of OpenAI's code_interpreter outputs."""

    logs: str
    images: list[bytes]
    files: list[Path]
    status: Status
    error: str | None

    def __repr__(self) -> str:
        logs = self.logs if len(self.logs) <= 60 else self.logs[:57] + "..."
        return (f"Execution(status={self.status!r}, error={self.error!r}, logs={logs!r}, "
                f"images={len(self.images)}, files={[p.name for p in self.files]})")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": f"[{self.status}] {self.error or ''}\n{self.logs}".strip()}


class Capture:
    """Collects one execution's iopub messages, keeping at most ``cap`` characters of text."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False
        self.images: list[bytes] = []
        self.notes: list[str] = []  # what the sandbox says about the execution, after the output
        self.ename: str | None = None
        self.evalue = ""
        self.peak_memory = 0

    def add_text(self, text: str) -> None:
        if self.truncated or not text:
            return
        text = ANSI.sub("", text)
        room = self.cap - self.size
        if len(text) > room:
            text, self.truncated = text[:room], True
        self.parts.append(text)
        self.size += len(text)

    def handle(self, msg: dict) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            self.add_text(content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = content.get("data", {})
            png = data.get("image/png")
            if png and len(self.images) < MAX_IMAGES:
                self.images.append(base64.b64decode(png))
            plain = data.get("text/plain")
            if plain and (kind == "execute_result" or not png):
                self.add_text(plain + "\n")
        elif kind == "error":
            self.ename, self.evalue = content.get("ename", "Error"), content.get("evalue", "")
            tb = content.get("traceback") or [f"{self.ename}: {self.evalue}"]
            self.add_text("\n".join(tb) + "\n")

    def live(self, workdir: Path) -> str:
        """The whole lines printed so far, as :meth:`logs` will show them (to stream while it runs).

        Only whole lines, so a path split across two writes is mapped before it is sent; what
        this returns is always the start of what ``logs`` returns at the end.
        """
        text = "".join(self.parts)
        return text[: text.rfind("\n") + 1].replace(str(workdir), "/mnt/data")

    def logs(self, workdir: Path) -> str:
        text = "".join(self.parts)
        if self.truncated:
            text += f"\n[output truncated: only the first {self.cap:,} characters are kept]\n"
        if self.notes:
            text += "".join(f"[sandbox] {note}\n" for note in self.notes)
        return text.replace(str(workdir), "/mnt/data")
