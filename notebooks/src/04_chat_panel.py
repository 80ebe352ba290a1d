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
# Offline, the model's turns are replayed from recordings (the code in them still runs for real),
# so the panel can answer the questions recorded for it: they are the buttons under the input.
# Click one; **other questions** shows more (arithmetic, algebra, statistics, plots, and code that
# fails and is fixed). `panel.suggestions` lists them all:

# %% tags=["suggestions"]
for question in panel.suggestions:
    print("-", question)

# %% [markdown]
# A question with no recording gets one short line saying so (the details fold out). To ask
# anything, give the panel a real model: set `OPENAI_API_KEY` (or use Colab secrets) and run the
# set-up cell again, or point it at a model on your machine, e.g. Ollama:
# `client = tutor_nb.connect(model_base_url="http://127.0.0.1:11434/v1", model="llama3.1")`,
# then open a new panel.
#
# ## 3. How to read a turn
#
# - **Code** blocks are the run's `tool_calls` steps. The title says what is happening: *writing…*
#   while the model writes (the code grows line by line), *running (3 s)…* while the sandbox runs
#   it, then *ran in 0.4 s*. Under the code: its **logs** (printed text, the last line's value,
#   tracebacks) and any **images**.
# - The **answer** under the code blocks is the `message_creation` step's message: Markdown, with
#   formulas typeset and links that download the files the code saved.
# - The **status line** under the transcript follows the run: *thinking…*, *writing code…*,
#   *running code (N s)*, *reading output…* (the model reads what the code printed), *writing the
#   answer…*, and at the end how long it took and how many tokens it used (the run's `usage`).
#   `panel.status` is the same text, for scripts.
# - **Run here** runs a block's code in this notebook's kernel and compares the result with the
#   sandbox's logs (`tutor_nb.rerun` + `tutor_nb.compare`). **Copy to cell** puts the code in a new
#   cell right below the panel in JupyterLab and Notebook 7; where a page cannot insert cells (Colab,
#   VS Code) it copies the code to the clipboard; either way the panel says which it did.
# - **Stop** cancels the run (`runs.cancel`); **New thread** starts a fresh conversation, with a new
#   Python session; **Export** gives the transcript as Markdown (charts included) and JSON files.
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
tutor_nb.show_message(entry["text"])  # Markdown and math, as the panel shows them

# %% [markdown]
# `panel.export()` gives the same conversation as Markdown (or JSON with `panel.export("json")`),
# to keep or share; charts are embedded in it as data URIs (or written beside it with
# `panel.export(images="transcript_files")`):

# %%
print(panel.export())

# %% [markdown]
# ## 5. The same panel on the Responses API
#
# OpenAI's newer Responses API does the same work with other objects: a response instead of a run,
# `code_interpreter_call` items instead of run steps, and `previous_response_id` (or a conversation)
# instead of a thread. `api="responses"` draws it the same way; ask it the same questions:

# %% tags=["responses-panel"]
responses_panel = tutor_nb.ChatPanel(client, api="responses")
responses_panel
