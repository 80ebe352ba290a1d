# %% [markdown]
# # 06 · Your own function as a tool
#
# The code interpreter runs the model's code in a sandbox. A **function tool** is the other way round:
# the model asks for *your* function, with arguments it chose, and *you* run it, here in this notebook,
# and hand back what it returned. The model never sees your code, only its name, a description, and the
# shape of its arguments (a JSON Schema).
#
# A run that wants a function stops in the status `requires_action`. It waits until you submit the
# function's output, and then goes on to answer. In this notebook you will:
#
# 1. describe a Python function to an assistant;
# 2. see a run stop at `requires_action`, read the call, run the function, and submit its output;
# 3. write the loop that does this for any number of calls;
# 4. make the model call the function with `tool_choice`;
# 5. get the answer as JSON that fits a schema you wrote, with `response_format`;
# 6. do the same on the newer Responses API.
#
# ## Set-up

# %% setup

# %% [markdown]
# ## 1. The function, and its description
#
# A class gradebook and a function that looks a student up. It is ordinary Python: the assistant will
# only ever see what `get_scores` returns.

# %% tags=["function"]
import json

GRADEBOOK = {"Sara": [95, 85, 91], "Leo": [72, 68, 80], "민준": [88, 92, 79]}


def get_scores(student: str) -> dict:
    """The quiz scores of one student, or the names the gradebook knows."""
    if student not in GRADEBOOK:
        return {"error": f"no student named {student!r}", "students": sorted(GRADEBOOK)}
    return {"student": student, "scores": GRADEBOOK[student]}


get_scores("Sara")

# %% [markdown]
# The model reads the tool's **description** to decide *when* to call it, and its **parameters** (a
# JSON Schema) to decide *how*. With `"strict": True` the model's arguments always fit the schema
# exactly (every property listed in `required`, no others allowed).

