# %% [markdown]
# # 05 · File search: answers from what you uploaded
#
# The code interpreter lets a model *compute*. **File search** lets it *look things up*: you upload
# documents into a **vector store**, and when a question needs them the model searches the store, reads
# the passages it finds, and answers from them, citing where each fact came from. This pattern is often
# called RAG (retrieval-augmented generation).
#
# tutor_nb's runtime does this on your machine with nothing to download: files are read (text, Markdown,
# PDF, Word, PowerPoint, HTML), cut into overlapping chunks of 800 tokens, and indexed with **BM25** in
# SQLite's full-text search. In this notebook you will:
#
# 1. upload a small course's notes (Markdown, a PDF, a Korean text) and put them in a vector store;
# 2. search the store yourself, with and without filters;
# 3. ask an assistant, read its `file_search` step, the passages it got, and the citations in its answer;
#    then the same with the Responses API;
# 4. see what word search finds and what it misses, and what an embeddings model changes.
#
# ## Set-up

# %% setup

# %% [markdown]
# ## 1. The course notes, uploaded
#
# `tutor_nb.course_notes()` gives the three files this lesson uses. Each is uploaded the usual way, with
# `purpose="assistants"`.

# %% tags=["upload"]
import time

notes = {}
for path in tutor_nb.course_notes():
    with open(path, "rb") as f:
        notes[path.name] = client.files.create(file=f, purpose="assistants")
for name, file in notes.items():
    print(f"{file.id}  {file.bytes:>5} bytes  {name}")

# %% [markdown]
# ## 2. A vector store
#
# A vector store holds files ready to be searched. Creating it with `file_ids` starts indexing in the
# background: the store answers at once with `status="in_progress"`, and `file_counts` shows the progress.
# Wait until it is `completed`.

# %% tags=["store"]
store = client.vector_stores.create(name="CS101 notes", file_ids=[f.id for f in notes.values()])
print("just created:", store.status, store.file_counts)
while store.status == "in_progress":
    time.sleep(0.2)
    store = client.vector_stores.retrieve(store.id)
print("now:", store.status, store.file_counts, f"{store.usage_bytes} bytes of text")

# %% [markdown]
# Not every file can be searched. A chart is an image, not text: adding one to the store ends with
# `status="failed"` and a `last_error` that says why (images and data files are for the code interpreter).

# %% tags=["unsupported"]
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

figure = plt.figure(figsize=(2, 2))
plt.plot([1, 2, 3])
png = io.BytesIO()
figure.savefig(png, format="png")
plt.close(figure)
chart = client.files.create(file=("chart.png", png.getvalue()), purpose="assistants")
failed = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=chart.id)
print(failed.status, "-", failed.last_error.code)
print(failed.last_error.message)

# %% [markdown]
# ## 3. Searching the store yourself
#
# `vector_stores.search` is what the model's tool calls, and you can call it too. Each result is a chunk
# of a file with a **score** between 0 and 1 (near 1: every word of the query, many times; near 0: a
# passing mention). The query names no file: the search finds the PDF by what it says.

# %% tags=["search"]
def show(results) -> None:
    for r in results:
        snippet = " ".join(r.content[0].text.split())[:90]
        print(f"{r.score:.3f}  {r.filename:24}  {snippet}")


show(client.vector_stores.search(store.id, query="greatest common divisor"))

# %% [markdown]
# Korean glues particles to its words (`피보나치수열의` is "of the Fibonacci sequence"), and Chinese and
# Japanese put no spaces at all, so a search by whole words would miss them. The index splits such text
# into overlapping pairs of characters, so `피보나치 수열` finds `피보나치수열의`.

# %% tags=["korean-search"]
show(client.vector_stores.search(store.id, query="피보나치 수열"))

# %% [markdown]
# Files in a store can carry **attributes** (up to 16 keys: strings, numbers, booleans), and a search can
# filter on them: `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `nin`, combined with `and` / `or`.

# %% tags=["filters"]
for week, name in enumerate(sorted(notes), start=1):
    client.vector_stores.files.update(notes[name].id, vector_store_id=store.id, attributes={"week": week})
query = "Fibonacci 피보나치"
print("every week:")
show(client.vector_stores.search(store.id, query=query))
print("week 2 and later:")
show(client.vector_stores.search(store.id, query=query, filters={"type": "gte", "key": "week", "value": 2}))

# %% [markdown]
# ## 4. An assistant that searches
#
# Give an assistant the `file_search` tool and the store (in `tool_resources`). When a question needs the
# notes, the run searches them before the model answers.

# %% tags=["run"]
assistant = client.beta.assistants.create(
    name="CS101 teaching assistant",
    instructions="Answer questions about the course from its notes.",
    model="gpt-4o",
    tools=[{"type": "file_search"}],
    tool_resources={"file_search": {"vector_store_ids": [store.id]}},
)
thread = client.beta.threads.create(messages=[
    {"role": "user", "content": "How does the Euclidean algorithm find the greatest common divisor?"}])
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
print("status:", run.status)

