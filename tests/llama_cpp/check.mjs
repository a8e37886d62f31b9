// llama.cpp's view of GGUF files, for the tests that compare it with ours: token ids, greedy
// continuations and next-token distributions, computed by llama.cpp itself through node-llama-cpp
// 3.21.1 (its prebuilt CPU build of llama.cpp v0.4.0), which scripts/setup.sh installs into
// .cache/npm/llama-cpp from tests/llama_cpp/package-lock.json.
//
//   node tests/llama_cpp/check.mjs SPEC.json OUT.json
//   node tests/llama_cpp/check.mjs --probe            exit 0 if llama.cpp is installed, else 77
//
// SPEC: {"models": [{"path": "m.gguf",
//                    "texts": ["..."],                              tokenized with special tokens parsed
//                    "greedy": [{"ids": [...], "n": 32}],          n tokens at temperature 0, from the prompt
//                    "distributions": [{"ids": [...], "top": 0}]}]} next-token probabilities after every
//                                                                   prefix of ids: all of them (top 0) or the top k
// OUT:  {"llama_cpp": "v0.4.0", "models": [{"pre", "tokens": [[...]], "greedy": [[...]],
//        "distributions": [[{"ids": [...], "probs": [...]}, ...]]}]}
//
// For exact comparisons the context keeps its KV cache in F32 (node-llama-cpp's default is F16) and
// flash attention off; 2 threads. Exits 77, saying why, when node-llama-cpp is not installed: ctest
// then reports the test as skipped, never as passed.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dir = process.env.LLM_LLAMA_CPP_DIR ?? path.join(root, ".cache/npm/llama-cpp");
const entry = path.join(dir, "node_modules/node-llama-cpp/dist/index.js");
if (!fs.existsSync(entry)) {
  console.error(`llama.cpp is not installed (${entry} is missing): scripts/setup.sh installs it from npm; ` +
                "without the npm registry the llama.cpp tests are skipped");
  process.exit(77);
}
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);
if (process.argv[2] === "--probe") {
  const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
  console.log(`llama.cpp ${llama.llamaCppRelease.release} (node-llama-cpp, ${llama.buildType} build)`);
  process.exit(0);
}

const [specPath, outPath] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const out = {llama_cpp: llama.llamaCppRelease.release, models: []};
for (const m of spec.models) {
  const model = await llama.loadModel({modelPath: m.path});
  const result = {path: m.path, pre: model.fileInfo.metadata.tokenizer.ggml.pre, tokens: [], greedy: [], distributions: []};
  for (const text of m.texts ?? []) result.tokens.push(Array.from(model.tokenize(text, true)));
  const context = await model.createContext({contextSize: 512, sequences: 1, threads: 2, flashAttention: false,
                                             experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
  const sequence = context.getSequence();
  for (const g of m.greedy ?? []) {
    await sequence.clearHistory();
    const ids = [];
    for await (const token of sequence.evaluate(g.ids, {temperature: 0, yieldEogToken: true})) {
      ids.push(token);
      if (ids.length >= g.n) break;
    }
    result.greedy.push(ids);
  }
  for (const d of m.distributions ?? []) {
    await sequence.clearHistory();
    const items = d.ids.map((token) => [token, {generateNext: {probabilities: true}}]);
    const steps = await sequence.controlledEvaluate(items);
    result.distributions.push(steps.map((step) => {
      let entries = [...step.next.probabilities.entries()];  // sorted from the most likely
      if (d.top > 0) entries = entries.slice(0, d.top);
      return {ids: entries.map(([id]) => id), probs: entries.map(([, p]) => p)};
    }));
  }
  await context.dispose();
  await model.dispose();
  out.models.push(result);
}
fs.writeFileSync(outPath, JSON.stringify(out));
