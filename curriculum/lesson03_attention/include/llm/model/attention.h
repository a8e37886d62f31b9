// Lesson 03 - multi-head and grouped-query self-attention with RoPE, as in Llama.
//
// Shapes: B batch, T new positions, Tk all key positions (T, or cached + T), C model width,
// H query heads, Hkv key/value heads, D head dim (usually C / H), G = H / Hkv query heads per
// key/value head.
//
//   q = q_proj(x) -> (B, T, H, D)   [-> q_norm]  -> (B, H, T, D)   then RoPE at positions offset .. offset+T-1
//   k = k_proj(x) -> (B, T, Hkv, D) [-> k_norm]  -> (B, Hkv, T, D) then RoPE, same positions
//   v = v_proj(x) -> (B, T, Hkv, D)              -> (B, Hkv, T, D)
//   with a KV cache: k, v = cache->append(k, v)          (B, Hkv, Tk, D): every position so far
//   query head h uses kv head h / G                     (scaled_dot_product_attention groups them)
//   y = attention(q, k, v, causal mask [and padding])   (B, H, T, D)   packed rows: the document mask
//   y = o_proj(y.transpose(1, 2).reshape(B, T, H D))     (B, T, C)
//
// Grouped-query attention (Ainslie et al. 2023) shares each key/value head between G query heads:
// the KV cache shrinks by G, quality barely moves. Hkv = H is classic multi-head attention
// (Vaswani et al. 2017); Hkv = 1 is multi-query attention (Shazeer 2019).
// Parameter names are Hugging Face's (q_proj, k_proj, v_proj, o_proj, q_norm, k_norm).
//
// What today's models change (the switches of lesson 01's ModelConfig):
//   - D need not be C / H: Qwen3-0.6B projects C = 1024 to H D = 16 x 128 = 2048 and o_proj back.
//   - Biases: none in Llama; on q, k, v in Qwen2 (the Linear layers add them themselves).
//   - QK-norm (Qwen3; Dehghani et al. 2023, "Scaling Vision Transformers to 22B Parameters"): an
//     RMSNorm over D on every query and key head, one weight of D shared by all heads, applied
//     before RoPE (transformers' modeling_qwen3.py, Qwen3Attention). It bounds the attention
//     logits, which otherwise grow with training and destabilise it. V is not normalized.
//
// The KV cache itself is lesson 05. This lesson only fixes what attention needs from one: KVStore.
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>
#include <llm/model/linear.h>
#include <llm/model/rms_norm.h>
#include <llm/model/rope.h>
#include <llm/model/scaled_dot_product.h>

#include <torch/torch.h>

#include <utility>

namespace llm {

// What attention needs from a KV cache: store this step's keys and values (B, Hkv, T, D) and return
// the keys and values of every position so far (B, Hkv, Tk, D). Lesson 05 implements it.
struct KVStore {
  virtual ~KVStore() = default;
  virtual std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k, const torch::Tensor& v) = 0;
};

