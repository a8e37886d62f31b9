// llm sft: supervised fine-tuning on the built-in tasks' conversations (lesson 06's chat template,
// prompt masking and padding; lesson 07's cross-entropy; lesson 10's trainer).
//
//   llm sft --model runs/demo/pretrain/final --run runs/demo
//   llm sft --model runs/demo/pretrain/final --run runs/demo --set train.max_steps=100 --set tasks.names=add
//   llm sft --model runs/demo/pretrain/final --run runs/demo --lora 16        LoRA (lesson 11): runs/demo/sft-lora
//   llm sft --model runs/demo/pretrain/final --run runs/demo --qlora          QLoRA: an NF4 base, runs/demo/sft-qlora
//
// With LoRA the base model is frozen and only the adapters train; at the end the adapters are saved
// alone in PEFT's layout (<stage>/adapter/) and merged into final/, so the next stage starts from an
// ordinary model folder. QLoRA first stores every projection of the base in NF4 (the fp32 copies
// are freed); merging dequantises them.
//
// Every step trains on the next batch of train-split conversations (a pure function of the step, so
// --resume continues with exactly the batches an uninterrupted run would have seen). Before and
// after: greedy answers to the held-out test problems, scored by exact match.
#include "align.h"
#include "commands.h"

#include <llm/peft/lora.h>
#include <llm/peft/nf4.h>
#include <llm/train/cross_entropy.h>

#include <sys/resource.h>

#include <filesystem>
#include <sstream>

namespace llm::cli {

namespace {

// The "lora" section: off (r = 0) by default, i.e. full fine-tuning.
struct LoraSection {
  int64_t r = 0;         // rank; 0: full fine-tuning
  double alpha = 0;      // 0: 2 r
  double dropout = 0.0;  // PEFT's default
  bool rslora = false;
  // QLoRA's finding (Dettmers et al. 2023, section 4): adapters on every projection are needed to
  // match full fine-tuning; PEFT's Llama default is q_proj,v_proj only.
  std::string targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
  std::string quantize = "none";  // none | nf4 (QLoRA: the frozen base in NF4, double-quantised)
  // The chat tokens are new in SFT: pretraining never saw them, so their embedding rows (and their
  // lm_head rows: <|end|> must become predictable) train too, as PEFT's trainable_token_indices.
  // Measured on the main job's model: without them LoRA reaches 0.18 where full fine-tuning reaches 0.45.
  bool train_tokens = true;

