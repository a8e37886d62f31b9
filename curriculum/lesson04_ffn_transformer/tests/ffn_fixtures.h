// Shared by lesson 04's suites: the block's sizes, a tiny configuration and a hand-sized one, and small
// helpers to set a weight, apply a linear layer in float64 and move the norm weights away from 1.
#pragma once

#include <llm/config/model_config.h>
#include <llm/model/feed_forward.h>
#include <llm/model/transformer_block.h>

#include <string>

namespace lesson04 {

// Tiny named sizes: big enough to catch a transposed dimension, small enough to read a failure.
// F is Llama's rule for C = 32, multiple_of = 8: floor(2 * 4 * 32 / 3) = 85, rounded up to 88.
constexpr int64_t C = 32, H = 4, Hkv = 2, D = C / H, F = 88;

inline llm::ModelConfig TinyConfig(const std::string& mlp_type = "swiglu", double dropout = 0.0) {
  llm::ModelConfig config;
  config.vocab_size = 64;
  config.hidden_size = C;
  config.num_hidden_layers = 1;
  config.num_attention_heads = H;
  config.num_key_value_heads = Hkv;
  config.max_position_embeddings = 64;
  config.multiple_of = 8;
  config.mlp_type = mlp_type;
  config.dropout = dropout;
  return config;
}

// The smallest valid config: C = 2 with one head (head_dim 2 is even, as RoPE needs), F set by hand.
inline llm::ModelConfig HandConfig(const std::string& mlp_type, int64_t hidden) {
  llm::ModelConfig config;
  config.hidden_size = 2;
  config.num_attention_heads = 1;
  config.num_key_value_heads = 1;
  config.intermediate_size = hidden;
  config.mlp_type = mlp_type;
  return config;
}

inline void SetWeight(llm::Linear& linear, const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  linear->weight.copy_(weight);
}

// x @ weight^T in float64, from the layer's own (detached) weight: the building block of the float64
// references.
inline torch::Tensor Apply(const llm::Linear& linear, const torch::Tensor& x) {
  return x.to(torch::kFloat64).matmul(linear->weight.detach().to(torch::kFloat64).t());
}

// Norm weights away from 1, so that using the wrong norm (or none) shows in the output.
inline void RandomizeNormWeights(llm::TransformerBlock& block) {
  torch::NoGradGuard no_grad;
  block->input_layernorm->weight.copy_(1.0 + 0.5 * torch::randn({C}));
  block->post_attention_layernorm->weight.copy_(1.0 + 0.5 * torch::randn({C}));
}

}  // namespace lesson04
