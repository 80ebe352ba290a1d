# %% [markdown]
# # 07 · The same question on the Responses API
#
# OpenAI replaced the Assistants API with the **Responses API**. What took an assistant, a thread, a
# message and a run is now one request, `client.responses.create(...)`, and what the run steps told you
# is now in the response's **output items**. The code interpreter is still there: it runs in a
# **container** (a kernel plus its `/mnt/data` folder), which a chain of responses keeps using.
#
# This is the API you will meet with an OpenAI key today, so this notebook asks the walkthrough's
# question again, and then:
#
# 1. reads the output items field by field;
# 2. re-runs the model's code here and compares it with the sandbox's output;
# 3. asks a follow-up with `previous_response_id` (same container, same variables);
# 4. gives a container a file, and gets a file back from it;
# 5. maps every Assistants object to its Responses counterpart;
# 6. with an OpenAI key, sends the same request to OpenAI's hosted code interpreter and compares.
#
# ## Set-up

# %% setup

# %% [markdown]
# ## 1. One request
#
# The assistant's `instructions`, `model` and `tools` go in the request itself; the user's message is
# its `input`. The code interpreter needs a container: `{"type": "auto"}` makes one (or reuses the one a
# chain already has). `include` asks for the code's output (logs and images) in the answer; without it
# the code interpreter call carries the code only.

# %% tags=["create"]
import textwrap

TUTOR = "You are a personal math tutor. When asked a math question, write and run code to answer the question."
QUESTION = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"
code_interpreter = {"type": "code_interpreter", "container": {"type": "auto"}}

response = client.responses.create(
    model="gpt-4o",
    instructions=TUTOR,
    input=QUESTION,
    tools=[code_interpreter],
    include=["code_interpreter_call.outputs"],
)
print(response.id, response.status)
print(response.output_text)

# %% [markdown]
# `responses.create` returned when the response was done: there is no run to poll. (With
# `background=True` it returns at once and you `retrieve` it later; with `stream=True` you get events as
# they happen.) `response.output_text` joins the text of every message in the output.
#
# ## 2. The output items, field by field
#
# `response.output` is a list of items in the order they happened. Here: the model wrote code (a
# `code_interpreter_call`), then answered (a `message`). That is the same story the run steps
# (`tool_calls`, then `message_creation`) told.

# %% tags=["items"]
for index, item in enumerate(response.output):
    print(f"output[{index}]: {item.type}")
    if item.type == "code_interpreter_call":
        print("  id:          ", item.id)
        print("  status:      ", item.status)
        print("  container_id:", item.container_id, "  <- where the code ran")
        print("  code:")
        print(textwrap.indent(item.code, "    "))
        for output in item.outputs or []:
            shown = output.logs if output.type == "logs" else output.url
            print(f"  outputs[]: {output.type}: {shown}")
    elif item.type == "message":
        print("  id:    ", item.id)
        print("  role:  ", item.role, "  status:", item.status)
        for part in item.content:
            print(f"  content[]: {part.type} ({len(part.annotations)} annotations)")
            print(textwrap.indent(part.text, "    "))

# %% [markdown]
# The whole response, with its settings echoed back (`model`, `instructions`, `tools`, `tool_choice`,
# `temperature`...) and the tokens it used (`usage`):

# %% tags=["json"]
tutor_nb.show_json(response)

# %% [markdown]
# ## 3. Run the model's code here
#
# `tutor_nb.code_calls` reads a response as it reads run steps, so `rerun` and `compare` work as in the
# walkthrough: the code runs in this notebook, and the result is checked against the container's logs.

# %% tags=["compare"]
call = tutor_nb.code_calls(response)[-1]
result = tutor_nb.rerun(call)
tutor_nb.compare(call, result)

# %% [markdown]
# ## 4. A follow-up: `previous_response_id`
#
# A thread kept the conversation for you. Here you chain: `previous_response_id` makes the earlier
# response (its input and output) the history of the new one, and its code runs in the **same
# container**, so the variable `fibonacci_numbers` the first code made is still there. (Instructions do
# not carry over: send them again.)

# %% tags=["chain"]
follow_up = client.responses.create(
    model="gpt-4o",
    instructions=TUTOR,
    input="그중 짝수만 코드로 골라줘",
    tools=[code_interpreter],
    include=["code_interpreter_call.outputs"],
    previous_response_id=response.id,
)
follow_call = tutor_nb.code_calls(follow_up)[-1]
print(follow_call.code)
print("->", follow_call.logs.strip())
print("same container:", follow_call.container_id == call.container_id)
print(follow_up.output_text)

# %% [markdown]
# The chain is stored on the server: `input_items` lists what a response was given (here, the follow-up
# question alone; the history comes from `previous_response_id`).

# %% tags=["input-items"]
for item in client.responses.input_items.list(follow_up.id):
    print(item.type, item.role, item.content[0].text)

