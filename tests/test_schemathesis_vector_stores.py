"""Fuzz /v1/vector_stores with schemathesis against OpenAI's own description of it.

Every vector store operation (stores, files, file batches, search), valid and invalid requests,
sent over HTTP to a real runtime: no answer may be a server error, and every answer must match
the response schema in OpenAI's description. Path ids are drawn mostly from objects made first,
so requests reach the handlers. The exclusion is the one ``test_schemathesis`` documents (null
``first_id``/``last_id`` on an empty list, as OpenAI sent them and the SDK types them).
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest

from reliability import read_store
from test_schemathesis import allowing_null_list_ids, fuzz

SPEC = Path(__file__).resolve().parent / "spec" / "vector_stores.openapi.yaml"  # vendored, with its MIT licence
PATHS = r"^/vector_stores(/|$)"
EXAMPLES = 25
#: an error inside hypothesis while it builds coverage cases for one body schema on Python 3.11 (it
#: describes a lambda by its source); no request is sent for it, so it says nothing about the runtime
HYPOTHESIS_BUG = "AST constructor recursion depth mismatch"

pytestmark = pytest.mark.slow


def seed(client) -> dict[str, list[str]]:
    """A few stores with indexed files and a batch each, for the fuzzer to aim at."""
    ids: dict[str, list[str]] = {"vector_store_id": [], "file_id": [], "batch_id": []}
    for n in range(3):
        files = [client.files.create(file=(f"notes{n}_{k}.md", io.BytesIO(f"Week {n}: topic {k} notes".encode())),
                                     purpose="assistants").id for k in range(2)]
        vs = client.vector_stores.create(name=f"fuzz {n}", file_ids=files[:1])
        batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=vs.id, file_ids=files[1:])
        assert batch.status == "completed"
        ids["vector_store_id"].append(vs.id)
        ids["file_id"] += files
        ids["batch_id"].append(batch.id)
    deadline = time.monotonic() + 30
    while any(client.vector_stores.retrieve(v).status == "in_progress" for v in ids["vector_store_id"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return ids


def test_fuzzed_vector_store_requests_get_no_server_error_and_match_openais_schemas(tmp_path, fault_report):
    pytest.importorskip("schemathesis")
    yaml = pytest.importorskip("yaml")
    from tutor_nb.runtime import start

    spec = tmp_path / "vector_stores.openapi.json"
    spec.write_text(json.dumps(allowing_null_list_ids(yaml.safe_load(SPEC.read_text(encoding="utf-8")))))
    rt = start(backend="replay", data_dir=tmp_path / "data", pool_size=0)
    try:
        ids = seed(rt.client(max_retries=0))
        done = fuzz(rt, spec, ids, seed=13, examples=EXAMPLES, paths=PATHS)
    finally:
        rt.stop()
    integrity, stored = read_store(tmp_path / "data")
    out = done.stdout + done.stderr
    internal = out.count(HYPOTHESIS_BUG)
    assert done.returncode == 0 or (internal and "Failures:" not in out
                                    and f"Runtime Error: {internal}" in out), out[-6000:]
    summary = re.search(r"(\d+) generated", out)
    operations = re.search(r"Tested: (\d+)", out)
    assert summary is not None and operations is not None, out[-3000:]
    generated = int(summary.group(1))
    assert generated > 300 and int(operations.group(1)) >= 16, out[-3000:]
    assert integrity == "ok"
    fault_report("schemathesis fuzzing of /v1/vector_stores against OpenAI's API description", trials=generated,
                 outcome=f"{generated} generated requests (valid and invalid) on {operations.group(1)} operations: "
                         "0 server errors, 0 response-schema violations (the documented null first_id/last_id "
                         "exclusion)",
                 nothing_lost=f"integrity_check ok; all {len(stored)} stored rows parse as the SDK's types")
