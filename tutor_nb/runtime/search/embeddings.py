"""A client for any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, vLLM, LM Studio).

It goes through the ``openai`` SDK, so retries, timeouts and the wire format are the SDK's. The key
comes from the environment (``TUTOR_NB_EMBEDDINGS_API_KEY``), never from a command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

KEY_ENV = "TUTOR_NB_EMBEDDINGS_API_KEY"
#: inputs per request: well under OpenAI's 2,048 inputs and 300,000 tokens (64 x 800-token chunks)
BATCH = 64


class EmbeddingsError(RuntimeError):
    """The embeddings endpoint failed; the message says which endpoint and how."""


class EmbeddingsClient:
    """Turns texts into unit-length float32 vectors with one model at one endpoint."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        import openai

        self.base_url, self.model = base_url, model
        key = api_key or os.environ.get(KEY_ENV) or "not-needed"  # local servers take any key
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=2)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, each of length 1 (so a dot product is the cosine)."""
        import openai

        rows: list[np.ndarray] = []
        for start in range(0, len(texts), BATCH):
            batch = list(texts[start : start + BATCH])
            try:
                answer = self._client.embeddings.create(model=self.model, input=batch, encoding_format="float")
            except openai.APIStatusError as exc:
                raise EmbeddingsError(f"The embeddings endpoint {self.base_url} answered {exc.status_code}: "
                                      f"{exc.message}. Check --embeddings-model and {KEY_ENV}.") from None
            except openai.APIError as exc:
                raise EmbeddingsError(f"The embeddings endpoint {self.base_url} could not be used: {exc}. "
                                      "Is it running, and is --embeddings-base-url right?") from None
            data = sorted(answer.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise EmbeddingsError(f"The embeddings endpoint {self.base_url} returned {len(data)} vectors "
                                      f"for {len(batch)} inputs.")
            rows.append(np.asarray([item.embedding for item in data], dtype=np.float32))
        matrix = np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms == 0, 1, norms)
