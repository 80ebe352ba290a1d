# %% [markdown]
# # 02 · Streaming and steps: watch the code as it is written
#
# `create_and_poll` (notebook 01) waits quietly and hands you the finished run. With **streaming**
# the server sends events while the run works: each piece of code as the model writes it, each output
# as soon as the code has run, each word of the answer.
#
# In this notebook you print those events as they arrive, see what happens when the generated code
# crashes, ask a follow-up that reuses the first answer's variables, and stop a run halfway.

# %% setup

# %% [markdown]
# ## 1. An assistant and a thread

# %%
assistant = client.beta.assistants.create(
    name="Math tutor",
    instructions="You are a personal math tutor. When asked a math question, write and run code to answer the question.",
    model="gpt-4o",
    tools=[{"type": "code_interpreter"}],
)
thread = client.beta.threads.create()

# %% [markdown]
# ## 2. An event handler
#
# `client.beta.threads.runs.stream(...)` calls methods of an `AssistantEventHandler` as events
# arrive. You override the ones you care about:
#
# | method | called when |
# |---|---|
# | `on_run_step_created` | a step starts: `tool_calls` (the model starts writing code) or `message_creation` |
# | `on_tool_call_delta` | more of a tool call arrived: a piece of `code_interpreter.input`, or the `outputs` once the code ran |
# | `on_text_created`, `on_text_delta` | the model starts its answer, and each piece of it |
# | `on_event` | every event, whatever its kind |
# | `on_end` | the stream is over |
#
# Outputs come as `logs` (printed text, the last line's value, tracebacks) or `image` (a file id).

# %%
from openai import AssistantEventHandler


class ShowProgress(AssistantEventHandler):
    """Prints code while the model writes it, outputs once the code has run, then the answer."""

    def __init__(self):
        super().__init__()
        self.event_names = []

    def on_event(self, event):
        self.event_names.append(event.event)

    def on_run_step_created(self, run_step):
        if run_step.type == "tool_calls":
            print("\n--- the model writes code ---")

    def on_tool_call_delta(self, delta, snapshot):
        if delta.type != "code_interpreter" or delta.code_interpreter is None:
            return
        if delta.code_interpreter.input:
            print(delta.code_interpreter.input, end="", flush=True)
        for output in delta.code_interpreter.outputs or []:
            if output.type == "logs":
                print(f"\n--- output (logs) ---\n{output.logs.rstrip()}", flush=True)
            elif output.type == "image":
                print(f"\n--- output (image) --- file {output.image.file_id}", flush=True)

    def on_text_created(self, text):
        print("\n--- answer ---")

    def on_text_delta(self, delta, snapshot):
        print(delta.value, end="", flush=True)

    def on_end(self):
        run = self.current_run
        print(f"\n\n--- run {run.status if run else 'ended'} ---")


def ask(question):
    """Post a question to the thread and stream the run that answers it; returns the handler."""
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=question)
    handler = ShowProgress()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
    return handler

# %% [markdown]
# ## 3. A streamed run
#
# Watch the code appear piece by piece, then its output, then the answer.

# %% tags=["stream"]
primes_run = ask("Use code to list the prime numbers below 50 and add them up")

# %% [markdown]
# The handler also kept the name of every event. In order, with repeats counted:

# %%
from itertools import groupby

for name, repeats in groupby(primes_run.event_names):
    count = len(list(repeats))
    print(name if count == 1 else f"{name}  × {count}")

# %% [markdown]
# How to read it: the run is created and starts (`thread.run.*`); a `tool_calls` **step** is created
# and its `delta`s carry the code, then the outputs; the step completes. Then a `message_creation`
# step: a **message** is created, its `delta`s carry the answer, it completes. `thread.run.completed`
# ends the run. A `delta` only carries what is new; `snapshot` (the second argument of the
# `*_delta` methods) holds everything so far.
#
# ## 4. A second run remembers the first
#
# Each thread has its own Python session in the sandbox (a Jupyter kernel), and it lives on between
# runs. The first run defined `primes`; ask a follow-up, and the new code uses it without defining it
# again.

# %% tags=["follow-up"]
twins_run = ask("Which of those primes are twin primes?")

# %% [markdown]
# ## 5. When the generated code fails
#
# Generated code crashes sometimes. A crash does not end the run: the traceback becomes the call's
# `logs`, goes back to the model like any other output, and the model can fix its code and try again.

# %% tags=["error-run"]
growth_run = ask("Use code to compute the yearly growth rate of these sales: 0, 120, 150, 180")

# %% [markdown]
# Sales in the first year were 0, and a growth rate divides by the earlier year's sales. The
# recorded model (offline) falls into that trap: its first code stops with `ZeroDivisionError`.
# A live model may or may not. Either way the run's status is `completed`: an error *inside* the
# code is an output (so is a time-out: the sandbox stops the code and says so in the logs). A run
# is `failed` only when the run itself cannot go on, for example when the model cannot be reached.
# The steps show the retry:

# %% tags=["error-steps"]
run = growth_run.get_final_run()
steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
for step in steps.data:
    print(step.type, step.status)
for call in tutor_nb.code_calls(steps):
    display(call)

# %% [markdown]
# ## 6. Cancelling a run
#
# `runs.cancel` stops a run while it works. The next cell asks for slow code, starts the run with
# `runs.create` (which returns at once, without waiting), waits until the code is running, lets it
# count for two seconds, and cancels. The runtime interrupts the code, as the stop button of a
# notebook would.

# %% tags=["cancel"]
import time

client.beta.threads.messages.create(
    thread_id=thread.id, role="user",
    content="Use code to count slowly from 1 to 30, printing one number per second",
)
run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)


def code_is_running():
    """True once the model has finished writing the code: the sandbox runs it right away."""
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    try:
        return any(call.code for call in tutor_nb.code_calls(steps))
    except tutor_nb.RunNotCompletedError:  # no code yet, and the run goes on
        return False


deadline = time.monotonic() + 120
while not code_is_running() and time.monotonic() < deadline:
    time.sleep(0.2)
time.sleep(2)

run = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
if run.status in ("queued", "in_progress"):
    run = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
print("just after cancel:", run.status)
run = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
print("in the end:", run.status)
for step in client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data:
    print("step:", step.type, step.status)

# %% [markdown]
# `cancelling` is the moment between: the request was accepted and the code is being interrupted.
# The run, and its unfinished step, end `cancelled`. The Python session survives an interrupt, so
# the thread goes on. Ask how far the count got:

# %% tags=["after-cancel"]
after_run = ask("How far did the count get before it was stopped?")

# %% [markdown]
# ## What you saw
#
# - `runs.stream` with an `AssistantEventHandler` shows a run as it happens: steps, code deltas,
#   outputs, message deltas.
# - A traceback in the generated code is an output; the model reads it and can try again.
# - A thread's runs share one Python session, so variables carry over.
# - `runs.cancel` interrupts running code; the run ends `cancelled` and the session stays.
#
# Next: **03 · Files and plots**.
