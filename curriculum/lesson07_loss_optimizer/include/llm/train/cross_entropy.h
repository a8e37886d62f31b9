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

// logits (N, V) any floating dtype, targets (N,) integer -> a scalar (mean, sum) or (N,) (none,
// 0 at ignored positions), float32.
inline torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   const CrossEntropyOptions& options = {}) {
  // 1. Check logits is (N, V) and targets (N,) integer; 0 <= label_smoothing <= 1; z_loss >= 0;
  //    every target is in [0, V) or ignore_index (name the bad target and the valid range).
  // 2. z = logits in float32; lse = logsumexp(z, -1)                                   (N,)
  // 3. counted = targets != ignore_index; safe = targets where counted, else 0 (a valid index to
  //    gather; its value is masked away).
  // 4. nll = lse - z.gather(1, safe[:, None])[:, 0]                                    (N,)
  //    per = (1 - ε) nll;  with ε > 0: per += (ε / V) (V lse - z.sum(-1));  with z_loss: per += z_loss lse^2
  // 5. per = per * counted (ignored positions 0).
  //    kNone: per.  kSum: per.sum().  kMean: per.sum() / counted.sum()  (NaN when nothing counts).
  LLM_TODO("lesson07: cross_entropy(): logsumexp - target logit, smoothing and z-loss, masked, mean over counted positions");
}

}  // namespace llm
