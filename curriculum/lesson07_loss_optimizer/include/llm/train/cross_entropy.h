// Lesson 07 - cross-entropy from log-sum-exp, with ignore_index, label smoothing and z-loss.
//
// Shapes: N positions (B T flattened), V vocabulary.
//
// A language model's logits z (V,) at one position define p = softmax(z). The loss of the target y
// is its negative log-probability:
//
//     log p_y = z_y - logsumexp(z),     logsumexp(z) = m + log sum_c exp(z_c - m),  m = max_c z_c
//     nll     = logsumexp(z) - z_y
//
// Subtracting the max makes exp() safe: logits of 1e4 would overflow exp in fp32 (it ends at ~88),
// z - m is <= 0. Logits arrive in bf16 under mixed precision; they are upcast to fp32 first, since
// bf16's 8 mantissa bits cannot tell log-probabilities of nearby size apart.
//
// ignore_index (-100, as PyTorch): a position whose target is -100 contributes nothing, and the
// mean divides by the number of positions that count (prompt tokens in SFT, padding), never by N.
// All positions ignored gives 0/0 = NaN, as in PyTorch (the data pipeline never builds such a batch).
//
// Label smoothing ε (Szegedy et al. 2016), exactly as PyTorch defines it (LossNLL.cpp,
// cross_entropy_loss_label_smoothing): the target distribution is q = (1 - ε) onehot(y) + ε / V,
// the uniform part including the true class, so
//
//     loss = (1 - ε) nll + (ε / V) sum_c (-log p_c),    sum_c -log p_c = V logsumexp(z) - sum_c z_c
//
// with ignored positions zeroed in *both* terms and the mean over the counted positions.
// (t5x instead uses ε / (V - 1) off the target and subtracts the entropy constant: a different
// number; we match PyTorch, which is what torch::nn::functional::cross_entropy computes.)
//
// z-loss (PaLM, Chowdhery et al. 2022, section 5): z_loss * logsumexp(z)^2 added to each counted
// position, with the same mask and normaliser (t5x's cross_entropy_with_logits). It pulls
// log Z towards 0, which keeps logits from drifting into bf16's range of bad rounding.
//
// The gradient, by hand. With p = softmax(z), q the smoothed target and lse = logsumexp(z), the
// derivative of one position's loss (1 - ε)(lse - z_y) + (ε / V)(V lse - sum_c z_c) + z_loss lse^2 is
//
//     d loss / d z_c = p_c (1 + 2 z_loss lse) - ε / V - (1 - ε) [c == y]
//
// (softmax minus the target distribution, plus the z-loss term). Autograd would get the same from
// logsumexp and gather, but through four more passes over the (N, V) logits and two more tensors of
// that size - the largest of a training step (4096 x 4096 here): they cost more than the forward
// pass of a whole layer. So the loss is a torch::autograd::Function whose forward is one
// log_softmax (computed in fp32 even from bf16 logits) and whose backward is the formula above,
// written in place.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

#include <stdexcept>
#include <string>

namespace llm {

enum class Reduction { kMean, kSum, kNone };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;  // ε in [0, 1]
  double z_loss = 0.0;           // PaLM used 1e-4
  Reduction reduction = Reduction::kMean;
};

// The loss with its hand-written gradient (see the top of the file). Use cross_entropy() below,
// which checks its arguments first.
struct CrossEntropyFunction : torch::autograd::Function<CrossEntropyFunction> {
  // logits (N, V), targets (N,) int64 with ignore_index where not counted.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& targets, int64_t ignore_index, double label_smoothing,
                               double z_loss, int64_t reduction) {
    // 1. logp = log_softmax(logits, -1, dtype float32)                                 (N, V)
    //    counted = targets != ignore_index; safe = targets where counted, else 0       (N,)
    //    lse = logits[:, 0] - logp[:, 0] in fp32 (log_softmax is z - lse in every column)
    // 2. per = (1 - ε) (-logp.gather(safe)) ; with ε > 0: per += (ε / V) (-logp.sum(-1));
    //    with z_loss: per += z_loss lse^2;  per *= counted                              (N,)
    // 3. Save logp, safe, counted, lse and the count for backward (ctx->save_for_backward,
    //    ctx->saved_data). Return per (kNone), per.sum() (kSum) or per.sum() / count (kMean).
    LLM_TODO("lesson07: CrossEntropyFunction::forward(): one fp32 log_softmax, the smoothed nll and z-loss per position, reduced");
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    // 1. w = the upstream gradient of each position: grad (kSum), grad / count (kMean), grad[i]
    //    (kNone); times counted.                                                         (N,)
    // 2. grad_logits = exp(logp) * (w (1 + 2 z_loss lse))[:, None], minus w ε / V everywhere,
    //    minus w (1 - ε) at each position's target (scatter_add_); in the logits' dtype.  (N, V)
    // 3. Return {grad_logits} and an undefined tensor for every other argument of forward.
    LLM_TODO("lesson07: CrossEntropyFunction::backward(): softmax times the z-loss factor, minus the smoothed target, times the upstream gradient");
  }
};

// logits (N, V) any floating dtype, targets (N,) integer -> a scalar (mean, sum) or (N,) (none,
// 0 at ignored positions), float32.
inline torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   const CrossEntropyOptions& options = {}) {
  // Check logits is (N, V) and targets (N,) integer; 0 <= label_smoothing <= 1; z_loss >= 0; every
  // target is in [0, V) or ignore_index (name the bad target and the valid range). Then
  // CrossEntropyFunction::apply(logits, targets as int64, ...).
  // The tests look for these words (TORCH_CHECK concatenates; sizes() prints as [2, 3, 5]):
  //   "cross_entropy: expected logits (N, V) and targets (N,), got [2, 3, 5] and [2, 3]"
  //   "cross_entropy: targets must be integer ids, got Float"
  //   "cross_entropy: label_smoothing must be in [0, 1], got 1.5"
  //   "cross_entropy: z_loss must be >= 0, got -1"
  //   "cross_entropy: target 9 is outside the vocabulary 0..4 (and is not ignore_index -100)"
  //   (the range written first..last, "0..4" for V = 5; only counted targets are checked)
  LLM_TODO("lesson07: cross_entropy(): check shapes, smoothing, z-loss and target range, then the autograd function");
}

}  // namespace llm
