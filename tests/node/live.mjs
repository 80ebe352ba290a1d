// Live output through the official openai Node SDK: a streamed run whose code prints while it runs.
//
//     OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OPENAI_API_KEY=TOKEN node tests/node/live.mjs ASSISTANT_ID QUESTION
//
// Prints one JSON object: when each piece of logs arrived (ms before the step completed), the tool
// step as the SDK accumulated it from the deltas, and the same step as steps.list returns it
// (tests/test_live_output.py compares them).

import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 60_000 });
const [assistantId, question] = process.argv.slice(2);

try {
  const thread = await client.beta.threads.create({ messages: [{ role: "user", content: question }] });
  const pieces = [];
  let completedAt = null;
  const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistantId });
  stream.on("event", (event) => {
    if (event.event === "thread.run.step.delta") {
      for (const call of event.data.delta.step_details?.tool_calls ?? []) {
        for (const out of call.code_interpreter?.outputs ?? []) {
          if (out.type === "logs") pieces.push({ at: Date.now(), logs: out.logs });
        }
      }
    }
    if (event.event === "thread.run.step.completed" && event.data.type === "tool_calls") completedAt = Date.now();
  });
  const run = await stream.finalRun();
  const accumulated = (await stream.finalRunSteps()).find((step) => step.type === "tool_calls");
  const listed = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id }))
    .data.find((step) => step.type === "tool_calls");
  const outputs = (step) => step.step_details.tool_calls[0].code_interpreter.outputs
    .map(({ index, ...rest }) => rest);
  console.log(JSON.stringify({
    status: run.status,
    pieces: pieces.map((p) => ({ before_ms: completedAt - p.at, logs: p.logs })),
    accumulated: outputs(accumulated),
    code: accumulated.step_details.tool_calls[0].code_interpreter.input,
    listed: outputs(listed),
  }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
