// Lesson 04 - the transformer block: attention and feed-forward, each wrapped in a residual.
//
// Shapes: B batch, T time, C model width.
//
// Pre-norm (GPT-2 onwards, Llama; Xiong et al. 2020, "On Layer Normalization in the Transformer
// Architecture"):
//
//     h   = x + attn( input_layernorm(x) )
//     out = h + mlp( post_attention_layernorm(h) )
//
// Post-norm (the original transformer, Vaswani et al. 2017), here to compare:
//
//     h   = input_layernorm( x + attn(x) )
//     out = post_attention_layernorm( h + mlp(h) )
//
// Why pre-norm: the residual stream x -> h -> out is a clean sum, so the gradient reaches the first
// layer undiminished, and with small sublayer outputs at initialization (lesson 05 scales the
// residual projections for exactly this) each block starts near the identity. Post-norm divides the
// stream by a norm after every sum and needs careful warmup to train deep stacks. (Hugging Face keeps the name post_attention_layernorm for the norm
// before the MLP even in pre-norm Llama; the names here are theirs.)
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>
#include <llm/model/attention.h>
#include <llm/model/feed_forward.h>
#include <llm/model/rms_norm.h>

#include <torch/torch.h>

#include <utility>

namespace llm {

enum class NormPlacement { kPre, kPost };

struct TransformerBlockImpl : torch::nn::Module {
  explicit TransformerBlockImpl(const ModelConfig& config, NormPlacement placement = NormPlacement::kPre)
      : TransformerBlockImpl(config, rotary_embedding(config), placement) {}

  // With the RoPE tables given: a model builds them once for all its blocks (attention.h).
  TransformerBlockImpl(const ModelConfig& config, RotaryEmbedding rope, NormPlacement placement = NormPlacement::kPre)
      : placement(placement) {
    config.validate();  // the config's own errors before a submodule reports a symptom of them
    input_layernorm = register_module("input_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps));
    self_attn = register_module("self_attn", Attention(config, std::move(rope)));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps));
    mlp = register_module("mlp", FeedForward(config));
  }

  // x: (B, T, C) -> (B, T, C); offset, key_padding_mask, cache and position_ids are passed to attention.
  torch::Tensor forward(const torch::Tensor& x, int64_t offset = 0, const torch::Tensor& key_padding_mask = {},
                        KVStore* cache = nullptr, const torch::Tensor& position_ids = {}) {
    // Pre-norm:  h = x + attn(norm1(x));   out = h + mlp(norm2(h))
    // Post-norm: h = norm1(x + attn(x));   out = norm2(h + mlp(h))
    // norm1 = input_layernorm, norm2 = post_attention_layernorm; attn = self_attn(., offset,
    // key_padding_mask, cache, position_ids).
    LLM_TODO("lesson04: TransformerBlock::forward(): residual around attention, then around the MLP (pre- or post-norm)");
  }

  NormPlacement placement;
  RMSNorm input_layernorm{nullptr};
  Attention self_attn{nullptr};
  RMSNorm post_attention_layernorm{nullptr};
  FeedForward mlp{nullptr};
};
TORCH_MODULE(TransformerBlock);

}  // namespace llm
