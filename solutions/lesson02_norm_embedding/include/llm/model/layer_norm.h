// Lesson 02 - LayerNorm, the normalization of GPT-2 and the original transformer.
//
// Shapes: B batch, T time, C channels.
//
// LayerNorm (Ba, Kiros & Hinton 2016) normalizes every position's feature vector to zero mean and
// unit variance, then applies a learned per-channel affine map:
//
//     mu     = mean_c(x_c)
//     var    = mean_c((x_c - mu)^2)                  the *biased* variance (divide by C, not C-1)
//     y      = (x - mu) / sqrt(var + eps) * weight + bias
//
// This is exactly torch::layer_norm (eps 1e-5 by default). As in RMSNorm, the statistics are
// computed in fp32 and the result is cast back to the input dtype.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

namespace llm {

// PyTorch's and GPT-2's default.
inline constexpr double kLayerNormEps = 1e-5;

struct LayerNormImpl : torch::nn::Module {
  explicit LayerNormImpl(int64_t dim, double eps = kLayerNormEps) : dim(dim), eps(eps) {
    TORCH_CHECK(dim > 0, "LayerNorm: dim must be positive, got ", dim);
    weight = register_parameter("weight", torch::ones({dim}));
    bias = register_parameter("bias", torch::zeros({dim}));
  }

  // x: (..., C) -> (..., C), same dtype as x.
  torch::Tensor forward(const torch::Tensor& x) {
    // 1. Check that the last dimension of x is `dim`.
    // 2. h = x in float32; mu = mean over the last dim (keepdim), var = mean((h - mu)^2) (keepdim).
    // 3. y = (h - mu) * rsqrt(var + eps) * weight + bias, computed in float32.
    // 4. Return y cast back to x's dtype.
    // BEGIN SOLUTION: LayerNorm::forward(): (x - mean) / sqrt(biased var + eps) * weight + bias, in fp32
    TORCH_CHECK(x.dim() >= 1 && x.size(-1) == dim, "LayerNorm: expected the last dimension of x to be ", dim,
                ", got shape ", x.sizes());
    auto h = x.to(torch::kFloat32);
    auto mu = h.mean(-1, /*keepdim=*/true);                       // (..., 1)
    auto var = (h - mu).pow(2).mean(-1, /*keepdim=*/true);        // (..., 1), biased
    auto y = (h - mu) * torch::rsqrt(var + eps) * weight + bias;  // (..., C)
    return y.to(x.scalar_type());
    // END SOLUTION
  }

  int64_t dim;
  double eps;
  torch::Tensor weight;  // (C,)
  torch::Tensor bias;    // (C,)
};
TORCH_MODULE(LayerNorm);

}  // namespace llm
