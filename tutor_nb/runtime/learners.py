"""One token per learner: who is asking, so each learner sees only what they made and the teacher sees all.

A class shares one runtime; with ``--tokens FILE`` (one learner a line, ``NAME TOKEN``, ``#`` comments)
each learner's client uses their own token as its ``api_key``. The guard finds whose token a request
carries and sets :data:`current_owner` for it; the store records that owner on every object made under
it and, for a learner, finds only their own (so another learner's id answers 404 and lists hold only
their own). The teacher's token (``TUTOR_NB_TOKEN`` or the token file) sets no owner: it reads everyone's.
"""

from __future__ import annotations

import collections
import contextvars
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeStartError

#: the learner a request comes from; None for the teacher (and for the runtime's own work), who sees everything
current_owner: contextvars.ContextVar[str | None] = contextvars.ContextVar("tutor_nb_owner", default=None)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_TOKEN = 16


@dataclass
class Learner:
    name: str
    token: str = field(repr=False)
    last_seen: float | None = None  # epoch seconds of the last request
    requests: int = 0
    runs: collections.deque[float] = field(default_factory=collections.deque, repr=False)  # run starts (monotonic)


class Learners:
    """The learners of a runtime, by token, with what each may do per minute."""

    def __init__(self, learners: list[Learner], *, runs_per_minute: int | None = None) -> None:
        self.by_name = {learner.name: learner for learner in learners}
        self.runs_per_minute = runs_per_minute

    def __len__(self) -> int:
        return len(self.by_name)

    def __repr__(self) -> str:
        return f"Learners({', '.join(self.by_name)})"

    @classmethod
    def load(cls, path: Path, *, teacher_token: str | None = None, runs_per_minute: int | None = None) -> Learners:
        """Read a tokens file; refuses one others can read, bad lines, and names or tokens given twice."""
        path = Path(path).expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RuntimeStartError(f"cannot read the learners' tokens file {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise RuntimeStartError(f"the learners' tokens file {path} can be read by other users of this machine; "
                                    f"make it private first: chmod 600 {path}")
        learners: list[Learner] = []
        names: set[str] = set()
        tokens: set[str] = {teacher_token} if teacher_token else set()
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            where = f"{path}, line {number}"
            if len(parts) != 2:
                raise RuntimeStartError(f"{where}: expected 'NAME TOKEN' (two words), found {len(parts)}")
            name, token = parts
            if not NAME.fullmatch(name):
                raise RuntimeStartError(f"{where}: the name {name!r} may hold letters, digits and _ . @ - only")
            if len(token) < MIN_TOKEN:
                raise RuntimeStartError(f"{where}: {name}'s token is shorter than {MIN_TOKEN} characters; make one "
                                        "with: python -c \"import secrets; print(secrets.token_urlsafe(24))\"")
            if name in names:
                raise RuntimeStartError(f"{where}: the name {name!r} is given twice")
            if token in tokens:
                raise RuntimeStartError(f"{where}: {name}'s token is already used (by another learner or the teacher)")
            names.add(name)
            tokens.add(token)
            learners.append(Learner(name, token))
        if not learners:
            raise RuntimeStartError(f"the learners' tokens file {path} names no learner; write one 'NAME TOKEN' a line")
        return cls(learners, runs_per_minute=runs_per_minute)

    def find(self, token: str) -> Learner | None:
        """The learner holding this token (every token compared in constant time), or None."""
        found = None
        for learner in self.by_name.values():
            if secrets.compare_digest(learner.token.encode(), token.encode()):
                found = learner
        return found

    def seen(self, learner: Learner) -> None:
        learner.last_seen = time.time()
        learner.requests += 1

    def start_run(self, learner: Learner) -> str | None:
        """Count a run the learner starts; a message saying why not, when over their runs per minute."""
        if self.runs_per_minute is None:
            return None
        now = time.monotonic()
        while learner.runs and now - learner.runs[0] > 60:
            learner.runs.popleft()
        if len(learner.runs) >= self.runs_per_minute:
            wait = 60 - (now - learner.runs[0])
            return (f"{learner.name} has started {self.runs_per_minute} runs in the last minute, the most a learner "
                    f"may; try again in {wait:.0f} s.")
        learner.runs.append(now)
        return None


#: requests that start a run (Assistants and Responses): what runs-per-minute counts
RUN_STARTS = re.compile(r"^/v1/(threads/[^/]+/runs|threads/runs|responses)$")