# %% tags=["tool"]
scores_tool = {
    "type": "function",
    "function": {
        "name": "get_scores",
        "description": "Look up the quiz scores of one student in the class gradebook.",
        "parameters": {
            "type": "object",
            "properties": {"student": {"type": "string", "description": "The student's name, as written."}},
            "required": ["student"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}

assistant = client.beta.assistants.create(
    name="Teaching assistant",
    instructions="You help a teacher with the class. Look quiz scores up with get_scores; never guess them.",
    model="gpt-4o",
    tools=[scores_tool],
)
tutor_nb.show_json(assistant.tools)

# %% [markdown]
# ## 2. The run stops and asks for the function
#
# The question needs a score the model does not know. Instead of answering, the run stops in
# `requires_action`, and `run.required_action` says which function to call, with which arguments.

# %% tags=["requires-action"]
thread = client.beta.threads.create()
client.beta.threads.messages.create(thread_id=thread.id, role="user", content="What is Sara's average quiz score?")
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
print("status:", run.status)
tutor_nb.show_json(run.required_action)

# %% [markdown]
# Each call has an `id`, the function's `name`, and its `arguments` as a JSON **string** (the model
# wrote it; parse it before use).

# %% tags=["call"]
call = run.required_action.submit_tool_outputs.tool_calls[0]
arguments = json.loads(call.function.arguments)
print(call.function.name, arguments)
output = get_scores(**arguments)
output

# %% [markdown]
# Now hand the output back, as text (JSON is the usual choice), under the call's id. The run goes on and
# the model answers from what your function returned.

# %% tags=["answer"]
run = client.beta.threads.runs.submit_tool_outputs_and_poll(
    thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": json.dumps(output)}],
)
print("status:", run.status)
answer = client.beta.threads.messages.list(thread_id=thread.id, order="desc", limit=1).data[0]
print(answer.content[0].text.value)

# %% [markdown]
# The run's steps keep the whole exchange: a `tool_calls` step holding the function call, its arguments
# and the output you submitted, then the `message_creation` step of the answer.

# %% tags=["steps"]
steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
for step in steps.data:
    if step.type == "tool_calls":
        for tool_call in step.step_details.tool_calls:
            print(f"{step.type}: {tool_call.function.name}({tool_call.function.arguments}) -> {tool_call.function.output}")
    else:
        print(f"{step.type}: message {step.step_details.message_creation.message_id}")

# %% [markdown]
# ## 3. The loop, for any number of calls
#
# A model may call several functions at once, or call again after seeing a result. The general pattern
# is a loop: while the run requires action, run every call it asks for and submit all the outputs.
# `FUNCTIONS` maps each tool's name to the Python function behind it.

# %% tags=["loop"]
FUNCTIONS = {"get_scores": get_scores}


def ask(question: str, **run_options) -> str:
    """Ask in a new thread, run whatever functions the model calls, and return its answer."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, **run_options)
    while run.status == "requires_action":
        outputs = []
        for call in run.required_action.submit_tool_outputs.tool_calls:
            result = FUNCTIONS[call.function.name](**json.loads(call.function.arguments))
            print(f"  ran {call.function.name}({call.function.arguments})")
            outputs.append({"tool_call_id": call.id, "output": json.dumps(result, ensure_ascii=False)})
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            thread_id=thread.id, run_id=run.id, tool_outputs=outputs)
    if run.status != "completed":
        raise RuntimeError(f"The run {run.status}: {run.last_error.message if run.last_error else run.incomplete_details}")
    return client.beta.threads.messages.list(thread_id=thread.id, limit=1).data[0].content[0].text.value


print(ask("Which student has the lowest average, Leo or Sara?"))

# %% [markdown]
# ## 4. Choosing for the model: `tool_choice`
#
# By default (`"auto"`) the model decides whether to call a function. `tool_choice` overrides that for
# the run's **first** model call:
#
# | `tool_choice` | the model |
# |---|---|
# | `"auto"` | decides |
# | `"none"` | answers without calling any tool |
# | `"required"` | must call some tool |
# | `{"type": "function", "function": {"name": "get_scores"}}` | must call `get_scores` |
#
# After the first call the model decides again, so a forced function cannot loop forever. Here the
# question could be answered from general knowledge, but the function is forced:

# %% tags=["forced"]
print(ask("Should Leo get extra help?", tool_choice={"type": "function", "function": {"name": "get_scores"}}))

# %% [markdown]
# ## 5. An answer your code can read: `response_format`
#
# Text is for people. For a program, ask for JSON that fits a schema: `response_format` with
# `json_schema`. With `"strict": True` the answer always parses and always has the fields you listed.
# (It can be set on the assistant, or, as here, on one run.)

# %% tags=["structured"]
report_format = {
    "type": "json_schema",
    "json_schema": {
        "name": "student_report",
        "schema": {
            "type": "object",
            "properties": {
                "student": {"type": "string"},
                "average": {"type": "number"},
                "needs_help": {"type": "boolean"},
            },
            "required": ["student", "average", "needs_help"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
report = json.loads(ask("Write a short report on 민준's quiz scores.", response_format=report_format))
report

# %% tags=["structured-use"]
print(f"{report['student']}: average {report['average']:.1f}, {'needs' if report['needs_help'] else 'does not need'} help")

# %% [markdown]
# ## 6. The same on the Responses API
#
# OpenAI's newer **Responses API** (`client.responses`) has no assistants, threads or runs: one call
# takes the input and the tools and returns the model's output items. A function tool is declared flat
# (its `name` and `parameters` at the top), and a call the model wants comes back as a `function_call`
# item instead of a `requires_action` status.

# %% tags=["responses-call"]
scores_function = {"type": "function", **scores_tool["function"]}
response = client.responses.create(
    model="gpt-4o",
    instructions="You help a teacher with the class. Look quiz scores up with get_scores; never guess them.",
    input="What is Sara's average quiz score?",
    tools=[scores_function],
)
call = next(item for item in response.output if item.type == "function_call")
print(response.status, "->", call.name, call.arguments)

# %% [markdown]
# You run the function as before and send its output back as a `function_call_output` item, naming the
# call by its `call_id`. `previous_response_id` carries the conversation on, so nothing is sent twice.

# %% tags=["responses-answer"]
output = get_scores(**json.loads(call.arguments))
response = client.responses.create(
    model="gpt-4o",
    previous_response_id=response.id,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": json.dumps(output)}],
    tools=[scores_function],
)
print(response.output_text)

# %% [markdown]
# `tool_choice` forces a function here too (the flat form: `{"type": "function", "name": ...}`), and a
# JSON answer is asked for with `text={"format": ...}`, the schema flat beside its `name`.

# %% tags=["responses-structured"]
report_schema = {"type": "json_schema", **report_format["json_schema"]}
response = client.responses.create(
    model="gpt-4o", input="Write a short report on 민준's quiz scores.", tools=[scores_function],
    tool_choice={"type": "function", "name": "get_scores"},
)
call = next(item for item in response.output if item.type == "function_call")
response = client.responses.create(
    model="gpt-4o", previous_response_id=response.id, tools=[scores_function], text={"format": report_schema},
    input=[{"type": "function_call_output", "call_id": call.call_id,
            "output": json.dumps(get_scores(**json.loads(call.arguments)), ensure_ascii=False)}],
)
json.loads(response.output_text)

# %% [markdown]
# ## What you saw
#
# - A function tool is a name, a description and a JSON Schema; the function itself stays with you.
# - A run that wants it stops in `requires_action`; `submit_tool_outputs` sends the result and the run
#   goes on. A loop handles any number of calls.
# - `tool_choice` can force a function (or any tool, or none) on the run's first model call.
# - `response_format` with a JSON Schema makes the answer data your program can use.
# - The Responses API does the same with `function_call` items, `function_call_output` and `text.format`.