  static const std::vector<Field<LoraSection>>& fields() {
    static const std::vector<Field<LoraSection>> table = {
        {"r", &LoraSection::r, "LoRA rank (0: full fine-tuning)"},
        {"alpha", &LoraSection::alpha, "LoRA alpha; scaling alpha / r (0: 2 r)"},
        {"dropout", &LoraSection::dropout, "dropout on the LoRA branch's input"},
        {"rslora", &LoraSection::rslora, "rsLoRA scaling alpha / sqrt(r)"},
        {"targets", &LoraSection::targets, "comma-separated projections that get adapters"},
        {"quantize", &LoraSection::quantize, "none or nf4 (QLoRA: the frozen base weights in 4 bits)"},
        {"train_tokens", &LoraSection::train_tokens, "also train the special tokens' embedding and lm_head rows"},
    };
    return table;
  }
  void validate() const {
    if (r < 0) throw ConfigError("lora.r must be >= 0 (0: full fine-tuning), got " + std::to_string(r));
    if (quantize != "none" && quantize != "nf4") {
      throw ConfigError("lora.quantize must be one of: none, nf4; got '" + quantize + "'");
    }
    if (quantize == "nf4" && r == 0)
      throw ConfigError("lora.quantize nf4 (QLoRA) needs lora.r > 0: a 4-bit base is frozen");
    if (dropout < 0 || dropout >= 1)
      throw ConfigError("lora.dropout must be in [0, 1), got " + std::to_string(dropout));
    if (alpha < 0) throw ConfigError("lora.alpha must be >= 0 (0: 2 r), got " + std::to_string(alpha));
    const auto& known = llama_projections();
    const auto names = to_config().target_modules;
    if (names.empty()) throw ConfigError("lora.targets is empty; name projections, e.g. q_proj,v_proj");
    for (const auto& t : names) {
      if (std::find(known.begin(), known.end(), t) == known.end()) {
        throw ConfigError("lora.targets: '" + t +
                          "' is not one of: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
      }
    }
  }
  LoraConfig to_config() const {
    LoraConfig c;
    c.r = r;
    c.alpha = alpha > 0 ? alpha : 2.0 * static_cast<double>(r);
    c.dropout = dropout;
    c.use_rslora = rslora;
    c.target_modules.clear();
    std::stringstream ss(targets);
    for (std::string t; std::getline(ss, t, ',');)
      if (!t.empty()) c.target_modules.push_back(t);
    return c;
  }
};

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

// Adapters (and NF4) on the loaded model; returns the summary's "lora" entry.
nlohmann::json attach_adapters(CausalLM& model, const BpeTokenizer& tok, const LoraSection& section,
                               const TrainConfig& train) {
  const LoraConfig config = section.to_config();
  int64_t fp32_bytes = 0, stored_bytes = 0;
  if (section.quantize == "nf4") {
    for (auto& [name, layer] : find_linears(*model, llama_projections())) {
      fp32_bytes += 4 * layer->weight.numel();
      quantize_linear_nf4(*layer);
      stored_bytes += static_cast<Nf4LinearAdapter*>(layer->adapter.get())->weight.bytes();
    }
  }
  const auto adapted = apply_lora(*model, config);
  auto [trainable, total] = count_parameters(*model);
  int64_t token_rows = 0;
  if (section.train_tokens) {
    // Only the special tokens' rows: the gradient of every other row is masked to 0, so AdamW (with
    // no weight decay on these matrices) leaves them exactly as pretrained.
    if (train.weight_decay != 0) {
      throw UsageError("lora.train_tokens needs train.weight_decay 0 (decay would move the frozen rows), got " +
                       std::to_string(train.weight_decay));
    }
    auto mask = torch::zeros({model->config.vocab_size, 1});
    for (const auto& [text, id] : tok.special_tokens()) mask[id] = 1, ++token_rows;
    std::vector<torch::Tensor> tables = {model->model->embed_tokens->weight};
    if (!model->config.tie_word_embeddings) tables.push_back(model->lm_head->weight);
    for (auto& w : tables) {
      w.requires_grad_(true);
      w.register_hook([mask](const torch::Tensor& g) { return g * mask.to(g.scalar_type()); });
    }
    trainable = count_parameters(*model).first -
                static_cast<int64_t>(tables.size()) * model->config.vocab_size * model->config.hidden_size +
                static_cast<int64_t>(tables.size()) * token_rows * model->config.hidden_size;
  }
  nlohmann::json j = {{"r", config.r},
                      {"alpha", config.alpha},
                      {"scaling", config.scaling()},
                      {"targets", config.target_modules},
                      {"adapted_layers", adapted.size()},
                      {"quantize", section.quantize},
                      {"trainable_parameters", trainable},
                      {"trainable_token_rows", token_rows},
                      {"parameters_in_memory", total}};
  if (section.quantize == "nf4") {
    j["base_projection_bytes_fp32"] = fp32_bytes;
    j["base_projection_bytes_nf4"] = stored_bytes;
    j["nf4_bytes_per_parameter"] = 4.0 * stored_bytes / static_cast<double>(fp32_bytes);
  }
  fmt::print("lora: r {} alpha {} on {} layers ({}); {} of {} parameters train ({:.2f}%){}\n", config.r, config.alpha,
             adapted.size(), section.targets, format_count(trainable), format_count(total + (fp32_bytes / 4)),
             100.0 * trainable / static_cast<double>(total + fp32_bytes / 4),
             section.quantize == "nf4" ? fmt::format("; base projections in NF4: {:.1f} MB -> {:.2f} MB",
                                                     fp32_bytes / 1e6, stored_bytes / 1e6)
                                       : "");
  return j;
}

int run(const StageOptions& o) {
  // ---- config ----
  TrainConfig train;
  train.batch_size = 32;
  train.max_steps = 1000;  // measured on the main job's model: 500 steps at 1e-3 reach 0.24, 1000 at 2e-3 0.43
  train.learning_rate = 2e-3;
  train.min_lr = 2e-5;
  train.warmup_steps = 20;
  train.schedule = "cosine";
  train.weight_decay = 0.0;
  train.dtype = "bfloat16";
  train.log_interval = 25;
  train.eval_interval = 100000;
  train.checkpoint_interval = 500;
  train.keep_checkpoints = 2;
  TaskConfig tasks;
  LoraSection lora;
  ConfigSections sections;
  sections.add("train", train);
  sections.add("tasks", tasks);
  sections.add("lora", lora);
  sections.load(o.config_path, o.overrides);  // read once here for the stage's name; open_stage reads it again
  const std::string name = lora.r == 0 ? "sft" : lora.quantize == "nf4" ? "sft-qlora" : "sft-lora";
  Stage stage = open_stage(name, o, sections, train, tasks);
  auto& model = stage.loaded.model;
  const auto& tok = stage.loaded.tokenizer;
  nlohmann::json lora_summary;
  if (lora.r > 0) lora_summary = attach_adapters(model, tok, lora, train);

  // ---- before ----
  model->eval();
  const TaskEval before = evaluate_tasks(model, tok, stage.chat, tasks);
  print_task_eval("before SFT", before);

  // ---- data: batch s holds train examples s*B .. s*B + B - 1 ----
  const auto seed = static_cast<uint64_t>(tasks.seed);
  std::function<std::vector<SftBatch>()> next;
  int64_t cursor = 0;
  next = [&] {
    std::vector<TokenizedExample> rows;
    for (const auto& ex : make_task_examples(stage.tasks, Split::kTrain, seed, train.batch_size, cursor)) {
      if (auto e = truncate_example(stage.chat.example(tok, task_chat(ex), task_render_options(stage.chat)),
                                    tasks.max_length)) {
        rows.push_back(std::move(*e));
      }
    }
    cursor += train.batch_size;
    return std::vector<SftBatch>{collate_sft(rows, stage.chat.pad_id())};
  };

  // ---- model, optimizer, resume ----
  model->train();
  auto opt = make_optimization(*model, train);
  double elapsed_before = 0;
  nlohmann::json extra = nlohmann::json::object();
  if (o.resume) {
    opt.trainer->set_step_count(resume_stage(stage, *model, *opt.optimizer, elapsed_before, extra));
    cursor = opt.trainer->step_count() * train.batch_size;
  }
  stage.metrics = MetricsLog(stage.dir + "/metrics.jsonl", o.resume ? opt.trainer->step_count() : -1);

  // ---- the loop ----
  const int64_t V = model->config.vocab_size;
  CrossEntropyOptions ce;
  ce.reduction = Reduction::kSum;
  std::function<int64_t(const SftBatch&)> count = [](const SftBatch& b) { return b.num_targets(); };
  std::function<LossSum(const SftBatch&)> loss_sum = [&](const SftBatch& b) {
    auto logits = model(b.input_ids, 0, b.attention_mask);  // (B, T, V)
    return LossSum{cross_entropy(logits.reshape({-1, V}), b.targets.reshape({-1}), ce), {}};
  };
  Progress progress("step", train.max_steps, opt.trainer->step_count());
  LoopHooks hooks;
  hooks.on_step = [&](const StepResult& r) {
    const int64_t done = r.step + 1;
    extra["tokens"] = extra.value("tokens", int64_t{0}) + r.count;  // trained (answer) tokens, kept across resume
    stage.metrics.log(
        {{"step", done}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens", r.count}});
    if (done % train.log_interval == 0 || done == 1 || done == train.max_steps) {
      progress.update(done, fmt::format("loss {:.4f} | lr {:.2e} | gnorm {:.2f}", r.loss, r.lr, r.grad_norm));
    }
    return true;
  };
  hooks.on_checkpoint = [&](int64_t done) {
    save_stage_checkpoint(stage, *model, *opt.optimizer, done, elapsed_before + progress.elapsed(), extra,
                          train.keep_checkpoints);
  };
  train_loop<SftBatch>(*opt.trainer, stage_loop_options(train), next, count, loss_sum, hooks);
  progress.finish();

  // ---- after ----
  model->eval();
  const TaskEval after = evaluate_tasks(model, tok, stage.chat, tasks);
  print_task_eval("after SFT", after);
  const double seconds = elapsed_before + progress.elapsed();
  nlohmann::json summary = task_change_json(before, after);
  summary.update({{"steps", opt.trainer->step_count()},
                  {"seconds", seconds},
                  {"tokens", extra.value("tokens", int64_t{0})},
                  {"peak_rss_mb", peak_rss_mb()}});
  if (lora.r > 0) {
    // The adapters alone (PEFT's layout), then merged: final/ is an ordinary model folder.
    const std::string adapter_dir = (std::filesystem::path(stage.dir) / "adapter").string();
    if (std::filesystem::exists(adapter_dir))
      std::filesystem::remove_all(adapter_dir);  // a resumed run finishing again
    save_lora_adapter(adapter_dir, *model, lora.to_config(), o.model_dir);
    merge_and_unload(*model);
    lora_summary["adapter"] = adapter_dir;
    summary["lora"] = lora_summary;
  }
  finish_stage(stage, model, summary, {{"loss", "train loss (nats/token)"}}, "loss");
  fmt::print("{}: {} steps in {}; {}; peak resident memory {:.0f} MB\n", name, opt.trainer->step_count(),
             format_duration(seconds), format_accuracy_change("held-out accuracy", before, after), peak_rss_mb());
  return 0;
}

}  // namespace

int sft_main(int argc, char** argv) {
  CLI::App app{"Supervised fine-tuning on the built-in tasks (add, sub, capital) with the chat template.", "llm sft"};
  StageOptions o;
  add_stage_options(app, o, "sft", "pretrain");
  int64_t lora_r = 0;
  bool qlora = false;
  app.add_option("--lora", lora_r,
                 "fine-tune LoRA adapters of rank R instead of every weight (= --set lora.r=R); "
                 "writes <run>/sft-lora")
      ->check(CLI::PositiveNumber);
  app.add_flag("--qlora", qlora,
               "QLoRA: the frozen base in NF4 and LoRA adapters (rank --lora, default 16); "
               "writes <run>/sft-qlora");
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  if (qlora && lora_r == 0) lora_r = 16;
  if (lora_r > 0) o.overrides.insert(o.overrides.begin(), "lora.r=" + std::to_string(lora_r));
  if (qlora) o.overrides.insert(o.overrides.begin(), "lora.quantize=nf4");
  return run_command("llm sft", [&] { return run(o); });
}

}  // namespace llm::cli
