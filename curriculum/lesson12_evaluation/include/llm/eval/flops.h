// Lesson 12 - how much arithmetic a model costs: FLOPs per token and model FLOPs utilisation.
//
// Shapes: L layers, C width, H query heads, Hkv key/value heads, D head dim, F MLP width,
// V vocabulary, T the sequence length trained on.
//
// A matmul of an (m, k) by a (k, n) matrix is 2 m k n floating-point operations (a multiply and an
// add each). A token passing a weight matrix of N_w numbers forward costs 2 N_w; its backward costs
// twice that (one matmul for the input's gradient, one for the weight's), so training is
//
//     6 N  per token,     N = the parameters that take part in a matmul
//
// Attention adds the work that has no weights: scores Q K^T and the weighted sum P V, each
// 2 T D per head per token forward, so 12 L H D T per token for training (PaLM appendix B; nanoGPT's
// estimate_mfu). This counts the full T x T matrix, not the causal half, as PaLM and nanochat do.
//
//     flops_per_token = 6 N + 12 L H D T
//
// Which parameters are N? nanochat counts only Linear weights - the embedding is a table lookup, no
// arithmetic - while nanoGPT's get_num_params counts the (tied) embedding too. We follow nanochat:
// every projection and the lm_head (V C, counted even when it is tied to the embedding, because the
// output matmul happens either way), and not embed_tokens or the norms.
//
// Model FLOPs utilisation (Chowdhery et al. 2022) compares what training achieves with what the
// hardware could do:  MFU = flops_per_token * tokens_per_second / peak_flops, with the peak measured
// on this machine (a large bf16 or fp32 matmul), not the vendor's advertised peak.
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>

#include <torch/torch.h>

#include <chrono>
#include <cstdint>

namespace llm {

// The weights that take part in matmuls: per layer q, k, v, o and the MLP's 2 or 3 matrices; lm_head.
inline int64_t matmul_parameters(const ModelConfig& config) {
  LLM_TODO("lesson12: matmul_parameters(): the projections of every layer and the lm_head, no embedding or norms");
}

// Training FLOPs per token at sequence length T: 6 N + 12 L H D T.
inline double training_flops_per_token(const ModelConfig& config, int64_t seq_len) {
  TORCH_CHECK(seq_len > 0, "training_flops_per_token: seq_len must be positive, got ", seq_len);
  LLM_TODO("lesson12: training_flops_per_token(): 6 N plus the attention term 12 L H D T");
}

// Forward-only FLOPs per generated token with `context` tokens visible: 2 N + 4 L H D context.
inline double forward_flops_per_token(const ModelConfig& config, int64_t context) {
  LLM_TODO("lesson12: forward_flops_per_token(): a third of training's, with the attention over the context");
}

// MFU = achieved FLOP/s / peak FLOP/s.
inline double model_flops_utilisation(double flops_per_token, double tokens_per_second, double peak_flops) {
  TORCH_CHECK(peak_flops > 0, "model_flops_utilisation: peak_flops must be positive, got ", peak_flops);
  return flops_per_token * tokens_per_second / peak_flops;
}

// The machine's matmul peak in FLOP/s: the best of `repeats` (n, n) x (n, n) products in `dtype`
// (2 n^3 operations each). A measurement, so it belongs in programs and benchmarks, not in tests.
inline double measure_matmul_peak(torch::Dtype dtype = torch::kBFloat16, int64_t n = 1024, int repeats = 10) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  auto c = torch::matmul(a, b);  // warm-up
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    c = torch::matmul(a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(n) * n * n / best;
}

}  // namespace llm
