// llm sft: supervised fine-tuning on the built-in tasks' conversations (lesson 06's chat template,
// prompt masking and padding; lesson 07's cross-entropy; lesson 10's trainer).
//
//   llm sft --model runs/demo/pretrain/final --run runs/demo
//   llm sft --model runs/demo/pretrain/final --run runs/demo --set train.max_steps=100 --set tasks.names=add
//
// Every step trains on the next batch of train-split conversations (a pure function of the step, so
// --resume continues with exactly the batches an uninterrupted run would have seen). Before and
// after: greedy answers to the held-out test problems, scored by exact match.
#include "align.h"
#include "commands.h"

#include <llm/train/cross_entropy.h>

namespace llm::cli {

namespace {

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
  ConfigSections sections;
  sections.add("train", train);
  sections.add("tasks", tasks);
  Stage stage = open_stage("sft", o, sections, train, tasks);
  auto& model = stage.loaded.model;
  const auto& tok = stage.loaded.tokenizer;

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
      if (auto e = truncate_example(render_conversation(tok, stage.chat, task_conversation(ex)), tasks.max_length)) {
        rows.push_back(std::move(*e));
      }
    }
    cursor += train.batch_size;
    return std::vector<SftBatch>{collate_sft(rows, stage.chat.pad)};
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
  finish_stage(stage, model,
               {{"steps", opt.trainer->step_count()},
                {"seconds", seconds},
                {"before", before.to_json()},
                {"after", after.to_json()},
                {"accuracy_before", before.accuracy},
                {"accuracy_after", after.accuracy},
                {"test_problems", after.problems}},
               {{"loss", "train loss (nats/token)"}}, "loss");
  fmt::print("sft: {} steps in {}; {}\n", opt.trainer->step_count(), format_duration(seconds),
             format_change("held-out accuracy", before.accuracy, after.accuracy, after.problems));
  return 0;
}

}  // namespace

int sft_main(int argc, char** argv) {
  CLI::App app{"Supervised fine-tuning on the built-in tasks (add, sub, capital) with the chat template.", "llm sft"};
  StageOptions o;
  add_stage_options(app, o, "sft", "pretrain");
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm sft", [&] { return run(o); });
}

}  // namespace llm::cli
