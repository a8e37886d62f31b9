// Lesson 05 - the causal language model: a Llama, as Hugging Face's LlamaForCausalLM builds it.
//
// Shapes: B batch, T time, C model width, V vocabulary, L layers.
//
//   ids (B, T) --embed_tokens--> (B, T, C) --L x TransformerBlock--> --norm--> --lm_head--> logits (B, T, V)
//
// logits[b, t] scores every token as the one that comes after ids[b, 0..t]. Training compares it
// with ids[b, t + 1] (causal_lm_loss); generation samples from the last position.
//
// The module tree mirrors Hugging Face's, so named_parameters() gives its checkpoint keys:
//   model.embed_tokens.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
//   model.layers.N.mlp.{gate,up,down}_proj.weight, model.layers.N.input_layernorm.weight,
//   model.layers.N.post_attention_layernorm.weight, model.norm.weight, lm_head.weight
// With tie_word_embeddings the output layer reuses embed_tokens.weight and lm_head does not exist
// (Press & Wolf 2017): V x C fewer parameters, one matrix that both reads and writes tokens.
//
// Initialization (GPT-2, Radford et al. 2019): every linear and embedding weight ~ N(0, 0.02), norm
// weights 1, biases (where a model has them: Qwen2's q, k, v) 0, and the projections that write into the residual stream (o_proj, down_proj) scaled by
// 1/sqrt(2L): each of the 2L residual additions adds variance, and the scaling keeps the stream's
// variance roughly constant with depth. An untrained model then predicts nearly uniformly: its loss
// starts near ln(V).
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>
#include <llm/model/embedding.h>
#include <llm/model/kv_cache.h>
#include <llm/model/linear.h>
#include <llm/model/rms_norm.h>
#include <llm/model/transformer_block.h>

#include <torch/torch.h>

#include <cmath>

