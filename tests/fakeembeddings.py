"""A stand-in ``/v1/embeddings`` server for tests: real HTTP on 127.0.0.1, OpenAI's wire format.

Its "model" hashes words into a small vector space, with a few groups of synonyms sharing a
dimension, so it finds what plain word matching misses (``automobile`` for ``car``), as a real
embeddings model would::

    with FakeEmbeddings() as fake:
        client = EmbeddingsClient(fake.base_url, "fake-embed")
        ...
        fake.requests  # the JSON bodies it received
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIMENSIONS = 64
SYNONYMS = [
    {"car", "cars", "automobile", "automobiles", "vehicle", "vehicles", "자동차"},
    {"refund", "refunds", "reimbursement", "money", "back", "환불"},
    {"sequence", "series", "수열"},
]


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        group = next((i for i, words in enumerate(SYNONYMS) if word in words), None)
        if group is not None:
            slot = group
        else:
            slot = len(SYNONYMS) + int(hashlib.sha1(word.encode()).hexdigest(), 16) % (DIMENSIONS - len(SYNONYMS))
        vector[slot] += 1.0
    return vector


class FakeEmbeddings:
    """Serves ``POST /v1/embeddings``; ``status`` set to an HTTP code makes every call fail with it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake.requests.append(body)
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                                      "param": None, "code": None}})
                if fake.status:
                    return self._send(fake.status, {"error": {"message": "no embeddings for you",
                                                              "type": "invalid_request_error",
                                                              "param": None, "code": "invalid_api_key"}})
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = []
                for i, text in enumerate(inputs):
                    vector: Any = embed(text)
                    if body.get("encoding_format") == "base64":
                        vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                    data.append({"object": "embedding", "index": i, "embedding": vector})
                tokens = sum(len(t.split()) for t in inputs)
                self._send(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeEmbeddings":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