// The RoPE tables a config asks for: D, the longest position, theta and the scaling. Every layer
// uses the same tables, so a model builds them once and hands them to its layers (RotaryEmbedding
// shares its tensors when copied): Llama-3.2-1B's 131,072 positions take 34 MB, not 16 x 34 MB.
inline RotaryEmbedding rotary_embedding(const ModelConfig& config) {
  RopeScaling scaling;
  scaling.type = config.rope_scaling;
  scaling.factor = config.rope_factor;
  scaling.low_freq_factor = config.rope_low_freq_factor;
  scaling.high_freq_factor = config.rope_high_freq_factor;
  scaling.original_max_position_embeddings = config.rope_original_max_position_embeddings;
  return RotaryEmbedding(validated(config).head_dim(), config.max_position_embeddings, config.rope_theta,
                         RopePairing::kHalf, scaling);
}

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ModelConfig& config) : AttentionImpl(config, rotary_embedding(config)) {}

  // With the RoPE tables given (a model shares one set between its layers).
  AttentionImpl(const ModelConfig& config, RotaryEmbedding shared_rope)
      : hidden_size(validated(config).hidden_size),  // validate first: head_dim() divides by H
        num_heads(config.num_attention_heads),
        num_kv_heads(config.num_key_value_heads),
        head_dim(config.head_dim()),
        dropout(config.dropout),
        rope(std::move(shared_rope)) {
    TORCH_CHECK(rope.head_dim() == head_dim, "Attention: RoPE tables for head_dim ", rope.head_dim(), " given, need ",
                head_dim);
    const int64_t C = config.hidden_size;
    const bool qkv_bias = config.attention_bias || config.qkv_bias;  // Llama's attention_bias, Qwen2
    q_proj = register_module("q_proj", Linear(C, num_heads * head_dim, qkv_bias));
    k_proj = register_module("k_proj", Linear(C, num_kv_heads * head_dim, qkv_bias));
    v_proj = register_module("v_proj", Linear(C, num_kv_heads * head_dim, qkv_bias));
    o_proj = register_module("o_proj", Linear(num_heads * head_dim, C, config.attention_bias));
    if (config.qk_norm) {  // Qwen3: one RMSNorm over D for all query heads, one for all key heads
      q_norm = register_module("q_norm", RMSNorm(head_dim, config.rms_norm_eps));
      k_norm = register_module("k_norm", RMSNorm(head_dim, config.rms_norm_eps));
    }
  }

  // x: (B, T, C) -> (B, T, C).
  //   offset            position of x's first token (RoPE), = tokens already in the cache
  //   key_padding_mask  (B, Tk) bool, true for real tokens, false for padding; Tk = offset + T with a cache
  //   cache             where this layer's keys and values are kept across calls (lesson 05), or nullptr
  //   position_ids      (B, T) integer, each token's position in its document (packed rows, lesson 06):
  //                     RoPE uses them, and attention stays inside each document. Training only:
  //                     not with a cache or an offset.
  torch::Tensor forward(const torch::Tensor& x, int64_t offset = 0, const torch::Tensor& key_padding_mask = {},
                        KVStore* cache = nullptr, const torch::Tensor& position_ids = {}) {
    // 1. Check x is (B, T, C) with C = hidden_size, naming the module, C and the shape given:
    //    "Attention: expected x of shape (B, T, 32), got [2, 6, 33]".
    // 2. Project and split heads: q (B, T, H, D); k, v (B, T, Hkv, D) (view). With QK-norm (q_norm
    //    is defined, not nullptr), q = q_norm(q) and k = k_norm(k) now: RMSNorm normalizes the last
    //    dimension, D, of every head. Then transpose(1, 2): q (B, H, T, D); k, v (B, Hkv, T, D).
    // 3. RoPE on q and k at positions offset .. offset + T - 1 (rope.apply(t, offset)); with
    //    position_ids, at those positions instead (rope.apply(t, position_ids); check they are
    //    (B, T), and that there is no cache and offset is 0: packed rows are for training; the
    //    message names position_ids and both, "position_ids are for packed training rows, not with
    //    a KV cache or an offset").
    // 4. With a cache: std::tie(k, v) = cache->append(k, v): now (B, Hkv, Tk, D).
    // 5. Leave k and v with their Hkv heads: scaled_dot_product_attention pairs query head h with kv
    //    head h / G itself (without copying the cache G times unless a mask needs it).
    // 6. No padding mask and no position_ids: the mask is purely causal; pass options.causal = true
    //    and no mask (scaled_dot_product_attention applies it inside the score matmul, the fast path).
    //    Otherwise mask = causal_mask(T, Tk) (document_causal_mask(position_ids) with position_ids),
    //    and with a padding mask also "& key_padding_mask[b, j]" (broadcast as (B, 1, 1, Tk)). Check
    //    the padding mask is (B, Tk), naming it, the expected sizes and the shape given:
    //    "key_padding_mask must be (B, Tk) = (2, 6), got [2, 5]". (With T == 1 the causal mask is
    //    all true and may be skipped.)
    // 7. scaled_dot_product_attention with dropout while training (is_training()); keep the weights
    //    in last_weights if store_weights.
    // 8. Merge heads: (B, H, T, D) -> (B, T, H * D), then o_proj (back to C).
    LLM_TODO("lesson03: Attention::forward(): project, RoPE, cache, grouped-query causal softmax, merge, o_proj");
  }

  int64_t hidden_size, num_heads, num_kv_heads, head_dim;
  double dropout;
  RotaryEmbedding rope;
  bool store_weights = false;  // keep the last softmax weights (B, H, T, Tk) for inspection
  torch::Tensor last_weights;
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // QK-norm (config.qk_norm), else nullptr
};
TORCH_MODULE(Attention);

}  // namespace llm
