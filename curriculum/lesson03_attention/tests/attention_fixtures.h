// Shared by lesson 03's suites: the module's sizes and a tiny configuration, independent float64
// references of scaled dot-product attention and of the Attention module, the GQA -> MHA weights,
// and ConcatStore, the simplest KVStore (lesson 04's block tests use it too).
#pragma once

#include <llm/config/model_config.h>
#include <llm/model/attention.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace lesson03 {

// Tiny named sizes: big enough to catch a transposed dimension, small enough to read a failure.
// H = 4 heads of D = 8 (also the head dim of the scaled dot-product tests).
// The module: C = H * D = 32, Hkv = 2 key/value heads, so G = 2 query heads share each one.
constexpr int64_t H = 4, D = 8, C = 32, Hkv = 2, kMaxPositions = 64;
constexpr double kInf = std::numeric_limits<double>::infinity();

inline llm::ModelConfig TinyConfig(int64_t kv_heads = Hkv) {
  llm::ModelConfig config;
  config.vocab_size = 16;  // attention never looks at it
  config.hidden_size = C;
  config.num_attention_heads = H;
  config.num_key_value_heads = kv_heads;
  config.max_position_embeddings = kMaxPositions;
  return config;
}

struct Naive {
  torch::Tensor out;      // (B, H, Tq, Dv) float64
  torch::Tensor weights;  // (B, H, Tq, Tk) float64
};

// An independent float64 reference: an explicit loop over batch and heads, softmax(q k^T * scale) v.
// mask: undefined, or bool broadcastable to (B, H, Tq, Tk) with true = attend.
// scale: 0 means the default 1 / sqrt(D).
inline Naive NaiveAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask = {}, double scale = 0) {
  if (scale == 0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  auto full_mask = mask.defined() ? mask.expand({q.size(0), q.size(1), q.size(2), k.size(2)}) : mask;
  std::vector<torch::Tensor> outs, weights;
  for (int64_t b = 0; b < q.size(0); ++b) {
    for (int64_t h = 0; h < q.size(1); ++h) {
      auto scores = torch::matmul(q[b][h].to(torch::kFloat64), k[b][h].to(torch::kFloat64).t()) * scale;
      if (mask.defined()) scores = scores.masked_fill(full_mask[b][h].logical_not(), -kInf);
      auto w = torch::softmax(scores, -1);                            // (Tq, Tk)
      outs.push_back(torch::matmul(w, v[b][h].to(torch::kFloat64)));  // (Tq, Dv)
      weights.push_back(w);
    }
  }
  auto shape = [&](const torch::Tensor& t) { return t.view({q.size(0), q.size(1), t.size(1), t.size(2)}); };
  return {shape(torch::stack(outs)), shape(torch::stack(weights))};
}

// An independent reference for the module, from the given projection weights: an explicit loop over
// query heads, where query head h reads key/value head j = h / G (weight rows j*D .. (j+1)*D - 1), RoPE
// from lesson 02 (llm::RotaryEmbedding) at positions offset .. offset + T - 1, a causal softmax, then
// o_proj. Computed in the weights' dtype (float64 here), so the gradient test can differentiate through it.
inline torch::Tensor NaiveModule(const torch::Tensor& x, const torch::Tensor& wq, const torch::Tensor& wk,
                                 const torch::Tensor& wv, const torch::Tensor& wo, int64_t heads, int64_t kv_heads,
                                 int64_t offset = 0) {
  const int64_t d = wq.size(0) / heads, groups = heads / kv_heads, t = x.size(1);
  llm::RotaryEmbedding rope(d, kMaxPositions);
  auto xd = x.to(wq.scalar_type());
  auto future = torch::ones({t, t}, torch::kBool).tril().logical_not();  // key j > query i
  std::vector<torch::Tensor> outs;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t j = h / groups;
    auto q = torch::matmul(xd, wq.narrow(0, h * d, d).t());  // (B, T, D)
    auto k = torch::matmul(xd, wk.narrow(0, j * d, d).t());  // (B, T, D)
    auto v = torch::matmul(xd, wv.narrow(0, j * d, d).t());  // (B, T, D)
    q = rope.apply(q.unsqueeze(1), offset).squeeze(1);
    k = rope.apply(k.unsqueeze(1), offset).squeeze(1);
    auto scores = torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(d));    // (B, T, T)
    outs.push_back(torch::matmul(torch::softmax(scores.masked_fill(future, -kInf), -1), v));  // (B, T, D)
  }
  return torch::matmul(torch::cat(outs, -1), wo.t());  // (B, T, C)
}

// The same float64 reference from a module's own weights: wq, wk, wv (H D or Hkv D, C) and wo (C, H D),
// detached and converted to float64.
inline torch::Tensor NaiveModule(llm::Attention& attn, const torch::Tensor& x, int64_t offset = 0) {
  auto f64 = [](const llm::Linear& l) { return l->weight.detach().to(torch::kFloat64); };
  return NaiveModule(x, f64(attn->q_proj), f64(attn->k_proj), f64(attn->v_proj), f64(attn->o_proj), attn->num_heads,
                     attn->num_kv_heads, offset);
}

// The key/value weight of an MHA module equivalent to a GQA one: for every query head h, the D rows
// of key/value head h / G, written out with an explicit loop.
inline torch::Tensor RepeatKvRows(const torch::Tensor& w, int64_t heads, int64_t kv_heads, int64_t d) {
  std::vector<torch::Tensor> rows;
  for (int64_t h = 0; h < heads; ++h) rows.push_back(w.narrow(0, (h / (heads / kv_heads)) * d, d));
  return torch::cat(rows, 0);  // (H D, C)
}

// The smallest possible KV cache: keep every step's keys and values and hand back all of them.
struct ConcatStore : llm::KVStore {
  torch::Tensor k, v;  // (B, Hkv, Tk, D)
  std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k_new, const torch::Tensor& v_new) override {
    k = k.defined() ? torch::cat({k, k_new}, 2) : k_new;
    v = v.defined() ? torch::cat({v, v_new}, 2) : v_new;
    return {k, v};
  }
};

}  // namespace lesson03
