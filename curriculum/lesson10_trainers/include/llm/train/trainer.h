// Lesson 10 - the training loop, written once, for every stage: pretraining, SFT, DPO, GRPO, PPO.
//
// One optimizer step reads like the math:
//
//     zero_grad
//     for each of the k micro-batches:   loss_i = sum of the losses of its items   (forward, autocast)
//                                        backward( loss_i / N )                   N = items in all k
//     all-reduce the gradients           (data parallel: the SUM over ranks, N counted over ranks too)
//     clip                               global norm (grad_clip.h); a non-finite norm or loss stops
//     lr = schedule(step); step          (lesson 07)
//
// Gradient accumulation splits a batch too big for memory into k micro-batches whose gradients add
// up before one step. The loss of the step is the mean over *all* trained items (tokens) of all k:
//
//     L = (sum_i sum_{t in mb_i} l_t) / N,     N = sum_i n_i
//
// so each micro-batch's backward uses its *sum* divided by the global N. Averaging per-micro-batch
// means instead, (1/k) sum_i mean_i, weights a token of a short micro-batch more than one of a long
// one: equal to the big batch only when every n_i is the same. That was the 2024 gradient-
// accumulation bug of Hugging Face's Trainer (huggingface/blog gradient_accumulation.md;
// transformers#34191): SFT batches with padding and prompt masking have unequal n_i. N is known
// before any forward pass (it is a count of targets), so nothing needs to be computed twice.
//
// What a stage supplies is its data and its loss, through two functions of a micro-batch:
//   count(mb)     the number of items its loss averages over (trained tokens; pairs for DPO)
//   loss_sum(mb)  the *sum* of its items' losses as a scalar tensor, plus metric sums
// so the same loop trains every stage. Metrics are sums too and are reported divided by N.
//
// A loss or gradient norm that is NaN or infinite stops the run *before* the optimizer step: the
// weights stay those of the last good step, no checkpoint of the broken state is written, and the
// error names the step (nanoGPT#136: NaNs propagate into every weight in one step).
#pragma once

#include <llm/common/todo.h>
#include <llm/train/data_parallel.h>
#include <llm/train/grad_clip.h>
#include <llm/train/mixed_precision.h>
#include <llm/train/optimizer.h>
#include <llm/train/schedule.h>

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

struct NonFiniteError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct LossSum {
  torch::Tensor sum;                      // scalar, the sum of the micro-batch's item losses
  std::map<std::string, double> metrics;  // sums over the micro-batch's items
};

struct TrainerOptions {
  double grad_clip = 1.0;  // max global norm; 0 = no clipping (the norm is still measured)
  ScheduleOptions schedule;
  bool bf16 = false;  // bf16 autocast for the forward passes (mixed_precision.h)
};

struct StepResult {
  int64_t step = 0;  // this step's number (0 for the first); step_count() is one more after it
  double loss = 0;   // the mean over all trained items of the step
  double lr = 0;
  double grad_norm = 0;                   // before clipping
  int64_t count = 0;                      // N, over every micro-batch and rank
  double seconds = 0;                     // wall time of the step
  std::map<std::string, double> metrics;  // each metric's sum / N
};

class Trainer {
 public:
  // params: everything the optimizer updates (for clipping and the all-reduce). group: null for a
  // single process.
  Trainer(Optimizer& optimizer, TrainerOptions options, ProcessGroup* group = nullptr)
      : optimizer_(optimizer), options_(options), group_(group) {
    options_.schedule.validate();
    TORCH_CHECK(options.grad_clip >= 0, "Trainer: grad_clip must be >= 0 (0 = off), got ", options.grad_clip);
    for (const auto& g : optimizer.groups()) params_.insert(params_.end(), g.params.begin(), g.params.end());
  }

  int64_t step_count() const { return step_; }         // optimizer steps taken so far
  void set_step_count(int64_t step) { step_ = step; }  // on resume
  const TrainerOptions& options() const { return options_; }

  // One optimizer step over this rank's micro-batches (see the top of the file).
  template <typename Batch>
  StepResult step(const std::vector<Batch>& micro_batches, const std::function<int64_t(const Batch&)>& count,
                  const std::function<LossSum(const Batch&)>& loss_sum) {
    // 1. Check there is at least one micro-batch. N = sum of count(mb); with a group, all-reduce it.
    //    N == 0: throw std::runtime_error (a step with nothing to learn from: a data bug upstream).
    // 2. optimizer.zero_grad().
    // 3. For each micro-batch: { AutocastGuard autocast(options.bf16); out = loss_sum(mb); }
    //    (out.sum / N).backward(); add out.sum's value to the loss total and out.metrics to the metric
    //    totals.
    // 4. With a group: all_reduce_gradients(params); all-reduce the loss total and every metric.
    // 5. norm = clip_grad_norm(params, grad_clip) (with grad_clip 0: the norm of the norms, no scaling).
    // 6. loss = total / N. If loss or norm is not finite: throw NonFiniteError("step <s>: loss <x>,
    //    gradient norm <y>: not finite; the optimizer step was not taken").
    // 7. lr = learning_rate_at(schedule, step); optimizer.set_lr(lr); optimizer.step(); step += 1.
    // 8. Return the StepResult (metrics divided by N, seconds of wall time).
    LLM_TODO("lesson10: Trainer::step(): token-normalised accumulation, all-reduce, clip, non-finite check, scheduled step");
  }

 private:
  [[maybe_unused]] Optimizer& optimizer_;  // (unused only in the stub, until step() is written)
  TrainerOptions options_;
  [[maybe_unused]] ProcessGroup* group_;
  std::vector<torch::Tensor> params_;
  int64_t step_ = 0;
};

// Hooks the loop calls. Each may be empty.
struct LoopHooks {
  std::function<bool(const StepResult&)> on_step;         // after every step (log); false stops early
  std::function<void(int64_t steps_done)> on_eval;        // every eval_interval steps, and after the last
  std::function<void(int64_t steps_done)> on_checkpoint;  // every checkpoint_interval steps, and after the last
};

struct LoopOptions {
  int64_t max_steps = 1000;
  int64_t eval_interval = 0;        // 0 = only after the last step
  int64_t checkpoint_interval = 0;  // 0 = only after the last step
};

// Runs trainer steps until max_steps (or a hook stops it), calling the hooks. next() gives this
// rank's micro-batches of the next step. Returns the number of steps taken by this call.
template <typename Batch>
int64_t train_loop(Trainer& trainer, const LoopOptions& options, const std::function<std::vector<Batch>()>& next,
                   const std::function<int64_t(const Batch&)>& count,
                   const std::function<LossSum(const Batch&)>& loss_sum, const LoopHooks& hooks = {}) {
  // While step_count < max_steps: r = trainer.step(next(), count, loss_sum); done = step_count;
  // stop = on_step && !on_step(r); eval if eval_interval divides done; checkpoint if
  // checkpoint_interval divides done; break on stop. After the loop: if the last step did not
  // already evaluate or checkpoint, do so now (the final state is always evaluated and saved), unless
  // no step was taken.
  LLM_TODO("lesson10: train_loop(): step until max_steps or a stop, evaluating and checkpointing at their intervals and at the end");
}

// Runs fn() with the model in eval mode and no gradient, then restores its mode.
template <typename Fn>
auto evaluate(torch::nn::Module& model, Fn&& fn) {
  struct Restore {
    torch::nn::Module& m;
    bool was;
    ~Restore() { m.train(was); }
  } restore{model, model.is_training()};
  torch::NoGradGuard no_grad;
  model.eval();
  return fn();
}

}  // namespace llm