namespace llm {

// Hugging Face's and PyTorch's label value for "no loss at this position".
inline constexpr int64_t kIgnoreIndex = -100;

struct LlamaModelImpl : torch::nn::Module {
  explicit LlamaModelImpl(const ModelConfig& config) {
    embed_tokens = register_module("embed_tokens", TokenEmbedding(config.vocab_size, config.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    const RotaryEmbedding rope = rotary_embedding(config);  // one set of tables, shared by every layer
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers->push_back(TransformerBlock(config, rope));
    norm = register_module("norm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  }

  // ids: (B, T) -> hidden states (B, T, C) after the final norm.
  torch::Tensor forward(const torch::Tensor& ids, int64_t offset = 0, const torch::Tensor& key_padding_mask = {},
                        KVCache* cache = nullptr, const torch::Tensor& position_ids = {}) {
    // h = embed_tokens(ids); for each layer i: h = layer(h, offset, key_padding_mask, cache ? &cache->layer(i)
    // : nullptr, position_ids); return norm(h). (layers[i]->as<TransformerBlock>() gives block i.)
    // BEGIN SOLUTION: LlamaModel::forward(): embed, every block in order (with its cache layer), final norm
    auto h = embed_tokens(ids);  // (B, T, C)
    for (size_t i = 0; i < layers->size(); ++i) {
      h = layers[i]->as<TransformerBlock>()->forward(h, offset, key_padding_mask, cache ? &cache->layer(i) : nullptr,
                                                     position_ids);
    }
    return norm(h);  // (B, T, C)
    // END SOLUTION
  }

  TokenEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

struct CausalLMImpl : torch::nn::Module {
  explicit CausalLMImpl(const ModelConfig& config) : config(config) {
    config.validate();
    model = register_module("model", LlamaModel(config));
    if (!config.tie_word_embeddings) {
      lm_head = register_module("lm_head", Linear(config.hidden_size, config.vocab_size));
    }
    if (!DeferredInit::active()) init_weights();  // else a checkpoint fills the weights (lesson 02's init.h)
  }

  // GPT-2's initialization, described at the top of this file.
  void init_weights() {
    // 1. Under torch::NoGradGuard, for every (name, parameter) in named_parameters():
    //      names ending in "norm.weight" (RMSNorm, q_norm and k_norm included): fill with 1;
    //      names ending in ".bias": fill with 0;
    //      names ending in "o_proj.weight" or "down_proj.weight": normal(0, 0.02 / sqrt(2 L));
    //      every other weight: normal(0, 0.02).
    // BEGIN SOLUTION: CausalLM::init_weights(): N(0, 0.02), residual projections / sqrt(2L), norms 1
    torch::NoGradGuard no_grad;
    const double std = kEmbeddingInitStd;
    const double residual_std = std / std::sqrt(2.0 * config.num_hidden_layers);
    auto ends_with = [](const std::string& s, const std::string& suffix) {
      return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    for (auto& item : named_parameters()) {
      const std::string& name = item.key();
      auto& p = item.value();
      if (ends_with(name, "norm.weight")) {
        p.fill_(1.0);
      } else if (ends_with(name, ".bias")) {
        p.zero_();
      } else if (ends_with(name, "o_proj.weight") || ends_with(name, "down_proj.weight")) {
        p.normal_(0.0, residual_std);
      } else {
        p.normal_(0.0, std);
      }
    }
    // END SOLUTION
  }

  // ids: (B, T) int64 -> logits (B, T, V) float32. offset, key_padding_mask, cache, position_ids: see
  // Attention. logits_to_keep = n > 0 scores only the last n positions: (B, n, V). Generation needs
  // only the last one, and the output layer is a large part of a prompt's cost when V is large
  // (Llama-3.2-1B: 128,256 x 2,048, a fifth of the model's matmul FLOPs); transformers'
  // LlamaForCausalLM.forward has the same argument.
  torch::Tensor forward(const torch::Tensor& ids, int64_t offset = 0, const torch::Tensor& key_padding_mask = {},
                        KVCache* cache = nullptr, const torch::Tensor& position_ids = {}, int64_t logits_to_keep = 0) {
    // 1. Check ids is (B, T) and offset + T <= max_position_embeddings, naming the last position and
    //    the setting ("positions up to 64 requested but max_position_embeddings is 64"). With a cache,
    //    the offset must equal cache->length(): the new tokens continue exactly where the cache ends
    //    ("offset 3 but the KV cache holds 5 positions"). Check 0 <= logits_to_keep <= T, naming it
    //    and its value ("logits_to_keep 10 must be in 0..9").
    // 2. h = model(ids, offset, key_padding_mask, cache, position_ids)            (B, T, C)
    //    with logits_to_keep = n > 0: h = its last n positions                     (B, n, C)
    // 3. logits = lm_head(h), or h @ embed_tokens.weight^T when tied (linear_no_bias(h, weight),
    //    lesson 02's linear.h: fast for one row too)                             (B, T, V)
    // 4. Return the logits in float32 (the softmax that follows wants the precision).
    // BEGIN SOLUTION: CausalLM::forward(): model, then lm_head (or the tied embedding), logits in fp32
    TORCH_CHECK(ids.dim() == 2, "CausalLM: ids must be (B, T), got ", ids.sizes());
    TORCH_CHECK(offset + ids.size(1) <= config.max_position_embeddings, "CausalLM: positions up to ",
                offset + ids.size(1) - 1, " requested but max_position_embeddings is ", config.max_position_embeddings);
    TORCH_CHECK(cache == nullptr || offset == cache->length(), "CausalLM: offset ", offset, " but the KV cache holds ",
                cache == nullptr ? 0 : cache->length(), " positions; new tokens must continue where the cache ends");
    TORCH_CHECK(logits_to_keep >= 0 && logits_to_keep <= ids.size(1), "CausalLM: logits_to_keep ", logits_to_keep,
                " must be in 0..", ids.size(1), " (0: every position)");
    auto h = model(ids, offset, key_padding_mask, cache, position_ids);                   // (B, T, C)
    if (logits_to_keep > 0) h = h.narrow(1, h.size(1) - logits_to_keep, logits_to_keep);  // (B, n, C)
    auto logits = config.tie_word_embeddings ? linear_no_bias(h, model->embed_tokens->weight) : lm_head(h);
    return logits.to(torch::kFloat32);  // (B, T, V)
    // END SOLUTION
  }

  int64_t num_parameters() const {
    int64_t n = 0;
    for (const auto& p : parameters()) n += p.numel();
    return n;
  }

  ModelConfig config;
  LlamaModel model{nullptr};
  Linear lm_head{nullptr};  // absent when tie_word_embeddings
};
TORCH_MODULE(CausalLM);

// Next-token cross-entropy. logits (B, T, V) predict labels shifted by one: position t is scored
// against labels[:, t + 1]; the last position has nothing to predict. Labels equal to ignore_index
// (prompt tokens in SFT, padding) add nothing; the mean is over the positions that count.
inline torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels,
                                    int64_t ignore_index = kIgnoreIndex) {
  // 1. Check logits is (B, T, V) and labels (B, T).
  // 2. prediction = logits[:, :-1] flattened to (B (T-1), V); target = labels[:, 1:] flattened.
  // 3. torch::nn::functional::cross_entropy with ignore_index (mean over the counted positions).
  // BEGIN SOLUTION: causal_lm_loss(): cross-entropy of logits[:, :-1] against labels[:, 1:], ignoring ignore_index
  TORCH_CHECK(
      logits.dim() == 3 && labels.dim() == 2 && logits.size(0) == labels.size(0) && logits.size(1) == labels.size(1),
      "causal_lm_loss: expected logits (B, T, V) and labels (B, T), got ", logits.sizes(), " and ", labels.sizes());
  const int64_t V = logits.size(2);
  auto prediction = logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, V});  // (B (T-1), V)
  auto target = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});         // (B (T-1),)
  namespace F = torch::nn::functional;
  return F::cross_entropy(prediction.to(torch::kFloat32), target.to(torch::kLong),
                          F::CrossEntropyFuncOptions().ignore_index(ignore_index));
  // END SOLUTION
}

}  // namespace llm
