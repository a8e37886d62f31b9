// Lesson 02 - RMSNorm, the normalization of Llama.
//
// Shapes: B batch, T time, C channels (the model width).
//
// RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization") drops LayerNorm's mean
// subtraction and bias and keeps only the rescaling:
//
//     rms(x) = sqrt( mean_c(x_c^2) + eps )          over the last dimension, C
//     y      = x / rms(x) * weight                   weight: (C,), initialised to ones
//
// Why: re-centring turned out not to matter for transformers, and one reduction instead of two is
// cheaper. Llama computes it exactly like Hugging Face's LlamaRMSNorm:
//
//     h = x.to(float32); h = h * rsqrt(mean(h^2) + eps); return weight * h.to(x.dtype)
//
// i.e. the statistics in fp32 (bf16's 8 mantissa bits would lose the small squares). Hugging Face
// casts back to the input dtype before the weight multiply because its weight already has the model's
// dtype. Here the weight may stay fp32 while activations are bf16 (mixed precision, lesson 10), so we
// multiply in fp32 and round once at the end: the same value up to one bf16 rounding, and the output
// always has the input's dtype.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

namespace llm {

// Llama's default (LlamaConfig.rms_norm_eps = 1e-6): small enough not to bias the norm of real
// activations, large enough to keep rsqrt finite for an all-zero row.
inline constexpr double kRmsNormEps = 1e-6;

struct RMSNormImpl : torch::nn::Module {
  explicit RMSNormImpl(int64_t dim, double eps = kRmsNormEps) : dim(dim), eps(eps) {
    TORCH_CHECK(dim > 0, "RMSNorm: dim must be positive, got ", dim);
    weight = register_parameter("weight", torch::ones({dim}));
  }

  // x: (..., C) -> (..., C), same dtype as x.
  torch::Tensor forward(const torch::Tensor& x) {
    // 1. Check that the last dimension of x is `dim`; name both: "expected the last dimension of x to
    //    be 16, got shape [2, 7, 17]".
    // 2. h = x in float32.
    // 3. h = h * rsqrt(mean(h^2, dim=-1, keepdim=true) + eps)          // (..., C)
    // 4. Multiply by weight (broadcast over the leading dims) and cast the result to x's dtype.
    // BEGIN SOLUTION: RMSNorm::forward(): x * rsqrt(mean(x^2) + eps) in fp32, times weight, cast back
    TORCH_CHECK(x.dim() >= 1 && x.size(-1) == dim, "RMSNorm: expected the last dimension of x to be ", dim,
                ", got shape ", x.sizes());
    auto h = x.to(torch::kFloat32);
    h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);  // (..., C)
    return (h * weight).to(x.scalar_type());                          // (..., C)
    // END SOLUTION
  }

  int64_t dim;
  double eps;
  torch::Tensor weight;  // (C,)
};
TORCH_MODULE(RMSNorm);

}  // namespace llm
