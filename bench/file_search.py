"""Benchmark: file search indexing throughput and search latency over a corpus of 20 MB or more.

The corpus is made here, the same every run: about 110 Markdown files of 200 kB, words drawn
with Zipf's law from a vocabulary of the Python language reference's English words plus a long
tail of made-up words (as real text has), one file in ten Korean, with particles glued to the
words. Indexing is what a vector store's worker does with each file (read, chunk at 800/400
tokens, add to the FTS5 index in SQLite), timed per MB of text. The floor, measured in the same
run, stores the same chunks in a plain SQLite table: the least any index could cost.

Search runs a few hundred queries of one to four words (common, middling and rare words, and a
tenth Korean) and times each; a third are run again with an attribute filter that keeps half the
files (reported apart). The floor is a one-word query for a word that occurs once.

Wall-clock figures depend on what else the machine runs, so the CPU time behind them is reported
too: indexing's MB per CPU-second (both workers), and each search's CPU time on its thread.

Then the same corpus goes through the runtime over HTTP, as a learner's notebook would send it:
uploads, one vector store made with all the file ids (indexed by its background workers, polled
until completed), and 100 searches through the SDK.

    python bench/file_search.py [--mb 21] [--queries 300]
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import common

from tutor_nb.runtime.search import Bm25Index, chunk_text, index_file
from tutor_nb.runtime.search.chunking import encoding

TARGET_MB_PER_S = 2.0
TARGET_P95_MS = 50.0
FILE_BYTES = 200_000
WORKERS = 2


def vocabulary(rng: random.Random) -> list[str]:
    import pydoc_data.topics

    words = sorted({w.lower() for w in re.findall(r"[A-Za-z]{3,}", " ".join(pydoc_data.topics.topics.values()))})
    syllables = "ka ri to mel an sor vin da pe lu qu ex bra nor ti zo fa gen ol ur".split()
    tail: set[str] = set()
    while len(tail) < 40_000:
        tail.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    vocab = words + sorted(tail)
    rng.shuffle(vocab)
    return vocab


def korean_words(rng: random.Random) -> list[str]:
    syllables = [chr(c) for c in range(0xAC00, 0xAC00 + 11172, 37)]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(5000)]


def make_corpus(megabytes: float, seed: int = 7) -> tuple[list[str], list[str], list[str]]:
    """(files, English vocabulary by rank, Korean vocabulary by rank)."""
    rng = random.Random(seed)
    vocab, korean = vocabulary(rng), korean_words(rng)
    weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))
    k_weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(korean))))
    files: list[str] = []
    total = 0
    while total < megabytes * 1e6:
        parts, size, is_korean = [], 0, rng.random() < 0.1
        parts.append(f"# Notes {len(files)}\n\n")
        while size < FILE_BYTES:
            if is_korean:
                words = rng.choices(korean, cum_weights=k_weights, k=12)
                sentence = " ".join(w + rng.choice(("", "의", "은", "을", "에서")) for w in words) + ". "
            else:
                sentence = " ".join(rng.choices(vocab, cum_weights=weights, k=rng.randint(6, 20))).capitalize() + ". "
            parts.append(sentence)
            size += len(sentence.encode())
            if rng.random() < 0.1:
                parts.append("\n\n")
        text = "".join(parts)
        files.append(text)
        total += len(text.encode())
    return files, vocab, korean


def queries(vocab: list[str], korean: list[str], count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 10 == 0:
            out.append(" ".join(rng.choice(korean[:2000]) for _ in range(rng.randint(1, 2))))
            continue
        bands = [vocab[:100], vocab[100:3000], vocab[3000:30000]]  # common, middling, rare
        words = [rng.choice(rng.choice(bands)) for _ in range(rng.randint(1, 4))]
        out.append(" ".join(words) + (" the" if i % 3 == 0 else ""))
    return out


def floor_insert(db_path: Path, chunks_per_file: list[list[str]]) -> float:
    """Seconds to store the same chunks in a plain table, in the same batches: no index at all."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, file TEXT, ord INT, text TEXT)")
    begin = time.perf_counter()
    for f, chunks in enumerate(chunks_per_file):
        for start in range(0, len(chunks), 256):
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO plain (file, ord, text) VALUES (?, ?, ?)",
                           [(str(f), i, c) for i, c in enumerate(chunks[start:start + 256], start)])
            db.execute("COMMIT")
    seconds = time.perf_counter() - begin
    db.close()
    return seconds


