// llm evaluate: one report on any model folder (ours, or a downloaded Llama 3, Qwen or SmolLM2), with
// lesson 12's measures.
//
//   llm evaluate --model runs/demo/sft/final                     writes runs/demo/sft/evaluation/
//   llm evaluate --model runs/demo/grpo/final --out /tmp/e --set eval.pass_samples=16
//
// The report (report.md and report.json):
//   validation    bits per byte and perplexity on the held-out novel (every token, fp32)
//   multiple      choice by continuation log-likelihood, acc and acc_norm (lm-evaluation-harness):
//   choice          "capitals"  the quiz facts in the chat template, the true capital among 4
//                   "cloze"     the next word of a held-out passage among 4 words of the novel
//   tasks         greedy accuracy on the built-in tasks' test split (as every stage reports it)
//   pass@k        n sampled answers per test problem, the unbiased estimator (Chen et al. 2021)
//   cost          parameters, FLOPs per token (6N + attention), the training-memory estimate
//   samples       a few answers and a continuation of the novel
// Models without a chat template (a pretrained model, ours or a base model from elsewhere) get the
// first two. A model runs in the dtype its files store, and a batch of a large-vocabulary model is
// cut so that its logits stay near 512 MB (Qwen3's 151,936 columns make one 256-token row 156 MB).
#include "align.h"
#include "commands.h"

#include <llm/cli/text.h>
#include <llm/data/pretrain_batches.h>
#include <llm/data/token_shard.h>
#include <llm/eval/flops.h>
#include <llm/eval/memory.h>
#include <llm/eval/multiple_choice.h>
#include <llm/eval/pass_at_k.h>
#include <llm/eval/perplexity.h>
#include <llm/generate/generate.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

namespace llm::cli {

namespace {

namespace fs = std::filesystem;

struct EvalConfig {
  std::string val_data = "data/austen/val.txt";
  int64_t val_tokens = 0;      // 0: the whole file
  int64_t seq_len = 256;       // validation blocks (at most the model's context)
  int64_t mc_items = 200;      // per multiple-choice set
  int64_t pass_problems = 90;  // test problems for pass@k
  int64_t pass_samples = 8;    // n answers sampled per problem
  double temperature = 1.0;
  int64_t threads = 0;
  int64_t batch_size = 32;

