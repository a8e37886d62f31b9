// Lesson 10 - global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ does it.
//
// One bad batch can produce a gradient many times larger than usual; a full step along it undoes
// hours of training. Clipping rescales the *whole* gradient (every parameter by the same factor,
// so its direction is kept) when its global L2 norm exceeds max_norm:
//
//     total = sqrt( sum_p ||g_p||^2 ) = || (||g_1||, ||g_2||, ...) ||     the norm of the norms
//     coef  = min(1, max_norm / (total + 1e-6))
//     g_p   = g_p * coef                                                  for every p
//
// LibTorch's clip_grad_norm_ (torch/nn/utils/clip_grad.h) exactly: parameters without a gradient
// are skipped (none at all: the norm is 0); every gradient is multiplied, even when coef is 1; the
// returned norm is the one *before* clipping, which is the number worth logging (a rising norm is
// an early sign of divergence). A non-finite norm (a NaN or inf anywhere) is returned as it is; the
// trainer then refuses to take the step.
//
// With gradient accumulation and data parallelism, clip once per optimizer step, after the last
// micro-batch and after the gradients are all-reduced: the norm must be the global gradient's.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

#include <vector>

namespace llm {

// Scales the gradients of `params` in place; returns the total norm before clipping.
inline double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  // 1. Check max_norm > 0 (0 means "no clipping" and is the caller's choice not to call this), naming
  //    it and the value: "clip_grad_norm: max_norm must be positive, got -1".
  // 2. The norms n_p = g_p.norm() of the parameters whose grad is defined; none: return 0.
  // 3. total = stack(n_p).norm() (a single parameter: its norm).
  // 4. coef = clamp(max_norm / (total + 1e-6), max = 1); g_p.mul_(coef) for every such p (under
  //    NoGradGuard: the gradients are tensors like any other here).
  // 5. Return total as a double.
  // BEGIN SOLUTION: clip_grad_norm(): the norm of the per-parameter norms, every gradient scaled by min(1, max/(total+1e-6))
  TORCH_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad()), norms.push_back(p.grad().norm());
  }
  if (grads.empty()) return 0.0;
  auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm();
  auto coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (auto& g : grads) g.mul_(coef);
  return total.item<double>();
  // END SOLUTION
}

}  // namespace llm
