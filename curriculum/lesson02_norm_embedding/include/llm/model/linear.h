// Lesson 02 (given) - a linear layer: y = x W^T (+ b), W of shape (out, in). Llama has no biases;
// Qwen2 puts them on the query, key and value projections, so a bias is an option, off by default.
//
// Shapes: any leading dimensions S, then `in` features -> (S..., out).
//
// LibTorch's torch::nn::Linear computes the same thing; this one exists for one reason, measured:
// generation feeds the model one token at a time, and a (1, in) x (in, out) product through
// linear() ends in a general matrix multiply whose setup dominates so small a problem. The
// matrix-vector product mv() runs the same arithmetic 4-7x faster there (lm_head of the tiny
// model: 100 us -> 25 us per token, 2 threads). So a single row takes mv, everything else linear().
// (Under bf16 autocast, lesson 10, always linear(): autocast lowers it to bf16; mv would stay fp32.
// And for bf16 weights, such as a downloaded model's, always linear() too: oneDNN's bf16 kernels
// are there, and mv's are not: a row times Llama-3.2-1B's 8192 x 2048 bf16 matrix took 1.96 ms
// through mv and 1.09 ms through linear, while in fp32 mv took 0.93 ms and linear 3.41 ms; 2
// threads, 2026-12-07.)
//
// The parameter is called `weight` and initialised as nn::Linear's (Kaiming-uniform with a = sqrt(5),
// i.e. U(-1/sqrt(in), 1/sqrt(in))), so a model holding it as `q_proj` has Hugging Face's key
// `q_proj.weight`, and a model that overwrites the initialisation (lesson 05) sees no difference.
//
// Lesson 11 changes what some layers compute without taking them out of the model: LoRA adds a
// low-rank branch, QLoRA stores the weight in 4 bits. Both attach a LinearAdapter here; while one
// is attached, it computes the x W^T part, given the layer itself (its weight and sizes), and the
// layer adds its bias after (PEFT's LoRA adds its branch to the base layer's output, bias included).
#pragma once

#include <llm/model/init.h>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>

namespace llm {

struct LinearImpl;

// What lesson 11 attaches to a Linear: y = adapter.forward(x, layer) instead of x W^T.
struct LinearAdapter {
  virtual ~LinearAdapter() = default;
  virtual torch::Tensor forward(const torch::Tensor& x, LinearImpl& layer) = 0;
};

// x (S..., in) times weight (out, in) transposed -> (S..., out): mv for a single row, else linear().
inline torch::Tensor linear_no_bias(const torch::Tensor& x, const torch::Tensor& weight) {
  const int64_t in = weight.size(1);
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in, "Linear: expected the last dimension of x to be ", in, ", got shape ",
              x.sizes());
  if (x.numel() == in && !at::autocast::is_cpu_enabled() && x.scalar_type() == torch::kFloat32 &&
      weight.scalar_type() == torch::kFloat32) {
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    return torch::mv(weight, x.reshape({in})).view(sizes);  // one row: a matrix-vector product
  }
  return torch::linear(x, weight);
}

struct LinearImpl : torch::nn::Module {
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias = false)
      : in_features(in_features), out_features(out_features) {
    TORCH_CHECK(in_features > 0 && out_features > 0, "Linear: in and out features must be positive, got ", in_features,
                " and ", out_features);
    weight = register_parameter("weight", torch::empty({out_features, in_features}));
    if (with_bias) bias = register_parameter("bias", torch::empty({out_features}));
    if (DeferredInit::active()) return;  // a checkpoint will fill them (init.h)
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (with_bias) {  // nn::Linear's initialisation: U(-1/sqrt(in), 1/sqrt(in))
      const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
      bias.uniform_(-bound, bound);
    }
  }

  // x: (S..., in) -> (S..., out)
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = adapter ? adapter->forward(x, *this) : linear_no_bias(x, weight);
    return bias.defined() ? y + bias.to(y.scalar_type()) : y;
  }

  int64_t in_features, out_features;
  torch::Tensor weight;                    // (out, in)
  torch::Tensor bias;                      // (out,), or undefined: no bias
  std::shared_ptr<LinearAdapter> adapter;  // lesson 11 (LoRA, 4-bit weights); nullptr: x W^T
};
TORCH_MODULE(Linear);

}  // namespace llm
