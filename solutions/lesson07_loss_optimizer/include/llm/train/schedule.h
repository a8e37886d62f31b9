// Lesson 07 - learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay.
//
// Steps are counted from 0: step s is the s-th optimizer update. W warmup steps, S total steps.
//
// Warmup. Adam's second moment is a poor estimate in the first steps and the weights are random,
// so a full learning rate at once can diverge; the rate ramps up linearly instead:
//
//     lr(s) = peak (s + 1) / (W + 1)            for s < W
//
// nanoGPT's form (train.py get_lr, since dc81cb3): never 0, so step 0 already learns - Hugging
// Face's s / W spends its first step at lr 0 - and it reaches the peak exactly at s = W, where the
// decay starts. (nanochat uses (s + 1) / W, which holds the peak for two steps.)
//
// Cosine (Loshchilov & Hutter 2017, SGDR without restarts), from the peak at s = W down to min_lr
// at s = S:
//
//     lr(s) = min + (peak - min) (1 + cos(pi (s - W) / (S - W))) / 2      W <= s <= S
//     lr(s) = min                                                        s > S (clamped)
//
// Clamped after S, unlike Hugging Face's get_cosine_schedule_with_warmup, whose cosine rises again
// if training runs past its planned end.
//
// Warmup-stable-decay (WSD; Hu et al. 2024, MiniCPM; nanochat's "warmdown"): warmup, then the peak
// held, then a linear decay over the last D = round(decay_fraction S) steps to min_lr at s = S:
//
//     lr(s) = peak                                       W <= s < S - D
//     lr(s) = min + (peak - min) (S - s) / D              S - D <= s <= S
//
// Its appeal: the stable phase does not depend on S, so a run can be extended and decayed later.
#pragma once

#include <llm/common/todo.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

struct ScheduleOptions {
  std::string kind = "cosine";  // cosine | wsd | constant
  double peak_lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 100;   // W
  int64_t total_steps = 2000;   // S
  double decay_fraction = 0.2;  // WSD: the share of S spent decaying

  static inline const std::vector<std::string> kKinds = {"cosine", "wsd", "constant"};

  void validate() const {
    auto fail = [](const std::string& message) { throw std::invalid_argument("schedule: " + message); };
    if (kind != "cosine" && kind != "wsd" && kind != "constant") {
      fail("kind '" + kind + "' is not one of: cosine, wsd, constant");
    }
    if (!(peak_lr > 0)) fail("peak_lr must be positive, got " + std::to_string(peak_lr));
    if (!(min_lr >= 0 && min_lr <= peak_lr)) fail("min_lr must be in [0, peak_lr], got " + std::to_string(min_lr));
    if (total_steps < 1) fail("total_steps must be >= 1, got " + std::to_string(total_steps));
    if (warmup_steps < 0 || warmup_steps > total_steps) {
      fail("warmup_steps must be in [0, total_steps = " + std::to_string(total_steps) + "], got " +
           std::to_string(warmup_steps));
    }
    if (!(decay_fraction >= 0 && decay_fraction <= 1)) {
      fail("decay_fraction must be in [0, 1], got " + std::to_string(decay_fraction));
    }
  }
};

// The learning rate of step s (s >= 0) under the schedule above.
inline double learning_rate_at(const ScheduleOptions& o, int64_t step) {
  // 1. o.validate(); check step >= 0, or throw std::invalid_argument naming it, e.g.
  //    "schedule: step must be >= 0, got -1".
  // 2. Warmup (every kind): s < W -> peak (s + 1) / (W + 1).
  // 3. constant: peak.  cosine: s >= S -> min, else the cosine from W to S (with S == W there is
  //    nothing to decay: min).  wsd: D = round(decay_fraction S), decay starting at max(W, S - D);
  //    before it peak, from it the line down to min at S, after S min.
  // BEGIN SOLUTION: learning_rate_at(): linear warmup to the peak, then constant, cosine or warmup-stable-decay, clamped at min
  o.validate();
  if (step < 0) throw std::invalid_argument("schedule: step must be >= 0, got " + std::to_string(step));
  const double s = static_cast<double>(step), W = static_cast<double>(o.warmup_steps),
               S = static_cast<double>(o.total_steps);
  if (step < o.warmup_steps) return o.peak_lr * (s + 1) / (W + 1);
  if (o.kind == "constant") return o.peak_lr;
  if (step >= o.total_steps) return o.min_lr;
  if (o.kind == "cosine") {
    const double progress = (s - W) / (S - W);  // S > s >= W, so S - W > 0
    return o.min_lr + (o.peak_lr - o.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  const int64_t decay = static_cast<int64_t>(std::llround(o.decay_fraction * S));
  const int64_t start = std::max(o.warmup_steps, o.total_steps - decay);
  if (step < start) return o.peak_lr;
  return o.min_lr + (o.peak_lr - o.min_lr) * (S - s) / (S - static_cast<double>(start));
  // END SOLUTION
}

}  // namespace llm
