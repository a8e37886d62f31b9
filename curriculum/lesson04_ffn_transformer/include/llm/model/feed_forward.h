// Lesson 04 - the position-wise feed-forward network, in the three forms that matter.
//
// Shapes: B batch, T time, C model width, F hidden width (config.ffn_hidden_size()).
//
//   gelu    y = down( gelu(up(x)) )                        GPT-2, BERT: two matrices
//   swiglu  y = down( silu(gate(x)) * up(x) )              Llama, Mistral, Qwen: three matrices
//   geglu   y = down( gelu(gate(x)) * up(x) )              T5 v1.1 and Gemma (which use GELU's tanh form)
//
// The gated forms (Shazeer 2020, "GLU Variants Improve Transformer") multiply a nonlinear "gate"
// elementwise with a linear "value" path; at equal parameter count they train to lower loss.
// A gated MLP has three C x F matrices instead of two, which is why Llama shrinks F to 2/3 of 4C
// (llama_ffn_hidden_size in lesson 01).
//
//   silu(z) = z * sigmoid(z)                                (Swish with beta = 1)
//   gelu(z) = z * Phi(z) = z/2 * (1 + erf(z / sqrt(2)))     the exact form, used here for every variant;
//             GPT-2, T5 v1.1 and Gemma use a tanh approximation, at most ~5e-4 away
//
// No biases (Llama). Names are Hugging Face's: gate_proj, up_proj, down_proj. Dropout on the output
// while training (the residual dropout of the original transformer).
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>
#include <llm/model/linear.h>

#include <torch/torch.h>

#include <string>

namespace llm {

struct FeedForwardImpl : torch::nn::Module {
  explicit FeedForwardImpl(const ModelConfig& config)
      : mlp_type(validated(config).mlp_type), hidden(config.ffn_hidden_size()), dropout(config.dropout) {
    const int64_t C = config.hidden_size;
    auto linear = [](int64_t in, int64_t out) {
      return Linear(in, out);  // no bias, as Llama (lesson 02's linear.h)
    };
    if (mlp_type != "gelu") gate_proj = register_module("gate_proj", linear(C, hidden));
    up_proj = register_module("up_proj", linear(C, hidden));
    down_proj = register_module("down_proj", linear(hidden, C));
  }

  // x: (B, T, C) -> (B, T, C)
  torch::Tensor forward(const torch::Tensor& x) {
    // 1. h = the hidden activation, (B, T, F):
    //      "gelu":   gelu(up_proj(x))
    //      "swiglu": silu(gate_proj(x)) * up_proj(x)
    //      "geglu":  gelu(gate_proj(x)) * up_proj(x)
    //    (silu(z) = z * torch::sigmoid(z), written out: LibTorch 1.13's bf16 silu backward is not
    //    vectorized and ran 2.8x slower than these two ops', 8% of a bf16 training step; torch::gelu
    //    is the exact erf form by default)
    // 2. y = down_proj(h), then dropout(y) with probability `dropout` while training (is_training()).
    LLM_TODO("lesson04: FeedForward::forward(): down(act(gate(x)) * up(x)) for swiglu/geglu, down(gelu(up(x))) for gelu");
  }

  std::string mlp_type;
  int64_t hidden;
  double dropout;
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(FeedForward);

}  // namespace llm