# %% [markdown]
# ## 5. A container's files
#
# A container can be made on its own, given files, and named in the tool (`"container": container.id`).
# Files you add are in the code's `/mnt/data`; files the code writes there are listed with
# `source: "assistant"`, and when the answer names one it carries a `container_file_citation`.

# %% tags=["container"]
container = client.containers.create(name="gradebook", expires_after={"anchor": "last_active_at", "minutes": 20})
scores = "name,quiz1,quiz2,quiz3\nSara,95,85,91\nLeo,72,68,80\n민준,88,92,79\n"
client.containers.files.create(container.id, file=("scores.csv", scores.encode()))

averaged = client.responses.create(
    model="gpt-4o",
    instructions=TUTOR,
    input="Use code to compute each student's average quiz score from scores.csv and save the averages to a CSV file.",
    tools=[{"type": "code_interpreter", "container": container.id}],
    include=["code_interpreter_call.outputs"],
)
print(averaged.output_text)
answer = averaged.output[-1].content[0]
for note in answer.annotations:
    print(f"{note.type}: {note.filename} = {note.file_id}, at {answer.text[note.start_index:note.end_index]!r}")

# %% [markdown]
# The container's file list has the upload and what the code wrote; the cited file downloads by its id:

# %% tags=["container-files"]
for file in client.containers.files.list(container.id):
    print(f"{file.path:24} {file.source:9} {file.bytes:>4} bytes  {file.id}")
cited = answer.annotations[0]
data = client.containers.files.content.retrieve(cited.file_id, container_id=container.id).read()
print(data.decode())

# %% [markdown]
# A container unused for `expires_after.minutes` **expires**: its kernel and files are gone, it still
# answers `retrieve` with `status: "expired"`, and using it is an error ("Container is expired."). Delete
# one when you are done with it:

# %% tags=["container-delete"]
import openai

client.containers.delete(container.id)
try:
    client.containers.retrieve(container.id)
except openai.NotFoundError as error:
    print("after delete:", error.status_code, error.body["message"])

# %% [markdown]
# ## 6. From the Assistants API to the Responses API
#
# | Assistants API | Responses API |
# |---|---|
# | assistant (`instructions`, `model`, `tools`) | the same fields on each request (or a stored prompt) |
# | thread | a chain of `previous_response_id`, or a conversation (`client.conversations`) |
# | message (user) | the request's `input` (a string, or input items) |
# | run, `create_and_poll` | response, `responses.create` (returns when done; `background=True` to poll) |
# | run step `tool_calls` (code_interpreter) | output item `code_interpreter_call` (`code`, `outputs`, `container_id`) |
# | run step `message_creation`, assistant message | output item `message` (`output_text`, annotations) |
# | a thread's code interpreter session | a container (`client.containers`) |
# | `tool_resources.code_interpreter.file_ids` | `container: {"type": "auto", "file_ids": [...]}`, or container files |
# | file path annotation (`sandbox:/mnt/data/...`) | `container_file_citation` annotation |
# | `requires_action`, `submit_tool_outputs` | a `function_call` item; the next request sends a `function_call_output` |
# | stream events `thread.run.step.delta` | `response.code_interpreter_call_code.delta` and friends |
#
# The same question on both APIs, side by side:

# %% tags=["side-by-side"]
assistant = client.beta.assistants.create(model="gpt-4o", instructions=TUTOR, tools=[{"type": "code_interpreter"}])
thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
print("Assistants: run", run.status, [step.type for step in steps.data])
print("Responses:  response", response.status, [item.type for item in response.output])
print("same code:", tutor_nb.last_code(steps) == tutor_nb.last_code(response))

# %% [markdown]
# ## 7. OpenAI's hosted code interpreter
#
# With an OpenAI key (see `tutor_nb.load_api_key`), the same request goes to OpenAI, whose code runs in
# OpenAI's own container. Then its code runs here too, and `compare` says whether the hosted run and the
# local re-run agree. Without a key these cells say what they would do, and move on.

# %% tags=["hosted"]
key = tutor_nb.load_api_key(required=False)
hosted = None
if key is None:
    print("No OpenAI key configured: with one, this cell sends the same request to OpenAI's hosted code interpreter.")
else:
    hosted = openai.OpenAI(api_key=key).responses.create(
        model="gpt-4o",
        instructions=TUTOR,
        input=QUESTION,
        tools=[code_interpreter],
        include=["code_interpreter_call.outputs"],
    )
    hosted_call = tutor_nb.code_calls(hosted)[-1]
    print("OpenAI's container:", hosted_call.container_id)
    print(hosted_call.code)
    print(hosted.output_text)

# %% tags=["hosted-compare"]
from IPython.display import display

if hosted is None:
    print("Offline: with a key, this cell re-runs OpenAI's code here and compares it with OpenAI's logs (tutor_nb.compare).")
else:
    display(tutor_nb.compare(hosted_call, tutor_nb.rerun(hosted_call)))
