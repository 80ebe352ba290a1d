"""The ``replay`` backend and its recorder: model turns kept in cassette files.

Replay lets notebooks and tests run offline and identically every time; only the model is
recorded, the code it writes still runs for real in the sandbox. A cassette is JSON::

    {"source": "authored" | "recorded from <model> on <YYYY-MM-DD>",
     "description": "...",
     "turns": [{"user": "<last user message>", "turn": 0,
                "reply": {"content": null,
                          "tool_calls": [{"name": "code_interpreter", "arguments": "{...}"}],
                          "usage": {"prompt_tokens": 154, "completion_tokens": 107}}}]}

A turn is found by the text of the conversation's last user message and by how many
assistant messages follow it (0 for a run's first model call, 1 after the first tool
result, ...).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import re
import secrets
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Union

from ...errors import CassetteError, NoRecordedTurnError
from .base import ModelBackend, ModelEvent, ModelRequest, TextDelta, ToolCallDelta, Usage, estimate_usage

#: Cassettes shipped with tutor_nb, all loaded by default.
BUILTIN_CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = re.compile(r"\s*\S{1,6}|\s+")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The form two user messages are compared in: NFC, whitespace runs collapsed, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def message_text(message: dict[str, Any]) -> str:
    """A message's text, whether its content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") if isinstance(p, dict) else str(p)
            for p in content
            if not isinstance(p, dict) or p.get("type", "text") == "text"
        ]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def conversation_key(messages: list[dict[str, Any]]) -> tuple[str, int]:
    """(last user message text, number of assistant messages after it)."""
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
    if last_user is None:
        return "", sum(1 for m in messages if m.get("role") == "assistant")
    turn = sum(1 for m in messages[last_user + 1 :] if m.get("role") == "assistant")
    return message_text(messages[last_user]), turn


def chunk(text: str) -> list[str]:
    """Split text into pieces of a few characters that join back to exactly ``text``."""
    return _CHUNK.findall(text)


@dataclass(frozen=True)
class RecordedTurn:
    """One model answer in a cassette, and the file it came from."""

    user: str
    turn: int
    content: str | None
    tool_calls: tuple[tuple[str, str], ...]  # (name, arguments)
    usage: Usage | None
    source: str

    def to_json(self) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "content": self.content,
            "tool_calls": [{"name": n, "arguments": a} for n, a in self.tool_calls],
        }
        if self.usage is not None:
            reply["usage"] = {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            }
        return {"user": self.user, "turn": self.turn, "reply": reply}