# %% [markdown]
# The search is a `tool_calls` step of type `file_search`, with its `ranking_options` and its
# `results`. The results' text is left out unless `include` asks for it. `tutor_nb.search_calls` shows
# what was searched for and what came back.

# %% tags=["search-calls"]
steps = client.beta.threads.runs.steps.list(
    thread_id=thread.id, run_id=run.id, order="asc",
    include=["step_details.tool_calls[*].file_search.results[*].content"],
)
(search,) = tutor_nb.search_calls(steps)
search

# %% [markdown]
# The answer cites its sources. The model wrote markers like `【0†week2_euclid.pdf】`; the API kept them in
# the text and put a `file_citation` **annotation** over each one, naming the file. OpenAI's Cookbook
# turns them into footnotes like this:

# %% tags=["answer"]
message = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
text = message.content[0].text
answer, footnotes = text.value, []
for index, annotation in enumerate(text.annotations):
    answer = answer.replace(annotation.text, f"[{index}]")
    cited = client.files.retrieve(annotation.file_citation.file_id)
    footnotes.append(f"[{index}] {cited.filename}")
print(answer)
print("\n".join(footnotes))

# %% [markdown]
# The same in Korean: the model searches with Korean words and cites the Korean notes.

# %% tags=["korean-run"]
thread = client.beta.threads.create(messages=[{"role": "user", "content": "피보나치 수열은 어떻게 정의돼?"}])
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
message = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
print(message.content[0].text.value)
cited = {client.files.retrieve(a.file_citation.file_id).filename for a in message.content[0].text.annotations}
print("cites:", ", ".join(sorted(cited)))

# %% [markdown]
# ### The same with the Responses API
#
# The Responses API takes the tool and its stores in one request. Its output holds a `file_search_call`
# item (its `queries`, and its `results` when `include` asks for them) before the message; the message's
# `file_citation` annotations give the file and the `index` in the text where each citation belongs (the
# Responses API takes the markers out of the text).

# %% tags=["responses"]
response = client.responses.create(
    model="gpt-4o",
    input="How does the Euclidean algorithm find the greatest common divisor?",
    tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
    include=["file_search_call.results"],
)
print([item.type for item in response.output])
display(tutor_nb.search_calls(response)[0])
print(response.output_text)
for annotation in response.output[-1].content[0].annotations:
    print(f"{annotation.type} at {annotation.index}: {annotation.filename}")

# %% [markdown]
# ## 5. What word search finds, and what it misses
#
# BM25 ranks chunks by the query's **words**: a chunk scores higher when it holds more of them, more
# often, and when they are rare in the store. It finds exact terms, names and numbers very well (`gcd`).
# It knows nothing about **meaning**: "highest common factor" is another name for the greatest common
# divisor, but only the word "common" matches, so the score is low; and "golden ratio" finds nothing,
# although the Korean notes talk about exactly that (황금비).

# %% tags=["misses"]
for query in ["gcd", "highest common factor", "golden ratio", "황금비"]:
    results = client.vector_stores.search(store.id, query=query).data
    best = f"{results[0].score:.3f} {results[0].filename}" if results else "nothing found"
    print(f"{query!r:26} -> {best}")

# %% [markdown]
# ## 6. With an embeddings model
#
# An **embeddings** model turns text into vectors whose closeness follows meaning, across wordings and
# even languages. Start the runtime with one (any OpenAI-compatible `/v1/embeddings` endpoint: OpenAI,
# or a local Ollama with `nomic-embed-text`), and each chunk is embedded too; searches then rank by both
# BM25 and vector similarity, merged by reciprocal-rank fusion:
#
# ```bash
# export TUTOR_NB_EMBEDDINGS_API_KEY=...      # if the endpoint needs a key
# python -m tutor_nb serve --embeddings-base-url https://api.openai.com/v1 --embeddings-model text-embedding-3-small
# ```
#
# The next cell compares the two rankings when you set `EMBEDDINGS_BASE_URL` and `EMBEDDINGS_MODEL`
# before running it; offline it only says so.

# %% tags=["embeddings"]
import os

if os.environ.get("EMBEDDINGS_BASE_URL") and os.environ.get("EMBEDDINGS_MODEL"):
    from tutor_nb.runtime import start

    hybrid = start(embeddings_base_url=os.environ["EMBEDDINGS_BASE_URL"],
                   embeddings_model=os.environ["EMBEDDINGS_MODEL"])
    other = hybrid.client()
    ids = [other.files.create(file=open(p, "rb"), purpose="assistants").id for p in tutor_nb.course_notes()]
    fused = other.vector_stores.create(name="CS101 notes, with embeddings", file_ids=ids)
    while other.vector_stores.retrieve(fused.id).status == "in_progress":
        time.sleep(0.2)
    for query in ["highest common factor", "golden ratio"]:
        print(query)
        show(other.vector_stores.search(fused.id, query=query))
    hybrid.stop()
else:
    print("No embeddings endpoint configured: BM25 alone ranks the searches in this notebook.")
