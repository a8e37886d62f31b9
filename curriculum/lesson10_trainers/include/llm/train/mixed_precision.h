// Lesson 10 - mixed precision on the CPU: bf16 autocast with fp32 master weights.
//
// bfloat16 keeps fp32's 8 exponent bits (the same range: no overflow, no loss scaling needed, unlike
// fp16) and 8 of its 24 mantissa bits. On CPUs with AVX-512 BF16 or AMX, LibTorch's oneDNN runs a
// bf16 matrix multiply 4-13x faster than OpenBLAS runs fp32 (measured on this project's 2-core
// machines with LibTorch 1.13.1 on 2 threads: a 1024^3 product at 140-170 GFLOP/s in fp32 against
// 570-920 in bf16, the peak llm-bench-model prints; a (4096 x 256) @ (256 x 256) one at 52 against
// about 670), so the matmuls - most of a transformer's arithmetic - are what to lower.
//
// Autocast does it per operation while the weights stay fp32 (the "master weights": the optimizer
// adds tiny updates that bf16 would round away). Inside an AutocastGuard, LibTorch casts the inputs
// of the ops on its lower-precision list to bf16 and leaves the rest alone. For the CPU in 1.13
// (aten/src/ATen/autocast_mode.cpp, the AutocastCPU kernels):
//
//   bf16:  linear, matmul, mm, bmm, addmm, baddbmm, conv*                       the heavy lifting
//   fp32:  cross_entropy_loss, nll_loss, mse_loss, kl_div, ... (the losses)
//   as given: everything else - softmax, log_softmax, layer_norm, exp, sum, pow, rsqrt, silu, gelu
//          run in the dtype of their input
//
// The last line is the trap. CUDA autocast forces softmax and norms to fp32; CPU autocast does not,
// so a bf16 matmul output fed to a softmax is softmaxed in bf16. The lessons therefore upcast where
// precision matters, explicitly: RMSNorm computes its statistics in fp32 (lesson 02), the
// logits are returned in fp32 (lesson 05) and the loss works in fp32 (lesson 07). Attention (lesson
// 03) keeps its bf16 scores under autocast - that matmul is the speed autocast is for - and relies
// on LibTorch's CPU softmax accumulating bf16 in fp32. The residual stream stays fp32 too: bf16 + fp32
// promotes to fp32. Gradients land in fp32, on the fp32 weights.
//
// The guard is what Python's `with torch.autocast("cpu", dtype=torch.bfloat16):` does on entry and
// exit (torch/amp/autocast_mode.py): remember the previous state, enable, raise the nesting level;
// on exit lower it, clear the cache of casted weights when the outermost region ends, restore.
// Only the forward pass goes inside: backward runs in whatever dtypes the forward recorded.
#pragma once

#include <llm/common/todo.h>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

namespace llm {

class AutocastGuard {
 public:
  // enabled = false makes the guard a no-op region (so one code path serves fp32 and bf16 runs).
  explicit AutocastGuard(bool enabled, at::ScalarType dtype = at::kBFloat16) {
    // 1. Remember at::autocast::is_cpu_enabled() and get_autocast_cpu_dtype().
    // 2. set_cpu_enabled(enabled); set_autocast_cpu_dtype(dtype); increment_nesting().
    LLM_TODO("lesson10: AutocastGuard(): remember the state, enable CPU autocast with the dtype, nest");
  }

  // A destructor must not throw: restore() does the work, and an error (an unfinished stub) is
  // reported instead of terminating the program.
  ~AutocastGuard() {
    try {
      restore();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "AutocastGuard: %s\n", e.what());
    }
  }

  // Leaves the region: decrement_nesting(); when it returns 0 (the outermost region ends),
  // clear_cache(); then restore the remembered enabled flag and dtype.
  void restore() {
    LLM_TODO("lesson10: AutocastGuard::restore(): un-nest, clear the cast cache at the outermost level, restore");
  }

  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  [[maybe_unused]] bool previous_enabled_ = false;  // (unused only in the stub)
  [[maybe_unused]] at::ScalarType previous_dtype_ = at::kBFloat16;
};

// "float32" -> false, "bfloat16" -> true (the train.dtype values of lesson 01).
inline bool uses_bf16_autocast(const std::string& dtype) {
  if (dtype == "float32") return false;
  if (dtype == "bfloat16") return true;
  throw std::invalid_argument("dtype '" + dtype + "' is not one of: float32, bfloat16");
}

}  // namespace llm
