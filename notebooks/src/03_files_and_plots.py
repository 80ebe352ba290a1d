# %% [markdown]
# # 03 · Files and plots: data in, a chart and a file out
#
# The code interpreter works with files. You upload data; the model's code finds it in its working
# folder, `/mnt/data`; whatever the code draws or saves comes back to you as a file.
#
# In this notebook you make a small CSV, upload it, ask for a chart, show the chart, download a file
# the code wrote, and then draw the same chart here, in your own kernel, to put the two side by side.

# %% setup

# %% [markdown]
# ## 1. Some data
#
# Twelve students, the hours each studied, and their quiz scores, saved as `study_hours.csv` next
# to this notebook.

# %%
import pandas as pd

data = pd.DataFrame({
    "student": list("ABCDEFGHIJKL"),
    "hours": [1, 1.5, 2, 3, 3.5, 4, 5, 5.5, 6, 7, 8, 9],
    "score": [48, 55, 52, 60, 63, 61, 70, 68, 75, 79, 84, 90],
})
data.to_csv("study_hours.csv", index=False)
data

# %% [markdown]
# ## 2. Upload it
#
# `client.files.create` uploads a file and returns a **File** object. `purpose="assistants"` marks it
# for use by assistants' tools. From now on the file is known by its `id` (`file-...`).

# %%
with open("study_hours.csv", "rb") as f:
    uploaded = client.files.create(file=f, purpose="assistants")
tutor_nb.show_json(uploaded)

# %% [markdown]
# ## 3. Ask for a chart, with the file attached
#
# A message's `attachments` hand files to a tool, here the code interpreter. Before the run starts,
# the file is copied into the sandbox's `/mnt/data` folder, where the model's code can open it.
# (Files listed in an assistant's or a thread's `tool_resources` are there for every run instead.)
#
# The instructions also ask the model to link each file it saves as `sandbox:/mnt/data/<name>`:
# that is how a file the code wrote becomes a downloadable link in the answer.

# %% tags=["chart-run"]
assistant = client.beta.assistants.create(
    name="Data tutor",
    instructions=(
        "You are a data tutor. Answer questions about data by writing and running code. "
        "Save files the user asks for in /mnt/data and link each one as [name](sandbox:/mnt/data/name)."
    ),
    model="gpt-4o",
    tools=[{"type": "code_interpreter"}],
)
thread = client.beta.threads.create()
client.beta.threads.messages.create(
    thread_id=thread.id,
    role="user",
    content=(
        "Plot quiz score against study hours from the attached CSV as a scatter chart with a trend line. "
        "Also save the table with a predicted score for each student as a CSV I can download."
    ),
    attachments=[{"file_id": uploaded.id, "tools": [{"type": "code_interpreter"}]}],
)
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
print("status:", run.status, run.last_error.message if run.last_error else "")

# %% [markdown]
# ## 4. The chart
#
# The answer message can hold two kinds of block: `image_file` (a picture the code drew, by file
# id) and `text`. To see a picture, fetch its bytes with `client.files.content(file_id)`.

# %% tags=["chart"]
from IPython.display import Image

answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
for block in answer.content:
    if block.type == "image_file":
        png = client.files.content(block.image_file.file_id).read()
        display(Image(data=png))

# %% [markdown]
# The `text` block is Markdown, with math in LaTeX and a link like `sandbox:/mnt/data/...` that
# only means something inside the sandbox. `tutor_nb.show_message` renders it as a chat does, the
# math typeset and that link turned into a download of the file (fetched through `client`):

# %% tags=["answer"]
tutor_nb.show_message(answer, client=client)

# %% [markdown]
# The same picture is in the run's steps, as an `image` output of the code call that drew it:
# `tutor_nb.code_calls` shows the code, its logs and the image together.

# %% tags=["chart-code"]
steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
calls = tutor_nb.code_calls(steps, client=client)
plot_call = next(call for call in reversed(calls) if call.images)
plot_call

# %% [markdown]
# ## 5. Download the file the code saved
#
# The code also wrote a CSV. The answer's text links to it: a **`file_path` annotation** marks which
# characters of the text stand for a file and gives its `file_id`. `files.content` fetches it; here
# it is saved into a `downloads` folder.

# %% tags=["download"]
from pathlib import Path

downloads = Path("downloads")
downloads.mkdir(exist_ok=True)
for block in answer.content:
    if block.type != "text":
        continue
    for annotation in block.text.annotations:
        if annotation.type == "file_path":
            target = downloads / Path(annotation.text).name
            client.files.content(annotation.file_path.file_id).write_to_file(target)
            print(f"{annotation.text} -> {target} ({target.stat().st_size} bytes)")
            display(pd.read_csv(target) if target.suffix == ".csv" else target)

# %% [markdown]
# ## 6. Draw it again here, and compare
#
# The plotting code is ordinary Python, so it can run in this notebook too. One change is needed:
# in the sandbox the files live in `/mnt/data`, here they are in the current folder. Then
# `tutor_nb.rerun` runs the code in your kernel, and the chart appears below the cell.

# %% tags=["rerun"]
local_code = plot_call.code.replace("/mnt/data/", "")
local = tutor_nb.rerun(local_code)

# %% [markdown]
# Side by side: the chart the sandbox sent back, and the one your kernel just drew. Same code, same
# data, so they match (up to fonts and versions of matplotlib).

# %% tags=["side-by-side"]
import base64
from IPython.display import HTML


def img(png_bytes, caption):
    data = base64.b64encode(png_bytes).decode()
    return (f'<figure style="margin:0"><img src="data:image/png;base64,{data}" style="max-width:100%">'
            f"<figcaption>{caption}</figcaption></figure>")


sandbox_png = plot_call.image_bytes(client)[0]
local_png = next(base64.b64decode(out["data"]["image/png"]) for out in local.outputs if "image/png" in out["data"])
HTML('<div style="display:grid;grid-template-columns:1fr 1fr;gap:12px">'
     + img(sandbox_png, "sandbox (the assistant's run)") + img(local_png, "this notebook (tutor_nb.rerun)") + "</div>")

# %% [markdown]
# ## What you saw
#
# - `files.create` uploads; a message's `attachments` put the file in the sandbox's `/mnt/data`.
# - Charts come back as `image_file` blocks in the answer and `image` outputs in the steps; fetch
#   them with `files.content`.
# - Files the code saves come back through `file_path` annotations in the answer's text.
# - `rerun` draws the same chart locally once the `/mnt/data` paths point at your files.
#
# Next: **04 · The chat panel**.
