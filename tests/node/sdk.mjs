// The official openai Node SDK against a tutor_nb runtime, over real HTTP.
//
//     OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OPENAI_API_KEY=TOKEN node tests/node/sdk.mjs SCENARIO
//
// Each scenario makes the SDK calls a Node user would make and prints one JSON object with what the
// SDK parsed (tests/test_node_sdk.py asserts on it). A failure prints {"error": ...} and exits 1.
// The base URL and the token come from the environment, never from the command line.

import OpenAI, { toFile } from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 60_000 });
const TUTOR = "You are a personal math tutor. When asked a math question, write and run code to answer the question.";
const FIB_PROMPT = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘";
const CODE_TOOL = { type: "code_interpreter", container: { type: "auto" } };

/** The code interpreter calls' code and logs, from a Response's output items. */
function codeCalls(response) {
  return response.output
    .filter((item) => item.type === "code_interpreter_call")
    .map((item) => ({
      id: item.id,
      status: item.status,
      code: item.code,
      container_id: item.container_id,
      logs: (item.outputs ?? []).filter((o) => o.type === "logs").map((o) => o.logs).join(""),
    }));
}

function summary(response) {
  return {
    id: response.id,
    object: response.object,
    status: response.status,
    output_types: response.output.map((item) => item.type),
    output_text: response.output_text,
    code_calls: codeCalls(response),
    usage: response.usage,
    previous_response_id: response.previous_response_id ?? null,
  };
}

const scenarios = {
  /** The walkthrough on the Assistants API: polled and streamed runs, steps, messages. */
  async assistants() {
    const assistant = await client.beta.assistants.create({
      model: "gpt-4o", instructions: TUTOR, tools: [{ type: "code_interpreter" }],
    });
    const thread = await client.beta.threads.create();
    await client.beta.threads.messages.create(thread.id, { role: "user", content: FIB_PROMPT });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: "asc" });
    const calls = steps.data.flatMap((step) =>
      step.step_details.type === "tool_calls" ? step.step_details.tool_calls : []);
    const messages = await client.beta.threads.messages.list(thread.id);

    const streamed = await client.beta.threads.create({ messages: [{ role: "user", content: FIB_PROMPT }] });
    const events = [];
    let code = "";
    let text = "";
    const stream = client.beta.threads.runs
      .stream(streamed.id, { assistant_id: assistant.id })
      .on("event", (event) => events.push(event.event))
      .on("toolCallDelta", (delta) => { code += delta.code_interpreter?.input ?? ""; })
      .on("textDelta", (delta) => { text += delta.value ?? ""; });
    const finalRun = await stream.finalRun();
    const finalMessages = await stream.finalMessages();
    return {
      assistant: { id: assistant.id, object: assistant.object, tools: assistant.tools.map((t) => t.type) },
      run: { id: run.id, status: run.status, usage: run.usage },
      steps: steps.data.map((step) => step.type),
      code: calls.map((call) => call.code_interpreter?.input ?? ""),
      logs: calls.flatMap((call) => (call.code_interpreter?.outputs ?? []).map((o) => o.logs ?? "")),
      answer: messages.data[0].content.map((part) => part.text?.value ?? "").join(""),
      answer_role: messages.data[0].role,
      stream: { events, code, text, status: finalRun.status, messages: finalMessages.length },
    };
  },

  /** responses.create with the code interpreter, then a second response chained to it. */
  async responses_create() {
    const first = await client.responses.create({
      model: "gpt-4o", instructions: TUTOR, tools: [CODE_TOOL], input: "Set x to 21 and show it",
      include: ["code_interpreter_call.outputs"],
    });
    const second = await client.responses.create({
      model: "gpt-4o", tools: [CODE_TOOL], input: "Double x", previous_response_id: first.id,
      include: ["code_interpreter_call.outputs"],
    });
    const retrieved = await client.responses.retrieve(second.id);
    const items = await client.responses.inputItems.list(second.id);
    const deleted = await client.responses.delete(first.id);
    let afterDelete = null;
    try {
      await client.responses.retrieve(first.id);
    } catch (error) {
      afterDelete = { status: error.status, type: error.type ?? error.error?.type ?? null };
    }
    return {
      first: summary(first),
      second: summary(second),
      retrieved: summary(retrieved),
      input_items: items.data.map((item) => item.type),
      deleted: deleted ?? null,
      after_delete: afterDelete,
    };
  },

  /** responses.stream: every event in order, the code and text deltas, and the final response. */
  async responses_stream() {
    const events = [];
    const sequence = [];
    let code = "";
    let text = "";
    const stream = client.responses.stream({
      model: "gpt-4o", instructions: TUTOR, tools: [CODE_TOOL], input: FIB_PROMPT,
      include: ["code_interpreter_call.outputs"],
    });
    stream
      .on("event", (event) => { events.push(event.type); sequence.push(event.sequence_number); })
      .on("response.code_interpreter_call_code.delta", (event) => { code += event.delta; })
      .on("response.output_text.delta", (event) => { text += event.delta; });
    const final = await stream.finalResponse();
    return { events, sequence, code, text, final: summary(final) };
  },

  /** A container: made, a file uploaded and another written by code in it, listed, downloaded, deleted. */
  async containers() {
    const container = await client.containers.create({
      name: "node", expires_after: { anchor: "last_active_at", minutes: 5 },
    });
    const uploaded = await client.containers.files.create(container.id, {
      file: await toFile(Buffer.from("a,b\n1,2\n"), "data.csv"),
    });
    const response = await client.responses.create({
      model: "gpt-4o", input: "Save the squares to a CSV", include: ["code_interpreter_call.outputs"],
      tools: [{ type: "code_interpreter", container: container.id }],
    });
    const files = [];
    for await (const file of client.containers.files.list(container.id)) files.push(file);
    const written = files.find((file) => file.source === "assistant");
    const content = await client.containers.files.content.retrieve(written.id, { container_id: container.id });
    const retrieved = await client.containers.retrieve(container.id);
    const listed = [];
    for await (const item of client.containers.list({ limit: 100 })) listed.push(item.id);
    await client.containers.files.delete(uploaded.id, { container_id: container.id });
    const remaining = (await client.containers.files.list(container.id)).data.map((file) => file.path);
    await client.containers.delete(container.id);
    let afterDelete = null;
    try {
      await client.containers.retrieve(container.id);
    } catch (error) {
      afterDelete = error.status;
    }
    return {
      container: { id: container.id, object: container.object, status: container.status, name: container.name,
                   minutes: container.expires_after?.minutes },
      uploaded: { id: uploaded.id, object: uploaded.object, path: uploaded.path, source: uploaded.source, bytes: uploaded.bytes },
      response: summary(response),
      files: files.map((file) => ({ path: file.path, source: file.source, bytes: file.bytes })),
      written_content: await content.text(),
      retrieved: { id: retrieved.id, status: retrieved.status },
      listed,
      remaining,
      after_delete: afterDelete,
    };
  },
};

const name = process.argv[2];
if (!(name in scenarios)) {
  console.log(JSON.stringify({ error: `unknown scenario ${JSON.stringify(name)}; one of ${Object.keys(scenarios)}` }));
  process.exit(2);
}
try {
  console.log(JSON.stringify(await scenarios[name]()));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error), status: error?.status ?? null }));
  process.exit(1);
}
