// llama.cpp's side of benchmarks/hf_model.sh: the same model as a GGUF file (llm export --format gguf),
// run by llama.cpp v0.4.0 through node-llama-cpp 3.21.1's prebuilt CPU build (scripts/setup.sh
// installs it into .cache/npm/llama-cpp). The same measurement as llm-bench-hf-model, printed as the
// same JSON line: load, resident memory, prefill of a random prompt, greedy decode.
//
//   node benchmarks/hf_model_llama_cpp.mjs --gguf FILE [--threads 2] [--prompt-tokens 512] [--new-tokens 128]
//
// llama.cpp's defaults otherwise, as a user gets them: the file mmapped (read as the first forward
// touches it), an F16 KV cache. Prefill is the time to the first generated token (the prompt's
// forward and one sampling); decode, the tokens after it.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs, []));
const gguf = args.gguf, threads = Number(args.threads ?? 2);
const promptTokens = Number(args["prompt-tokens"] ?? 512), newTokens = Number(args["new-tokens"] ?? 128);
if (!gguf || !fs.existsSync(gguf)) {
  console.error(`usage: node benchmarks/hf_model_llama_cpp.mjs --gguf FILE [--threads N] [--prompt-tokens N] [--new-tokens N]`);
  process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(process.env.LLM_LLAMA_CPP_DIR ?? path.join(root, ".cache/npm/llama-cpp"),
                        "node_modules/node-llama-cpp/dist/index.js");
if (!fs.existsSync(entry)) {
  console.error(`llama.cpp is not installed (${entry} is missing): run scripts/setup.sh`);
  process.exit(1);
}
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);
const statusBytes = (key) => {
  const line = fs.readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith(key + ":"));
  return Number(line.split(/\s+/)[1]) * 1024;
};

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const rssBefore = statusBytes("VmRSS");
let start = performance.now();
const model = await llama.loadModel({modelPath: gguf});
const context = await model.createContext({contextSize: promptTokens + newTokens + 8, sequences: 1, threads,
                                           batchSize: promptTokens});
const loadSeconds = (performance.now() - start) / 1000;
const rssLoaded = statusBytes("VmRSS"), hwmLoaded = statusBytes("VmHWM");

let seed = 12345;  // a seeded random prompt, as ours uses one
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const prompt = Array.from({length: promptTokens}, () => Math.floor(random() * Math.min(vocab, 128000)));
const sequence = context.getSequence();
start = performance.now();
let firstAt = 0, generated = 0;
for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
  if (generated === 0) firstAt = performance.now();
  if (++generated > newTokens) break;
}
const end = performance.now();
const metadata = model.fileInfo.metadata;
const arch = metadata.general.architecture;
console.log(JSON.stringify({
  program: `llama.cpp ${llama.llamaCppRelease.release} (node-llama-cpp, ${llama.buildType} CPU build)`,
  model: gguf, architecture: arch, parameters: null, dtype: "BF16", threads,
  weight_bytes: fs.statSync(gguf).size, load_seconds: loadSeconds,
  rss_before_load_bytes: rssBefore, rss_after_load_bytes: rssLoaded, peak_rss_after_load_bytes: hwmLoaded,
  peak_rss_bytes: statusBytes("VmHWM"),
  prefill_tokens: promptTokens, prefill_tokens_per_second: promptTokens / ((firstAt - start) / 1000),
  decode_tokens: newTokens, decode_tokens_per_second: newTokens / ((end - firstAt) / 1000)}));
await context.dispose();
await model.dispose();
