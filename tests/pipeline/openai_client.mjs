// The `openai` package from the npm registry (scripts/setup.sh puts it in .cache/npm/openai) against
// a running `llm serve`: a client nobody here wrote. Usage: node openai_client.mjs BASE_URL MODEL
import OpenAI from "../../.cache/npm/openai/index.mjs";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "not-needed", maxRetries: 0 });
const fail = (what) => { console.error(`openai client: ${what}`); process.exit(1); };

const models = await client.models.list();
if (!models.data.some((m) => m.id === model)) fail(`models.list() lacks ${model}: ${JSON.stringify(models.data)}`);

const chat = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "What is 12 + 34?" }], max_tokens: 6, temperature: 0 });
const answer = chat.choices[0].message.content;
if (typeof answer !== "string" || chat.choices[0].message.role !== "assistant") fail(`chat: ${JSON.stringify(chat)}`);
if (!(chat.usage.prompt_tokens > 0 && chat.usage.completion_tokens > 0)) fail(`usage: ${JSON.stringify(chat.usage)}`);

// Streaming: the pieces joined are the non-streamed answer (same seed, greedy), ending with a finish reason.
const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "What is 12 + 34?" }], max_tokens: 6, temperature: 0, stream: true });
let streamed = "", finish = null, chunks = 0;
for await (const c of stream) {
  chunks += 1;
  streamed += c.choices[0].delta.content ?? "";
  finish = c.choices[0].finish_reason ?? finish;
}
if (streamed !== answer) fail(`streamed '${streamed}' differs from '${answer}'`);
if (!["stop", "length"].includes(finish) || chunks < 2) fail(`stream ended with ${finish} after ${chunks} chunks`);

const completion = await client.completions.create({ model, prompt: "It is a truth", max_tokens: 5, temperature: 0 });
if (typeof completion.choices[0].text !== "string") fail(`completions: ${JSON.stringify(completion)}`);

// Errors arrive as the client's typed errors, with OpenAI's error body.
try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] });
  fail("an unknown model was accepted");
} catch (e) {
  if (!(e instanceof OpenAI.NotFoundError) || e.code !== "model_not_found") fail(`unknown model: ${e}`);
}
try {
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 100000 });
  fail("max_tokens 100000 was accepted");
} catch (e) {
  if (!(e instanceof OpenAI.BadRequestError) || e.param !== "max_tokens") fail(`max_tokens: ${e}`);
}
console.log(`openai client: models, chat '${answer}', ${chunks} streamed chunks, completions and errors as expected`);
