// llm pretrain: next-token pretraining of the lesson 03-05 Llama on a text corpus.
//
//   llm pretrain --config configs/quick.yaml --run runs/demo
//   llm pretrain --config configs/quick.yaml --run runs/demo --resume      continue after a crash or kill
//   llm launch --nproc 2 -- pretrain --config configs/quick.yaml --run runs/ddp
//
// The recipe: config -> tokenizer -> data (token shards, lesson 06) -> model (lesson 05) -> optimizer
// and schedule (lesson 07) -> the trainer's loop (lesson 10) with evaluation, checkpoints and logs.
// Everything lands in <run>/pretrain/:
//
//   config.yaml      the resolved configuration          metrics.jsonl  one line per step and evaluation
//   data/            train.bin, val.bin token shards      loss.png       the loss curves
//   checkpoints/     the newest train.keep_checkpoints    final/         the model as a Hugging Face folder
//   summary.json     what the stage did, in numbers       samples.txt    text sampled from the final model
#include "commands.h"

#include <llm/cli/config.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/text.h>
#include <llm/config/model_config.h>
#include <llm/config/train_config.h>
#include <llm/data/pretrain_batches.h>
#include <llm/data/sft.h>
#include <llm/data/token_shard.h>
#include <llm/eval/perplexity.h>
#include <llm/generate/generate.h>
#include <llm/model/causal_lm.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/train/adamw.h>
#include <llm/train/checkpoint.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/data_parallel.h>
#include <llm/train/lion.h>
#include <llm/train/trainer.h>

#include <filesystem>
#include <memory>