def through_the_api(files: list[str], queries_: list[str], megabytes: float) -> dict[str, Any]:
    """The same corpus through the runtime over HTTP: uploads, one store, its background workers, SDK searches."""
    with common.runtime(pool_size=0) as rt:
        client = rt.client(max_retries=0)
        ids = [client.files.create(file=(f"notes{i:04d}.md", text.encode()), purpose="assistants").id
               for i, text in enumerate(files)]
        begin = time.perf_counter()
        store = client.vector_stores.create(name="bench", file_ids=ids)
        while store.status == "in_progress":
            time.sleep(0.05)
            store = client.vector_stores.retrieve(store.id)
        index_seconds = time.perf_counter() - begin
        assert store.file_counts.completed == len(files), store.file_counts
        latencies = []
        for query in queries_:
            begin = time.perf_counter()
            client.vector_stores.search(store.id, query=query, max_num_results=10)
            latencies.append(time.perf_counter() - begin)
    return {"index_seconds": round(index_seconds, 2), "index_mb_per_s": round(megabytes / index_seconds, 2),
            "search": common.summary(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=21.0, help="corpus size in MB of text (at least 20 for the target)")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    encoding()  # load the tokenizer once, outside the clock
    files, vocab, korean = make_corpus(args.mb)
    megabytes = sum(len(f.encode()) for f in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="tnb-bench-search-") as folder:
        index = Bm25Index(Path(folder) / "runtime.sqlite3")
        file_ids = [f"file-{i:04d}" for i in range(len(files))]
        begin, cpu_begin = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(WORKERS) as pool:  # as the runtime's indexing workers do
            done = pool.map(lambda job: index_file(index, "vs_bench", job[0], f"{job[0]}.md", job[1].encode()),
                            zip(file_ids, files))
            chunk_count = sum(indexed.chunks for indexed in done)
        index_seconds, index_cpu = time.perf_counter() - begin, time.process_time() - cpu_begin

        begin = time.perf_counter()
        chunked = [chunk_text(text) for text in files]
        chunk_seconds = time.perf_counter() - begin
        floor_seconds = floor_insert(Path(folder) / "floor.sqlite3", chunked)

        half = set(file_ids[::2])  # an attribute filter that keeps half the files
        latencies: dict[str, list[float]] = {"english": [], "korean": [], "filtered": []}
        cpu: list[float] = []
        found = 0
        for i, query in enumerate(queries(vocab, korean, args.queries)):
            begin, cpu_begin = time.perf_counter(), time.thread_time()
            hits = index.search("vs_bench", query, limit=10)
            latencies["korean" if re.search("[가-힣]", query) else "english"].append(time.perf_counter() - begin)
            cpu.append(time.thread_time() - cpu_begin)
            found += bool(hits)
            if i % 3 == 0:
                begin = time.perf_counter()
                index.search("vs_bench", query, limit=10, file_ids=half)
                latencies["filtered"].append(time.perf_counter() - begin)
        rare = vocab[-1]
        floor_search = []
        for _ in range(50):
            begin = time.perf_counter()
            index.search("vs_bench", rare, limit=10)
            floor_search.append(time.perf_counter() - begin)
        db_bytes = sum(p.stat().st_size for p in Path(folder).glob("runtime.sqlite3*"))
        index.close()
    api = through_the_api(files, queries(vocab, korean, 100, seed=23), megabytes)

    every = latencies["english"] + latencies["korean"]
    search = common.summary(every)
    result: dict[str, Any] = {
        "corpus": {"megabytes": round(megabytes, 2), "files": len(files), "chunks": chunk_count,
                   "korean_files": sum(bool(re.search("[가-힣]", f[:2000])) for f in files),
                   "database_mb": round(db_bytes / 1e6, 1)},
        "index": {
            "seconds": round(index_seconds, 2),
            "mb_per_s": round(megabytes / index_seconds, 2),
            "of_which_chunking_s": round(chunk_seconds, 2),
            "floor_plain_insert_s": round(floor_seconds, 2),
            "ratio_to_floor": round(index_seconds / max(floor_seconds, 1e-9), 1),
            "cpu_seconds": round(index_cpu, 2),
            "mb_per_cpu_second": round(megabytes / index_cpu, 2),
            "target_mb_per_s": TARGET_MB_PER_S,
        },
        "search": {
            **search,
            "english": common.summary(latencies["english"]),
            "korean": common.summary(latencies["korean"]),
            "cpu_per_query": common.summary(cpu),
            "with_a_filter_keeping_half_the_files": common.summary(latencies["filtered"]),
            "queries_with_hits": found,
            "floor_one_rare_word": common.summary(floor_search),
            "ratio_p95_to_floor_median": round(search["p95_ms"] / max(common.summary(floor_search)["median_ms"], 1e-6), 1),
            "target_p95_ms": TARGET_P95_MS,
        },
        "through_the_api": api,
        "target_met": megabytes / index_seconds >= TARGET_MB_PER_S and search["p95_ms"] < TARGET_P95_MS and megabytes >= 20,
    }
    common.report("file_search", result)


if __name__ == "__main__":
    main()
