# %% [markdown]
# # 01 · How an assistant writes and runs code
#
# An assistant with the **code interpreter** tool does not guess at answers that need computing.
# It writes Python, runs it in a sandbox, reads what the code printed, and answers from that.
#
# In this notebook you build one, ask it for the first 20 Fibonacci numbers, and then open every
# object the API hands back to see exactly what happened. The question is in Korean, as in the blog
# post this walkthrough grew from; the assistant does not mind.
#
# Five objects come up:
#
# | object | what it is |
# |---|---|
# | **assistant** | a model with instructions and tools |
# | **thread** | one conversation |
# | **message** | one turn of the conversation, from the user or the assistant |
# | **run** | the assistant working on a thread until it has answered |
# | **run step** | one thing a run did: run code, or write a message |
#
# ## Set-up
#
# The next cell installs tutor_nb when you are in Colab, then `tutor_nb.connect()` gives you an
# `openai.OpenAI` client and prints one line saying what is behind it:
#
# - **no API key**: tutor_nb's offline runtime. The model's turns are replayed from recordings made
#   for these notebooks, but the code really runs, in a Python kernel on your machine.
# - **an API key** (`OPENAI_API_KEY` in the environment, a `.env` file or Colab secrets): the same
#   runtime with a real model, so you can ask your own questions.
#
# OpenAI switched its Assistants API off on 2026-08-26; tutor_nb serves the same API locally, so the
# calls below are exactly the ones you would have made to OpenAI.

# %% setup

# %% [markdown]
# ## 1. The assistant
#
# An assistant is a saved set-up: a model, its instructions, and its tools.
# `tools=[{"type": "code_interpreter"}]` is what allows it to run code.
# `tutor_nb.show_json` shows any API object as a collapsible tree (click to open it), with plain text
# where the tree cannot be drawn.

# %% tags=["assistant"]
assistant = client.beta.assistants.create(
    name="Math tutor",
    instructions="You are a personal math tutor. When asked a math question, write and run code to answer the question.",
    model="gpt-4o",
    tools=[{"type": "code_interpreter"}],
)
tutor_nb.show_json(assistant)

# %% [markdown]
# Worth reading: `id` (starts with `asst_`; every run names it), `instructions`, `model` and `tools`.
# An assistant remembers no conversations: those live in threads.
#
# ## 2. A thread and a question
#
# A thread holds the messages of one conversation. The question goes in as a `user` message. It
# says: *"Using code, make the first 20 Fibonacci numbers."*

# %%
thread = client.beta.threads.create()
question = client.beta.threads.messages.create(
    thread_id=thread.id,
    role="user",
    content="코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘",
)
print(thread.id)
print(question.content[0].text.value)

# %% [markdown]
# ## 3. A run
#
# A new message does not wake the assistant up; a **run** does. `create_and_poll` starts a run and
# asks for its status until the run stops. On the way a run goes `queued` → `in_progress` → and then
# `completed`, or `failed`, `cancelled`, `expired`, or `requires_action` (waiting for you to supply
# the result of one of your own functions).

# %% tags=["run"]
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
tutor_nb.show_json(run)

# %% [markdown]
# The fields worth reading:
#
# - `status`: `completed` means the assistant has answered. Anything else: `last_error.message`
#   says what went wrong.
# - `usage`: the tokens the model read (`prompt_tokens`) and wrote (`completion_tokens`). A run can
#   call the model more than once (here: once to write the code, once more to answer after reading its
#   output), and `usage` adds them up.
# - `started_at`, `completed_at`: Unix times in seconds; the difference is how long the run took.
# - `instructions`, `model`, `tools`: copied from the assistant when the run started (a run may
#   override them).

# %%
print("status:", run.status)
if run.last_error:
    print("error:", run.last_error.message)
if run.usage:
    print(f"tokens: {run.usage.prompt_tokens} read + {run.usage.completion_tokens} written = {run.usage.total_tokens}")

# %% [markdown]
# ## 4. The messages
#
# The answer is a new message in the thread. `messages.list` returns the newest first.

