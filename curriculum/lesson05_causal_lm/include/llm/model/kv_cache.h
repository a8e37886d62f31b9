// Lesson 05 - the KV cache: decode one token at a time without recomputing the past.
//
// Shapes: B batch, Hkv key/value heads, L the longest sequence the cache holds, D head dim,
// T the positions added by one call.
//
// A causal model's keys and values at position t depend only on tokens <= t, so once computed they
// never change. Generation therefore runs the prompt once ("prefill", all prompt positions in one
// forward pass), keeps every layer's k and v, and then feeds only the newest token, whose query
// attends to the cached keys: one step costs O(t) instead of a full O(t^2) forward.
//
// The buffers are allocated once, for L positions (B, Hkv, L, D) per layer, and filled in place:
// appending never reallocates or copies the past, and the memory is known up front:
//     2 (k and v) x layers x B x Hkv x L x D x bytes per element
// Grouped-query attention's saving shows here: the cache holds Hkv heads, not H.
#pragma once

#include <llm/common/todo.h>
#include <llm/config/model_config.h>
#include <llm/model/attention.h>

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace llm {

class KVCacheLayer : public KVStore {
 public:
  KVCacheLayer(int64_t batch, int64_t kv_heads, int64_t max_len, int64_t head_dim, torch::TensorOptions options)
      : k_(torch::zeros({batch, kv_heads, max_len, head_dim}, options)),
        v_(torch::zeros({batch, kv_heads, max_len, head_dim}, options)) {}

  // k, v: (B, Hkv, T, D) for positions length() .. length() + T - 1
  //   -> all keys and values so far: (B, Hkv, length() + T, D) each, views into the buffers.
  std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k, const torch::Tensor& v) override {
    // 1. Check k and v have the buffers' B, Hkv and D, naming the shapes given as sizes() prints them
    //    ("KV cache: expected k and v of shape (1, 2, T, 4), got k [1, 3, 1, 4] and v [1, 3, 1, 4]"),
    //    and that length + T <= max_len: otherwise throw, naming the sizes ("KV cache full: 10
    //    positions cached + 4 new > max_len 12").
    // 2. Copy k and v into positions length .. length + T - 1 of the buffers (narrow(2, ...).copy_).
    // 3. length += T; return the first `length` positions of both buffers (narrow, no copy).
    LLM_TODO("lesson05: KVCacheLayer::append(): copy k, v into the next free positions, return views of everything so far");
  }

  int64_t length() const { return length_; }
  int64_t max_len() const { return k_.size(2); }
  void reset() { length_ = 0; }

 private:
  torch::Tensor k_, v_;  // (B, Hkv, L, D)
  int64_t length_ = 0;
};

// One KVCacheLayer per transformer block.
class KVCache {
 public:
  KVCache(const ModelConfig& config, int64_t batch, int64_t max_len, torch::Dtype dtype = torch::kFloat32) {
    TORCH_CHECK(batch > 0 && max_len > 0, "KVCache: batch and max_len must be positive, got ", batch, " and ", max_len);
    TORCH_CHECK(max_len <= config.max_position_embeddings, "KVCache: max_len ", max_len,
                " exceeds the model's max_position_embeddings ", config.max_position_embeddings);
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      layers_.emplace_back(batch, config.num_key_value_heads, max_len, config.head_dim(), torch::dtype(dtype));
    }
  }

  KVCacheLayer& layer(size_t i) { return layers_.at(i); }
  size_t num_layers() const { return layers_.size(); }
  int64_t length() const { return layers_.empty() ? 0 : layers_.front().length(); }  // positions cached
  int64_t max_len() const { return layers_.empty() ? 0 : layers_.front().max_len(); }
  void reset() {
    for (auto& layer : layers_) layer.reset();
  }

 private:
  std::vector<KVCacheLayer> layers_;
};

}  // namespace llm