  static const std::vector<Field<EvalConfig>>& fields() {
    static const std::vector<Field<EvalConfig>> table = {
        {"val_data", &EvalConfig::val_data, "held-out text for bits per byte"},
        {"val_tokens", &EvalConfig::val_tokens, "validation tokens scored (0: all)"},
        {"seq_len", &EvalConfig::seq_len, "tokens per validation block"},
        {"mc_items", &EvalConfig::mc_items, "questions per multiple-choice set"},
        {"pass_problems", &EvalConfig::pass_problems, "test problems for pass@k"},
        {"pass_samples", &EvalConfig::pass_samples, "answers sampled per problem (n of pass@k)"},
        {"temperature", &EvalConfig::temperature, "sampling temperature for pass@k"},
        {"threads", &EvalConfig::threads, "intra-op threads (0: all cores)"},
        {"batch_size", &EvalConfig::batch_size, "sequences per forward"},
    };
    return table;
  }
  void validate() const {
    if (val_tokens < 0) throw ConfigError("eval.val_tokens must be >= 0 (0: all), got " + std::to_string(val_tokens));
    require_positive("eval", "seq_len", seq_len);
    require_positive("eval", "mc_items", mc_items);
    require_positive("eval", "pass_problems", pass_problems);
    require_positive("eval", "batch_size", batch_size);
    if (pass_samples < 2) throw ConfigError("eval.pass_samples must be >= 2, got " + std::to_string(pass_samples));
    if (!(temperature > 0))
      throw ConfigError("eval.temperature must be > 0 for sampling, got " + std::to_string(temperature));
    if (threads < 0) throw ConfigError("eval.threads must be >= 0, got " + std::to_string(threads));
  }
};

struct Options {
  std::string model_dir, out, config_path;
  std::vector<std::string> overrides;
  bool overwrite = false;
};

// Rows per forward pass: at most `batch_size`, and few enough that the fp32 logits of rows of T
// tokens stay within 512 MB.
int64_t rows_per_batch(int64_t batch_size, int64_t T, int64_t V) {
  const int64_t budget = int64_t{512} << 20;
  return std::max<int64_t>(1, std::min<int64_t>(batch_size, budget / std::max<int64_t>(1, T * V * 4)));
}

// Deterministic choices for the multiple-choice sets.
struct Rng {
  SplitMix64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  uint64_t below(uint64_t n) { return g.below(n); }
};

// ---- validation bits per byte: blocks of T + 1 tokens of the held-out text, as pretraining ----
LossTotals validation_totals(CausalLM& model, const BpeTokenizer& tok, const EvalConfig& c) {
  std::vector<std::vector<int32_t>> docs;
  for (const auto& d : split_documents(read_file(c.val_data), "chapters")) docs.push_back(tok.encode(d, false));
  const int64_t eot = special_or_none(tok, ChatTemplate::kEndOfText);
  std::vector<uint32_t> ids;
  if (eot >= 0) {
    ids = join_documents(docs, static_cast<int32_t>(eot));
  } else {
    for (const auto& d : docs) ids.insert(ids.end(), d.begin(), d.end());
  }
  if (c.val_tokens > 0 && static_cast<int64_t>(ids.size()) > c.val_tokens + 1) ids.resize(c.val_tokens + 1);
  const int64_t T = std::min(c.seq_len, model->config.max_position_embeddings);
  const int64_t blocks = (static_cast<int64_t>(ids.size()) - 1) / T;
  if (blocks < 1)
    throw UsageError(c.val_data + " has " + std::to_string(ids.size()) + " tokens; need more than " +
                     std::to_string(T));
  auto all = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong);
  // A downloaded model's embedding may have more rows than its tokenizer has tokens (Qwen's 151,936
  // for 151,669): no text holds the extra ids, so they count 0 bytes.
  auto token_bytes = token_byte_counts(tok);
  const int64_t V = model->config.vocab_size;
  if (token_bytes.size(0) < V)
    token_bytes = torch::cat({token_bytes, torch::zeros({V - token_bytes.size(0)}, token_bytes.options())});
  LossTotals totals;
  torch::NoGradGuard no_grad;
  const int64_t rows = rows_per_batch(c.batch_size, T, model->config.vocab_size);
  for (int64_t b0 = 0; b0 < blocks; b0 += rows) {
    const int64_t n = std::min(rows, blocks - b0);
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < n; ++i) rows.push_back(all.slice(0, (b0 + i) * T, (b0 + i) * T + T + 1));
    auto block = torch::stack(rows);  // (n, T + 1)
    auto logits = model(block.narrow(1, 0, T));
    totals += loss_totals(logits.reshape({-1, logits.size(-1)}), block.narrow(1, 1, T).reshape({-1}), token_bytes);
  }
  return totals;
}

// ---- multiple choice ----
// Capitals: the question in the chat template, each capital as the assistant's answer.
MultipleChoiceResult capital_choices(CausalLM& model, const BpeTokenizer& tok, const ChatFormat& chat,
                                     const TaskConfig& tasks, const EvalConfig& c) {
  const auto problems = make_task_examples({"capital"}, Split::kTest, static_cast<uint64_t>(tasks.seed), c.mc_items);
  std::vector<ContinuationRequest> requests;
  std::vector<std::vector<std::string>> choices;
  std::vector<int64_t> gold;
  Rng rng(static_cast<uint64_t>(tasks.seed) ^ 0xCA9);
  for (size_t i = 0; i < problems.size(); ++i) {
    auto options = wrong_answers(problems[i], static_cast<uint64_t>(tasks.seed), static_cast<int64_t>(i), 3);
    const auto at = static_cast<int64_t>(rng.below(4));
    options.insert(options.begin() + at, problems[i].answer);
    const auto prompt = task_prompt(tok, chat, problems[i].prompt);
    for (const auto& o : options) {
      requests.push_back({std::vector<TokenId>(prompt.begin(), prompt.end()), tok.encode(o, false)});
    }
    choices.push_back(options);
    gold.push_back(at);
  }
  const auto lls =
      continuation_loglikelihoods(model, requests, rows_per_batch(c.batch_size, 64, model->config.vocab_size));
  MultipleChoiceResult r;
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto p = predict_choice(std::vector<double>(lls.begin() + 4 * i, lls.begin() + 4 * i + 4), choices[i]);
    r.acc += p.acc == gold[i], r.acc_norm += p.acc_norm == gold[i], r.acc_bytes += p.acc_bytes == gold[i];
  }
  r.n = static_cast<int64_t>(choices.size());
  r.acc /= r.n, r.acc_norm /= r.n, r.acc_bytes /= r.n;
  return r;
}