namespace llm::cli {

namespace {

namespace fs = std::filesystem;

struct PretrainOptions {
  std::string config_path, run, tokenizer_dir, split = "chapters";
  std::vector<std::string> overrides;
  bool resume = false;
  int64_t samples = 3, sample_tokens = 120;
};

// The corpus as a token shard, tokenized once; a shard already there is reused if it was made
// with the same vocabulary size.
std::string ensure_shard(const std::string& text_path, const std::string& shard_path, const BpeTokenizer& tok,
                         const std::string& split) {
  if (fs::exists(shard_path)) {
    TokenShard existing(shard_path);
    if (existing.vocab_size() == tok.vocab_size()) return shard_path;
    throw std::runtime_error(shard_path + " was tokenized with a vocabulary of " +
                             std::to_string(existing.vocab_size()) + ", the tokenizer has " +
                             std::to_string(tok.vocab_size()) + "; remove it to re-tokenize");
  }
  const std::string text = read_file(text_path);
  std::vector<std::vector<int32_t>> docs;
  for (const auto& doc : split_documents(text, split)) docs.push_back(tok.encode(doc, /*allow_special=*/false));
  const auto ids = join_documents(docs, tok.special_id(ChatTemplate::kEndOfText));
  write_token_shard(shard_path, ids, tok.vocab_size());
  fmt::print("data: {} -> {} ({} documents, {} tokens, {:.2f} bytes/token)\n", text_path, shard_path, docs.size(),
             format_count(static_cast<double>(ids.size())), static_cast<double>(text.size()) / ids.size());
  return shard_path;
}

// Validation totals over the blocks of the val shard in order, `max_batches` batches of B (0: all),
// split across ranks and summed.
LossTotals validate(CausalLM& model, const TokenShard& shard, const torch::Tensor& token_bytes, int64_t B, int64_t T,
                    int64_t max_batches, bool bf16, ProcessGroup* group, int64_t rank, int64_t world) {
  const int64_t blocks = (shard.size() - 1) / T;
  const int64_t wanted = max_batches > 0 ? std::min(blocks, max_batches * B) : blocks;
  LossTotals totals;
  evaluate(*model, [&] {
    for (int64_t first = rank * B; first < wanted; first += world * B) {
      const int64_t n = std::min(B, wanted - first);
      std::vector<torch::Tensor> rows;
      for (int64_t i = 0; i < n; ++i) rows.push_back(shard.slice((first + i) * T, T + 1));
      auto block = torch::stack(rows);
      torch::Tensor logits;
      {
        AutocastGuard autocast(bf16);
        logits = model(block.narrow(1, 0, T));
      }
      totals += loss_totals(logits.reshape({-1, logits.size(-1)}), block.narrow(1, 1, T).reshape({-1}), token_bytes);
    }
    return 0;
  });
  if (group != nullptr) {
    totals.nats = group->all_reduce_sum(totals.nats);
    totals.tokens = static_cast<int64_t>(group->all_reduce_sum(static_cast<double>(totals.tokens)));
    totals.bytes = static_cast<int64_t>(group->all_reduce_sum(static_cast<double>(totals.bytes)));
  }
  return totals;
}

std::string sample_text(CausalLM& model, const BpeTokenizer& tok, const std::string& prompt, int64_t new_tokens,
                        uint64_t seed) {
  GenerationConfig gen;
  gen.max_new_tokens = std::min<int64_t>(new_tokens, model->config.max_position_embeddings - 64);
  gen.sampling.temperature = 0.8;
  gen.sampling.top_k = 50;
  gen.stop_tokens = {tok.special_id(ChatTemplate::kEndOfText)};
  std::vector<int64_t> ids;
  for (TokenId id : tok.encode(prompt, false)) ids.push_back(id);
  auto out = generate(model, {ids}, gen, at::make_generator<at::CPUGeneratorImpl>(seed));
  std::vector<TokenId> all(ids.begin(), ids.end());
  for (int64_t id : out[0]) {
    if (id != gen.stop_tokens[0]) all.push_back(static_cast<TokenId>(id));
  }
  return tok.decode(all);
}

int run(PretrainOptions o) {
  // ---- config ----
  ModelConfig model_config = ModelConfig::preset("tiny");
  TrainConfig train;
  ConfigSections sections;
  sections.add_model("model", model_config);
  sections.add("train", train);
  sections.load(o.config_path, o.overrides);
  if (o.run.empty()) o.run = train.out_dir;

  const auto env = DistributedEnv::from_environment();
  const bool rank0 = env.rank == 0;
  const int64_t threads = configure_threads(train.threads);
  torch::manual_seed(static_cast<uint64_t>(train.seed));

  // ---- tokenizer ----
  const std::string tokenizer_dir =
      o.tokenizer_dir.empty() ? (fs::path(o.run) / "tokenizer").string() : o.tokenizer_dir;
  if (!fs::exists(fs::path(tokenizer_dir) / "vocab.json")) {
    throw UsageError("no tokenizer in '" + tokenizer_dir + "'; train one first (llm tokenizer train --chat --out " +
                     tokenizer_dir + ") or pass --tokenizer DIR");
  }
  const BpeTokenizer tok = load_tokenizer_dir(tokenizer_dir);
  if (model_config.vocab_size != tok.vocab_size()) {
    if (rank0 && model_config.vocab_size != ModelConfig::preset("tiny").vocab_size) {
      fmt::print("note: model.vocab_size {} replaced by the tokenizer's {}\n", model_config.vocab_size,
                 tok.vocab_size());
    }
    model_config.vocab_size = tok.vocab_size();
  }
  if (train.seq_len > model_config.max_position_embeddings) {
    throw ConfigError("train.seq_len " + std::to_string(train.seq_len) + " exceeds model.max_position_embeddings " +
                      std::to_string(model_config.max_position_embeddings));
  }
  const int64_t eot = tok.special_id(ChatTemplate::kEndOfText);

  // ---- run folder, process group ----
  std::shared_ptr<ProcessGroup> group;
  if (env.world_size > 1) group = ProcessGroup::connect(env);
  std::string dir = (fs::path(o.run) / "pretrain").string();
  if (rank0) dir = prepare_stage_dir(o.run, "pretrain", o.resume);
  if (group) group->barrier();
  if (rank0) {
    write_text((fs::path(dir) / "config.yaml").string(), sections.to_yaml_string());
    fmt::print("== llm pretrain -> {}\n{}", dir, sections.to_yaml_string());
    fmt::print("processes {}, threads per process {}, precision {}\n", env.world_size, threads, train.dtype);
  }

  // ---- data ----
  const fs::path data_dir = fs::path(dir) / "data";
  if (rank0) {
    fs::create_directories(data_dir);
    ensure_shard(train.train_data, (data_dir / "train.bin").string(), tok, o.split);
    ensure_shard(train.val_data, (data_dir / "val.bin").string(), tok, o.split);
  }
  if (group) group->barrier();
  TokenShard train_shard((data_dir / "train.bin").string()), val_shard((data_dir / "val.bin").string());
  PretrainLoader::Options lo;
  lo.batch_size = train.batch_size;
  lo.seq_len = train.seq_len;
  lo.seed = static_cast<uint64_t>(train.seed);
  lo.rank = env.rank;
  lo.world_size = env.world_size;
  lo.pack = train.pack_documents;
  lo.eot_id = eot;
  PretrainLoader loader(train_shard, lo);
  const auto token_bytes = token_byte_counts(tok);

  // ---- model, optimizer, trainer ----
  CausalLM model(model_config);
  if (group) broadcast_parameters(*group, *model);
  auto groups = decay_param_groups(model->named_parameters(), train.learning_rate, train.weight_decay);
  std::unique_ptr<Optimizer> optimizer;
  if (train.optimizer == "lion") {
    optimizer = std::make_unique<Lion>(std::move(groups), LionOptions{train.beta1, train.beta2});
  } else {
    optimizer = std::make_unique<AdamW>(std::move(groups), AdamWOptions{train.beta1, train.beta2, 1e-8});
  }
  TrainerOptions to;
  to.grad_clip = train.grad_clip;
  to.bf16 = uses_bf16_autocast(train.dtype);
  to.schedule = {train.schedule,     train.learning_rate, train.min_lr,
                 train.warmup_steps, train.max_steps,     train.decay_fraction};
  Trainer trainer(*optimizer, to, group.get());
  if (rank0) {
    fmt::print(
        "model: {:.2f}M parameters; data: {} blocks of {} tokens per epoch, {} per step\n",
        model->num_parameters() / 1e6, loader.num_blocks(), train.seq_len,
        format_count(static_cast<double>(train.batch_size * train.grad_accum_steps * env.world_size * train.seq_len)));
  }

  // ---- resume ----
  const std::string checkpoint_root = (fs::path(dir) / "checkpoints").string();
  int64_t tokens_seen = 0;
  double elapsed_before = 0;
  nlohmann::json extra = nlohmann::json::object();
  if (o.resume) {
    auto latest = load_latest_checkpoint(checkpoint_root);
    for (const auto& why : latest.skipped) {
      if (rank0) fmt::print("resume: skipped {}\n", why);
    }
    if (latest.checkpoint) {
      const auto& c = *latest.checkpoint;
      check_resumable(c.state, config_to_json(model_config), env.world_size);
      restore_parameters(*model, c.model, latest.dir);
      optimizer->load_state_dict(c.optimizer);
      restore_rng_state(c.rng_state);
      trainer.set_step_count(c.state.step);
      loader.set_cursor(c.state.data_cursor);
      tokens_seen = c.state.tokens_seen;
      elapsed_before = c.state.elapsed_seconds;
      extra = c.state.extra;
      if (rank0) {
        fmt::print("resumed from {}: step {}, lr {:.3e}, {} tokens seen, data cursor {} (epoch {})\n", latest.dir,
                   c.state.step, learning_rate_at(to.schedule, c.state.step), format_count(tokens_seen),
                   c.state.data_cursor, loader.epoch());
      }
    } else if (rank0) {
      fmt::print("resume: no complete checkpoint in {}; starting from step 0\n", checkpoint_root);
    }
  }
  MetricsLog metrics;
  if (rank0) metrics = MetricsLog((fs::path(dir) / "metrics.jsonl").string(), o.resume ? trainer.step_count() : -1);

  // ---- before ----
  const bool bf16 = to.bf16;
  auto eval_now = [&](int64_t max_batches) {
    return validate(model, val_shard, token_bytes, train.batch_size, train.seq_len, max_batches, bf16, group.get(),
                    env.rank, env.world_size);
  };
  if (!extra.contains("val_bpb_before")) {
    const auto before = eval_now(0);
    extra["val_bpb_before"] = bits_per_byte(before);
    extra["val_loss_before"] = before.nats / before.tokens;
    if (rank0) {
      fmt::print("validation before training ({} tokens of {}): loss {:.4f}, {:.4f} bits per byte\n",
                 format_count(before.tokens), train.val_data, before.nats / before.tokens, bits_per_byte(before));
      metrics.log({{"step", trainer.step_count()},
                   {"val/loss", before.nats / before.tokens},
                   {"val/bpb", bits_per_byte(before)}});
    }
  }

  // ---- the loop ----
  const int64_t V = model_config.vocab_size;
  std::function<std::vector<PretrainBatch>()> next = [&] {
    std::vector<PretrainBatch> mbs;
    for (int64_t i = 0; i < train.grad_accum_steps; ++i) mbs.push_back(loader.next());
    return mbs;
  };
  std::function<int64_t(const PretrainBatch&)> count = [](const PretrainBatch& b) {
    return b.targets.ne(kIgnoreTarget).sum().item<int64_t>();
  };
  CrossEntropyOptions ce;
  ce.reduction = Reduction::kSum;
  std::function<LossSum(const PretrainBatch&)> loss_sum = [&](const PretrainBatch& b) {
    auto logits = model->forward(b.input_ids, 0, {}, nullptr, b.position_ids);  // (B, T, V)
    return LossSum{cross_entropy(logits.reshape({-1, V}), b.targets.reshape({-1}), ce), {}};
  };
  Progress progress("step", train.max_steps, trainer.step_count());
  double last_val_bpb = NAN;
  LoopHooks hooks;
  hooks.on_step = [&](const StepResult& r) {
    tokens_seen += r.count;
    const double tps = r.count / std::max(r.seconds, 1e-9);
    const int64_t done = r.step + 1;
    if (rank0) {
      metrics.log({{"step", done},
                   {"loss", r.loss},
                   {"lr", r.lr},
                   {"grad_norm", r.grad_norm},
                   {"tokens", tokens_seen},
                   {"tokens_per_s", tps},
                   {"elapsed_s", elapsed_before + progress.elapsed()}});
      if (done % train.log_interval == 0 || done == train.max_steps || done == 1) {
        progress.update(done, fmt::format("loss {:.4f} | lr {:.2e} | gnorm {:.2f} | {} tok/s", r.loss, r.lr,
                                          r.grad_norm, format_count(tps * env.world_size)));
      }
    }
    return true;
  };
  hooks.on_eval = [&](int64_t done) {
    const auto t = eval_now(train.eval_batches);
    last_val_bpb = bits_per_byte(t);
    if (rank0) {
      progress.finish();
      fmt::print("step {}: validation loss {:.4f}, {:.4f} bits per byte\n", done, t.nats / t.tokens, last_val_bpb);
      metrics.log({{"step", done}, {"val/loss", t.nats / t.tokens}, {"val/bpb", last_val_bpb}});
      plot_metrics(metrics.path(), (fs::path(dir) / "loss.png").string(), "pretraining",
                   {{"loss", "train loss (nats/token)"}, {"val/loss", "validation loss"}}, "loss");
    }
  };
  hooks.on_checkpoint = [&](int64_t done) {
    if (!rank0) return;
    Checkpoint c;
    c.model = capture_parameters(*model);
    c.optimizer = optimizer->state_dict();
    c.rng_state = capture_rng_state();
    c.state = {done,           loader.cursor(),
               tokens_seen,    elapsed_before + progress.elapsed(),
               env.world_size, config_to_json(model_config),
               extra};
    save_checkpoint(checkpoint_root, c, train.keep_checkpoints);
  };
  LoopOptions loop;
  loop.max_steps = train.max_steps;
  loop.eval_interval = train.eval_interval;
  loop.checkpoint_interval = train.checkpoint_interval;
  try {
    train_loop<PretrainBatch>(trainer, loop, next, count, loss_sum, hooks);
  } catch (const NonFiniteError& e) {
    progress.finish();
    const auto kept = list_checkpoints(checkpoint_root);
    throw std::runtime_error(std::string(e.what()) + "; stopped. " +
                             (kept.empty()
                                  ? "No checkpoint was written yet."
                                  : "The last good checkpoint is " + kept.front() + " (--resume continues from it)."));
  }
  progress.finish();

  // ---- after ----
  const auto after = eval_now(0);
  if (!rank0) return 0;
  const double seconds = elapsed_before + progress.elapsed();
  fmt::print("validation after training: loss {:.4f}, {:.4f} bits per byte (before: {:.4f})\n",
             after.nats / after.tokens, bits_per_byte(after), extra["val_bpb_before"].get<double>());
  plot_metrics(metrics.path(), (fs::path(dir) / "loss.png").string(), "pretraining",
               {{"loss", "train loss (nats/token)"}, {"val/loss", "validation loss"}}, "loss");
  const std::string final_dir = (fs::path(dir) / "final").string();
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a resumed run finishing again
  save_hf_folder(final_dir, model, tok);
  std::string samples;
  for (int64_t i = 0; i < o.samples; ++i) {
    static const char* kPrompts[] = {"It is a truth universally acknowledged", "Elizabeth", "\"My dear",
                                     "The next morning"};
    const std::string s = sample_text(model, tok, kPrompts[i % 4], o.sample_tokens, 1000 + i);
    samples += s + "\n\n---\n\n";
    fmt::print("\nsample {}:\n{}\n", i + 1, s);
  }
  write_text((fs::path(dir) / "samples.txt").string(), samples);
  nlohmann::json summary = {{"stage", "pretrain"},
                            {"steps", trainer.step_count()},
                            {"tokens", tokens_seen},
                            {"seconds", seconds},
                            {"parameters", model->num_parameters()},
                            {"processes", env.world_size},
                            {"threads", threads},
                            {"dtype", train.dtype},
                            {"val_bpb_before", extra["val_bpb_before"]},
                            {"val_bpb_after", bits_per_byte(after)},
                            {"val_loss_after", after.nats / after.tokens},
                            {"val_perplexity_after", perplexity(after)},
                            {"finished", utc_timestamp()}};
  write_text((fs::path(dir) / "summary.json").string(), summary.dump(2) + "\n");
  fmt::print("\npretrain: {} steps, {} tokens in {}; validation bits per byte {:.4f} -> {:.4f}\n", trainer.step_count(),
             format_count(tokens_seen), format_duration(seconds), extra["val_bpb_before"].get<double>(),
             bits_per_byte(after));
  fmt::print("pretrain: model folder {} (loss curve {}/loss.png)\n", final_dir, dir);
  return 0;
}

}  // namespace

int pretrain_main(int argc, char** argv) {
  CLI::App app{"Pretrain the Llama of lessons 03-05 on a text corpus (the built-in Austen novels by default).",
               "llm pretrain"};
  PretrainOptions o;
  app.add_option("--config", o.config_path, "YAML with the sections model and train (configs/quick.yaml, ...)")
      ->check(CLI::ExistingFile);
  app.add_option("--run", o.run,
                 "the run folder: reads <run>/tokenizer, writes <run>/pretrain (default: train.out_dir)");
  app.add_option("--tokenizer", o.tokenizer_dir, "a tokenizer folder other than <run>/tokenizer");
  app.add_option("--set", o.overrides, "override one setting, e.g. --set train.max_steps=100 (repeatable)");
  app.add_flag("--resume", o.resume, "continue <run>/pretrain from its newest complete checkpoint");
  app.add_option("--split", o.split, "how the corpus is cut into documents (each ends with <|endoftext|>)")
      ->capture_default_str()
      ->check(CLI::IsMember(kSplitModes));
  app.add_option("--samples", o.samples, "texts to sample from the final model")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm pretrain", [&] { return run(o); });
}

}  // namespace llm::cli