# %% tags=["messages"]
messages = client.beta.threads.messages.list(thread_id=thread.id)
tutor_nb.show_json(messages)

# %% [markdown]
# Each message has a `role`, and the assistant's also has the `run_id` of the run that wrote it.
# `content` is a list of blocks: `text` blocks (the words in `text.value`, links to files in
# `text.annotations`) and `image_file` blocks when code drew a chart. The words are Markdown, with
# math in LaTeX, exactly as the model wrote them:

# %% tags=["answer-raw"]
answer_text = next(block.text.value for block in messages.data[0].content if block.type == "text")
print(answer_text)

# %% [markdown]
# `tutor_nb.show_message` shows a message (or a page of them) as a chat would: Markdown rendered,
# math typeset, files the answer links to as download links (pass `client=` to fetch them). Oldest
# first:

# %% tags=["answer"]
tutor_nb.show_message(list(reversed(messages.data)), client=client)

# %% [markdown]
# ## 5. The run steps: what the assistant did
#
# The answer does not say how it was made. The run's **steps** do. List them oldest first with
# `order="asc"`.

# %% tags=["steps"]
steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
for step in steps.data:
    print(step.type, step.status)
tutor_nb.show_json(steps)

# %% [markdown]
# There are two types of step:
#
# - **`tool_calls`**: the model used a tool. For the code interpreter, each call in
#   `step_details.tool_calls` holds `code_interpreter.input`, the code the model wrote, and
#   `code_interpreter.outputs`: `logs` (everything the code printed, the value of its last line,
#   tracebacks) and `image` (a chart, as a file id).
# - **`message_creation`**: the model wrote a message; `message_creation.message_id` says which.
#
# Each step has its own `usage`: the `tool_calls` step is the model writing code, the
# `message_creation` step is the model reading the output and writing the answer.
#
# ## 6. The code and what it printed
#
# You could dig the code out by hand with `steps.data[0].step_details.tool_calls[0].code_interpreter.input`,
# but that breaks as soon as a run looks different (two pieces of code, a message before the code).
# `tutor_nb.code_calls` collects every code-interpreter call of the steps, in order.

# %% tags=["code-calls"]
calls = tutor_nb.code_calls(steps, client=client)
for call in calls:
    display(call)

# %% [markdown]
# The logs hold the 20 numbers, one per line: the code's last line is the bare name of the list,
# and the sandbox, like a notebook cell, shows the value of a last expression (a long list is
# printed one item per line).
#
# **Why a code interpreter can answer beyond the token limit.** Without a tool, a model writes every
# digit of its answer as tokens: slowly, sometimes wrongly, and only as much as its output limit
# allows. The first 1,000 Fibonacci numbers have over 100,000 digits between them, far more than a
# model can write in one answer. With the code interpreter the model writes only the short recipe;
# Python does the arithmetic exactly and at any size, and can save big results to a file instead of
# squeezing them into the reply. Changing `range(20)` to `range(1000)` makes the code no longer.
#
# ## 7. Run it here, and compare
#
# The code is plain Python. `tutor_nb.rerun` runs the last call's code in this notebook's own
# kernel, as if you had pasted it into a cell: its output appears below.

# %%
result = tutor_nb.rerun(calls[-1])

# %% [markdown]
# `tutor_nb.compare` checks that your run shows what the sandbox logged. When both sides read as
# Python values it compares the values, so the sandbox's one-number-per-line list and your one-line
# list count as the same.

# %% tags=["compare"]
tutor_nb.compare(calls[-1], result)

# %% [markdown]
# To edit the code and try it yourself, `tutor_nb.to_cell(calls[-1])` puts it in a new cell below.
#
# ## Next
#
# - **02 · Streaming and steps**: watch the code appear while the model writes it, see what happens
#   when generated code crashes, and stop a run halfway.
# - **03 · Files and plots**: upload data, get a chart and a file back.
# - **04 · The chat panel**: all of this in one chat widget.