// Cloze: ~300 characters of a held-out passage, then the next word or one of three other words of
// the novel (4+ letters each), lm-evaluation-harness style (" " + word as the continuation).
std::vector<MultipleChoiceItem> cloze_items(const std::string& text, int64_t count, uint64_t seed) {
  auto is_letter = [](unsigned char ch) { return std::isalpha(ch) != 0; };
  struct Word {
    size_t begin;
    std::string text;
  };
  std::vector<Word> words;
  for (size_t i = 0; i < text.size();) {
    if (!is_letter(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_letter(text[j])) ++j;
    if (j - i >= 4 && i > 0 && text[i - 1] == ' ') words.push_back({i, text.substr(i, j - i)});
    i = j;
  }
  std::vector<MultipleChoiceItem> items;
  Rng rng(seed);
  for (int64_t attempts = 0; static_cast<int64_t>(items.size()) < count && attempts < 100 * count; ++attempts) {
    const auto& w = words[rng.below(words.size())];
    if (w.begin < 300) continue;
    MultipleChoiceItem item;
    size_t start = text.find(' ', w.begin - 300);
    item.context = text.substr(start + 1, w.begin - start - 2);  // without the space before the word
    std::vector<std::string> options = {w.text};
    while (options.size() < 4) {
      const auto& other = words[rng.below(words.size())].text;
      if (std::find(options.begin(), options.end(), other) == options.end()) options.push_back(other);
    }
    const auto at = static_cast<int64_t>(rng.below(4));
    std::swap(options[0], options[at]);
    item.choices = options;
    item.gold = at;
    items.push_back(std::move(item));
  }
  return items;
}

nlohmann::json mc_json(const MultipleChoiceResult& r) {
  return {{"acc", r.acc}, {"acc_norm", r.acc_norm}, {"acc_bytes", r.acc_bytes}, {"n", r.n}};
}

// ---- pass@k: n sampled answers per test problem ----
nlohmann::json pass_at_k_json(CausalLM& model, const BpeTokenizer& tok, const ChatFormat& chat, const TaskConfig& tasks,
                              const EvalConfig& c) {
  const auto problems = make_task_examples(parse_task_list(tasks.names), Split::kTest,
                                           static_cast<uint64_t>(tasks.seed), c.pass_problems);
  std::vector<std::pair<int64_t, int64_t>> counts;
  const int64_t per_batch = std::max<int64_t>(1, 128 / c.pass_samples);
  for (size_t first = 0; first < problems.size(); first += per_batch) {
    std::vector<TaskExample> chunk(problems.begin() + first,
                                   problems.begin() + std::min(problems.size(), first + per_batch));
    const auto s = sample_answers(model, tok, chat, chunk, c.pass_samples, c.temperature, tasks.max_new_tokens,
                                  static_cast<uint64_t>(tasks.seed) + first);
    for (size_t i = 0; i < chunk.size(); ++i) {
      int64_t correct = 0;
      for (int64_t g = 0; g < c.pass_samples; ++g) {
        const size_t row = i * c.pass_samples + g;
        correct += s.ended[row] && is_correct(chunk[i], s.texts[row]);
      }
      counts.emplace_back(c.pass_samples, correct);
    }
  }
  nlohmann::json j = {{"n", c.pass_samples}, {"problems", counts.size()}, {"temperature", c.temperature}};
  for (int64_t k : {int64_t{1}, c.pass_samples / 2, c.pass_samples})
    j["pass@" + std::to_string(k)] = mean_pass_at_k(counts, k);
  return j;
}

std::string continuation_sample(CausalLM& model, const BpeTokenizer& tok, const std::string& prompt) {
  auto ids = tok.options().prefix_ids;  // Llama 3's BOS, as transformers' pipeline adds it
  for (TokenId id : tok.encode(prompt, false)) ids.push_back(id);
  GenerationConfig gen;
  gen.max_new_tokens = std::min<int64_t>(60, model->config.max_position_embeddings - static_cast<int64_t>(ids.size()));
  if (gen.max_new_tokens < 1) return prompt;
  gen.sampling.temperature = 0.8;
  gen.sampling.top_k = 50;
  auto out =
      generate(model, {std::vector<int64_t>(ids.begin(), ids.end())}, gen, at::make_generator<at::CPUGeneratorImpl>(7));
  std::vector<TokenId> text(out[0].begin(), out[0].end());
  auto s = tok.decode(text);
  s.resize(s.size() - incomplete_utf8_suffix(s));
  return prompt + s;
}

std::string markdown(const nlohmann::json& r) {
  std::string md = fmt::format("# Evaluation of `{}`\n\n", r["model"].get<std::string>());
  md += "| measure | value |\n|---|---|\n";
  auto row = [&](const std::string& k, const std::string& v) { md += "| " + k + " | " + v + " |\n"; };
  const auto& v = r["validation"];
  row("validation bits per byte", fmt::format("{:.4f} ({} tokens of {})", v["bpb"].get<double>(),
                                              format_count(v["tokens"].get<double>()), v["data"].get<std::string>()));
  row("validation perplexity (per token)", fmt::format("{:.2f}", v["perplexity"].get<double>()));
  for (const auto& [name, m] : r["multiple_choice"].items()) {
    row("multiple choice: " + name,
        fmt::format("acc {:.3f}, acc_norm {:.3f} (n = {}, chance 0.25)", m["acc"].get<double>(),
                    m["acc_norm"].get<double>(), m["n"].get<int64_t>()));
  }
  if (r.contains("tasks")) {
    const auto& t = r["tasks"];
    std::string per;
    for (const auto& [task, acc] : t["per_task"].items()) per += fmt::format(", {} {:.3f}", task, acc.get<double>());
    row("task accuracy (greedy)",
        fmt::format("{:.3f} (n = {}{})", t["accuracy"].get<double>(), t["problems"].get<int64_t>(), per));
    const auto& p = r["pass_at_k"];
    std::string ks;
    for (const auto& [k, val] : p.items())
      if (k.rfind("pass@", 0) == 0) ks += fmt::format("{} {:.3f}, ", k, val.get<double>());
    row("pass@k", fmt::format("{}n = {} samples x {} problems, temperature {}", ks, p["n"].get<int64_t>(),
                              p["problems"].get<int64_t>(), p["temperature"].get<double>()));
  }
  const auto& c = r["cost"];
  row("parameters", fmt::format("{} ({} in matmuls)", format_count(c["parameters"].get<double>()),
                                format_count(c["matmul_parameters"].get<double>())));
  row("training FLOPs per token",
      fmt::format("{:.3g} at T = {}", c["training_flops_per_token"].get<double>(), c["seq_len"].get<int64_t>()));
  row("training memory estimate",
      fmt::format("{:.0f} MB at B 16 x T {} (fp32, AdamW)", c["training_memory_bytes"].get<double>() / 1e6,
                  c["seq_len"].get<int64_t>()));
  row("evaluation time", fmt::format("{:.1f} s", r["seconds"].get<double>()));
  md += "\n## Samples\n\n";
  for (const auto& s : r["samples"]) md += "- " + s.get<std::string>() + "\n";
  return md;
}

int run(const Options& o) {
  // ---- config ----
  EvalConfig ec;
  TaskConfig tasks;
  ConfigSections sections;
  sections.add("eval", ec);
  sections.add("tasks", tasks);
  sections.load(o.config_path, o.overrides);
  const std::string out =
      o.out.empty() ? (fs::path(o.model_dir).lexically_normal().parent_path() / "evaluation").string() : o.out;
  if (fs::exists(out) && !o.overwrite) {
    throw UsageError(out + " already exists; pass --overwrite to replace its report, or --out another folder");
  }
  if (!fs::exists(ec.val_data)) throw UsageError("eval.val_data: " + ec.val_data + " does not exist");
  const int64_t threads = configure_threads(ec.threads);
  const auto t0 = std::chrono::steady_clock::now();

  // ---- model ----
  HfModel loaded = load_hf_folder(o.model_dir, {"auto"});
  auto& model = loaded.model;
  const auto& tok = loaded.tokenizer;
  model->eval();
  std::optional<ChatFormat> chat;
  std::string no_chat;
  try {
    chat = ChatFormat::of(loaded);
  } catch (const UsageError& e) {
    no_chat = e.what();
  }

  nlohmann::json report;
  report["model"] = o.model_dir;
  report["threads"] = threads;

  // ---- validation ----
  const LossTotals v = validation_totals(model, tok, ec);
  report["validation"] = {{"data", ec.val_data},         {"bpb", bits_per_byte(v)},
                          {"perplexity", perplexity(v)}, {"nats_per_token", v.nats / v.tokens},
                          {"tokens", v.tokens},          {"bytes", v.bytes}};
  fmt::print("validation: {:.4f} bits per byte, perplexity {:.2f} ({} tokens)\n", bits_per_byte(v), perplexity(v),
             format_count(static_cast<double>(v.tokens)));

  // ---- multiple choice ----
  const auto cloze = score_multiple_choice(model, tok, cloze_items(read_file(ec.val_data), ec.mc_items, tasks.seed),
                                           " ", rows_per_batch(ec.batch_size, 128, model->config.vocab_size));
  report["multiple_choice"]["cloze"] = mc_json(cloze);
  fmt::print("multiple choice, cloze on the held-out novel: acc {:.3f}, acc_norm {:.3f} (n = {})\n", cloze.acc,
             cloze.acc_norm, cloze.n);
  nlohmann::json samples = nlohmann::json::array();
  if (chat) {
    const auto capitals = capital_choices(model, tok, *chat, tasks, ec);
    report["multiple_choice"]["capitals"] = mc_json(capitals);
    fmt::print("multiple choice, capitals: acc {:.3f}, acc_norm {:.3f} (n = {})\n", capitals.acc, capitals.acc_norm,
               capitals.n);

    // ---- tasks and pass@k ----
    const TaskEval e = evaluate_tasks(model, tok, *chat, tasks);
    print_task_eval("tasks", e);
    report["tasks"] = e.to_json();
    report["pass_at_k"] = pass_at_k_json(model, tok, *chat, tasks, ec);
    fmt::print("pass@k: {}\n", report["pass_at_k"].dump());
    for (const auto& s : e.samples) samples.push_back(s);
  } else {
    fmt::print("tasks: skipped: {}\n", no_chat);
  }
  samples.push_back(continuation_sample(model, tok, "It is a truth universally acknowledged"));
  report["samples"] = samples;

  // ---- cost ----
  const auto& config = model->config;
  const int64_t T = std::min(ec.seq_len, config.max_position_embeddings);
  report["cost"] = {{"parameters", config.num_parameters()},
                    {"matmul_parameters", matmul_parameters(config)},
                    {"seq_len", T},
                    {"training_flops_per_token", training_flops_per_token(config, T)},
                    {"forward_flops_per_token", forward_flops_per_token(config, T)},
                    {"training_memory_bytes", estimate_training_memory(config, 16, T).total()}};
  report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report["finished"] = utc_timestamp();

  // ---- write: into <out>.tmp, then renamed over <out> ----
  const std::string tmp = out + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_text(tmp + "/report.json", report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  write_text(tmp + "/report.md", markdown(report));
  write_text(tmp + "/config.yaml", sections.to_yaml_string());
  if (fs::exists(out)) fs::remove_all(out);
  fs::rename(tmp, out);
  fmt::print("evaluate: report in {}/report.md ({:.1f} s)\n", out, report["seconds"].get<double>());
  return 0;
}

}  // namespace

int evaluate_main(int argc, char** argv) {
  CLI::App app{"Evaluate a model folder: bits per byte, multiple choice, task accuracy, pass@k, cost.", "llm evaluate"};
  Options o;
  app.add_option("--model", o.model_dir, "a model folder (any stage's final/, or a downloaded Llama 3, Qwen, SmolLM2)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--out", o.out, "the report folder (default: evaluation/ next to the model folder)");
  app.add_option("--config", o.config_path, "YAML with eval and tasks sections")->check(CLI::ExistingFile);
  app.add_option("--set", o.overrides, "override one setting, e.g. --set eval.pass_samples=16 (repeatable)");
  app.add_flag("--overwrite", o.overwrite, "replace an existing report folder");
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm evaluate", [&] { return run(o); });
}

}  // namespace llm::cli