def load_cassette(path: PathLike) -> list[RecordedTurn]:
    """Read and check one cassette file; the error names the file and the bad part."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CassetteError(f"Cassette file {path} does not exist. Check the path you passed.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CassetteError(f"Cassette file {path} is not readable JSON ({exc}). Fix or remove it.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
        raise CassetteError(f'Cassette file {path} has no "turns" list. See tutor_nb\'s cassette format.')
    source = str(data.get("source", "unknown"))
    turns = []
    for number, item in enumerate(data["turns"]):
        try:
            reply = item["reply"]
            usage = reply.get("usage")
            turns.append(
                RecordedTurn(
                    user=str(item["user"]),
                    turn=int(item.get("turn", 0)),
                    content=reply.get("content"),
                    tool_calls=tuple(
                        (str(c["name"]), str(c.get("arguments", ""))) for c in reply.get("tool_calls") or []
                    ),
                    usage=Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])) if usage else None,
                    source=source,
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CassetteError(
                f'Cassette file {path}: turn #{number} is malformed ({type(exc).__name__}: {exc}). '
                f'Each turn needs "user", "turn" and "reply" with "content" and "tool_calls".'
            ) from exc
    return turns


def cassette_files(paths: Iterable[PathLike]) -> list[Path]:
    """Expand files and folders (their ``*.json``, sorted) into a list of cassette files."""
    files: list[Path] = []
    for entry in paths:
        entry = Path(entry)
        if entry.is_dir():
            files.extend(sorted(entry.glob("*.json")))
        elif entry.exists():
            files.append(entry)
        else:
            raise CassetteError(f"Cassette path {entry} does not exist. Check the path you passed.")
    return files


class ReplayBackend:
    """Plays recorded model turns as a stream, in small pieces, as a live model would.

    ``cassettes`` adds files or folders to the built-in ones; a later file wins when two
    hold the same turn, so your own recordings override what ships with tutor_nb.
    ``delay`` is the pause between pieces in seconds (0 for tests, ~0.02 to watch code appear).
    """

    name = "replay"

    def __init__(
        self,
        cassettes: PathLike | Iterable[PathLike] | None = None,
        *,
        delay: float = 0.0,
        builtin: bool = True,
    ) -> None:
        extra = [cassettes] if isinstance(cassettes, (str, os.PathLike)) else list(cassettes or [])
        self.files = cassette_files(([BUILTIN_CASSETTES] if builtin else []) + extra)
        self.delay = delay
        self._turns: dict[tuple[str, int], RecordedTurn] = {}
        self._examples: list[str] = []  # the first question of each file, for error messages
        for path in self.files:
            turns = load_cassette(path)
            self._examples += [turn.user for turn in turns[:1]]
            for turn in turns:
                self._turns[(normalize(turn.user), turn.turn)] = turn

    def __repr__(self) -> str:
        return f"ReplayBackend({len(self.files)} cassette files, {len(self._turns)} turns)"

    def find(self, messages: list[dict[str, Any]]) -> RecordedTurn:
        """The recorded turn for this conversation, or :class:`NoRecordedTurnError`."""
        user, turn = conversation_key(messages)
        found = self._turns.get((normalize(user), turn))
        if found is None:
            raise NoRecordedTurnError(self._unmatched(user, turn))
        return found

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        found = self.find(request.messages)
        for piece in chunk(found.content or ""):
            yield TextDelta(piece)
            await asyncio.sleep(self.delay)
        for index, (name, arguments) in enumerate(found.tool_calls):
            pieces = chunk(arguments) or [""]
            yield ToolCallDelta(index=index, id=f"call_{secrets.token_hex(12)}", name=name, arguments=pieces[0])
            for piece in pieces[1:]:
                await asyncio.sleep(self.delay)
                yield ToolCallDelta(index=index, arguments=piece)
        produced = (found.content or "") + "".join(a for _, a in found.tool_calls)
        yield found.usage or estimate_usage(request, produced)

    async def aclose(self) -> None:
        return None

    def _unmatched(self, user: str, turn: int) -> str:
        if not normalize(user):
            head = "No recorded turn exists for this conversation: it has no user message."
        else:
            shown = normalize(user)
            shown = shown if len(shown) <= 80 else shown[:79] + "…"
            recorded = sorted(t for (u, t) in self._turns if u == normalize(user))
            where = f" (model call #{turn}; the cassette has calls {recorded})" if recorded else ""
            head = f'No recorded turn exists for this message: "{shown}"{where}.'
        known = ", ".join(f'"{m}"' for m in dict.fromkeys(self._examples))
        offline = f" Offline, the built-in cassettes answer: {known}." if known else ""
        return (
            f"{head} The replay backend only plays conversations saved in cassettes.{offline} "
            f'To ask anything, use a real model: tutor_nb.connect(backend="chat", '
            f'model_base_url="http://127.0.0.1:11434/v1", model="llama3.1") for a local Ollama, '
            f"or set OPENAI_API_KEY; or record a cassette once with "
            f"`python -m tutor_nb serve --backend chat --record FILE`."
        )


class Recorder:
    """Wraps a live backend, passes its events through, and saves each finished turn to a cassette.

    The file is rewritten atomically (temp file + ``os.replace``) after every turn, so a
    crash never leaves half a cassette; recording the same turn again replaces it.
    """

    def __init__(self, inner: ModelBackend, path: PathLike) -> None:
        self.inner = inner
        self.path = Path(path)
        self.name = inner.name
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recorder({self.inner!r}, path={str(self.path)!r})"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        text: list[str] = []
        calls: dict[int, list[str]] = {}  # index -> [name, arguments]
        usage: Usage | None = None
        async for event in self.inner.stream(request):
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, ToolCallDelta):
                call = calls.setdefault(event.index, ["", ""])
                call[0] = call[0] or (event.name or "")
                call[1] += event.arguments
            elif isinstance(event, Usage):
                usage = event
            yield event
        user, turn = conversation_key(request.messages)
        recorded = RecordedTurn(
            user=user,
            turn=turn,
            content="".join(text) or None,
            tool_calls=tuple((calls[i][0], calls[i][1]) for i in sorted(calls)),
            usage=usage,
            source="",
        )
        model = getattr(self.inner, "model", None) or request.model
        await asyncio.to_thread(self._save, recorded, model)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _save(self, recorded: RecordedTurn, model: str) -> None:
        with self._lock:
            if self.path.exists():
                data = json.loads(self.path.read_text(encoding="utf-8"))
            else:
                data = {
                    "source": f"recorded from {model} on {_dt.date.today().isoformat()}",
                    "description": "Model turns recorded by tutor_nb's chat backend.",
                    "turns": [],
                }
            key = (normalize(recorded.user), recorded.turn)
            turns = [t for t in data["turns"] if (normalize(t["user"]), t["turn"]) != key]
            data["turns"] = turns + [recorded.to_json()]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, ensure_ascii=False, indent=2)
                    out.write("\n")
                os.replace(temp, self.path)
            except BaseException:
                os.unlink(temp)
                raise
