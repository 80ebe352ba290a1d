# %% [markdown]
# # 04 · The chat panel
#
# Notebooks 01–03 made the API calls one by one. `tutor_nb.ChatPanel` makes the same calls for you
# (a thread, a message, a streamed run) and draws what comes back as a chat: the code while it is
# written, its output when it has run, then the answer.

# %% setup

# %% [markdown]
# ## 1. Open the panel
#
# Run the cell, type a question in the box, press **Send**. (Enter only adds a line, so that typing
# Korean or Japanese, where Enter confirms a character, never sends half a question.)

# %% tags=["panel"]
panel = tutor_nb.ChatPanel(client)
panel

# %% [markdown]
# ## 2. What to try
#
# Offline, the model's turns are replayed from recordings, so the panel can answer the questions
# recorded for these notebooks. Copy one into the box:
#
# - `Solve x^2 - 5x + 6 = 0 with code and explain the answer` (code, then an answer with formulas)
# - `Draw a bar chart of the first 10 square numbers` (a chart in the transcript)
# - `코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘` (notebook 01's question), or in English:
#   `Use code to make the first 20 Fibonacci numbers`
#
# Any other question gets a clear "no recorded turn" error. To ask anything, give it a real model:
# set `OPENAI_API_KEY` (or use Colab secrets) and run the set-up cell again, or point it at a model
# on your machine, e.g. Ollama: `client = tutor_nb.connect(model_base_url="http://127.0.0.1:11434/v1", model="llama3.1")`,
# then open a new panel.
#
# ## 3. How to read a turn
#
# - **Code** blocks are the run's `tool_calls` steps. The title says what is happening: *writing…*
#   while the model writes (the code grows line by line), *running…* while the sandbox runs it, then
#   *ran in 0.4 s*. Under the code: its **logs** (printed text, the last line's value, tracebacks) and
#   any **images**.
# - The **answer** under the code blocks is the `message_creation` step's message: Markdown, with
#   formulas typeset and links for files the code saved.
# - The **status line** under the transcript follows the run: *thinking*, *writing code*, *running
#   code*, *writing the answer*, and at the end how long it took and how many tokens it used (the
#   run's `usage`).
# - **Run here** runs a block's code in this notebook's kernel and compares the result with the
#   sandbox's logs (`tutor_nb.rerun` + `tutor_nb.compare`); **Copy to cell** puts the code in a new
#   cell below (`tutor_nb.to_cell`).
# - **Stop** cancels the run (`runs.cancel`); **New thread** starts a fresh conversation, with a new
#   Python session; **Export** gives the transcript as Markdown and JSON files.
#
# ## 4. Driving the panel from code
#
# `panel.send(text)` posts a question as if typed, and `panel.wait()` blocks until the run ends. The
# panel above shows the run as it happens.

# %% tags=["send"]
panel.send("Solve x^2 - 5x + 6 = 0 with code and explain the answer")
entry = panel.wait(timeout=180)

# %% [markdown]
# `panel.transcript` is the conversation as plain data, one dict per turn. An assistant turn has
# its `status`, its code `steps` (each with `code`, `logs`, `image_file_ids` and `status`), the
# answer `text` and the run's `usage`:

# %% tags=["transcript"]
print("status:", entry["status"], "| tokens:", (entry["usage"] or {}).get("total_tokens"))
for step in entry["steps"]:
    print("\n--- code ---")
    print(step["code"])
    print("--- logs ---")
    print(step["logs"])
print("\n--- answer ---")
print(entry["text"])

# %% [markdown]
# `panel.export()` gives the same conversation as Markdown (or JSON with `panel.export("json")`),
# to keep or share:

# %%
print(panel.export())
