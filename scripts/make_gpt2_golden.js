// Writes data/gpt2_golden.json: GPT-2's token ids for test strings, computed by an independent
// implementation (the npm package `tiktoken`, encoding "gpt2" = r50k_base) so lesson 01's tests can
// check that our BPE gives exactly GPT-2's ids.
//
//   cd "$(mktemp -d)" && npm install tiktoken@1.0.22 && node /path/to/scripts/make_gpt2_golden.js /path/to/repo
const fs = require("fs");
const path = require("path");
// Resolved from the directory the script is run in, where tiktoken was installed.
const { get_encoding } = require(require.resolve("tiktoken", { paths: [process.cwd()] }));

const repo = process.argv[2] || path.join(__dirname, "..");
const enc = get_encoding("gpt2");

const cases = [
  "Hello world, ünïcödé 🚀",
  "",
  " ",
  "a",
  "The quick brown fox jumps over the lazy dog.",
  "I'm sure you'll agree: it's what we've done, isn't it? They'd said we'RE fine.",
  "Numbers: 1, 22, 333, 4444, 55555, 3.14159, -42, 1e10, 2024-11-22",
  "multiple   spaces\tand\ttabs\n\nnew lines\r\nand CRLF   ",
  "   leading and trailing spaces   ",
  "\n\n\n",
  "Mixed-case CamelCaseWords and snake_case_names and SHOUTING!!!",
  "Punctuation runs: ... !!! ??? --- ((( ))) [[]] {{}} <<>> @@@ ### $$$ %%%",
  "Ελληνικά, русский, 中文字符, 日本語のテキスト, 한국어, עברית, العربية",
  "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
  "Unicode spaces:\u00a0nbsp,\u2003em space,\u3000ideographic,\u0085NEL,\u2028line sep.",
  "Accents: café naïve résumé Zoë Ångström",
  "Code: def f(x):\n    return x**2 + 1  # comment\n",
  "<|endoftext|>",
  "before<|endoftext|>after",
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
];

// A longer stretch of the held-out novel, to cover the statistics of real prose.
const val = fs.readFileSync(path.join(repo, "data/austen/val.txt"), "utf8");
const prose = val.slice(0, 20000);

const out = {
  source: "npm tiktoken 1.0.22, get_encoding('gpt2') (r50k_base), encode(text, allowed_special='all')",
  cases: cases.map((text) => ({ text, ids: Array.from(enc.encode(text, "all")) })),
  // With special tokens not allowed, "<|endoftext|>" is ordinary text (tiktoken's encode_ordinary).
  ordinary: ["<|endoftext|>", "a<|endoftext|>b"].map((text) => ({ text, ids: Array.from(enc.encode_ordinary(text)) })),
  prose: { file: "data/austen/val.txt", chars: 20000, ids: Array.from(enc.encode(prose, "all")) },
};
// One case per line keeps the file small and its diffs readable.
const lines = [
  "{",
  ` "source": ${JSON.stringify(out.source)},`,
  ' "cases": [',
  out.cases.map((c) => "  " + JSON.stringify(c)).join(",\n"),
  " ],",
  ' "ordinary": [',
  out.ordinary.map((c) => "  " + JSON.stringify(c)).join(",\n"),
  " ],",
  ` "prose": ${JSON.stringify(out.prose)}`,
  "}",
];
fs.writeFileSync(path.join(repo, "data/gpt2_golden.json"), lines.join("\n") + "\n");
console.log(`wrote data/gpt2_golden.json: ${out.cases.length} cases, ${out.prose.ids.length} prose ids`);
