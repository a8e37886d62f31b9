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

// The weights of one attention module, for the reference below. Biases and the QK-norm weights
// are optional (undefined: none).
struct NaiveWeights {
  torch::Tensor wq, wk, wv, wo;  // (H D, C), (Hkv D, C), (Hkv D, C), (C, H D)
  torch::Tensor bq, bk, bv, bo;  // (H D), (Hkv D), (Hkv D), (C) or undefined
  torch::Tensor q_norm, k_norm;  // (D) or undefined
  double eps = 1e-6;             // QK-norm's RMSNorm epsilon
};

// An independent reference for the module, from the given weights: an explicit loop over query
// heads, where query head h reads key/value head j = h / G (weight rows j*D .. (j+1)*D - 1); each
// head's query and key RMS-normalized over D first when QK-norm weights are given (Qwen3), then RoPE
// from lesson 02 (`rope`, or a plain llm::RotaryEmbedding(D, kMaxPositions)) at positions offset ..
// offset + T - 1, a causal softmax, then o_proj. Computed in the weights' dtype (float64 here), so
// the gradient test can differentiate through it.
inline torch::Tensor NaiveModule(const torch::Tensor& x, const NaiveWeights& w, int64_t heads, int64_t kv_heads,
                                 int64_t offset = 0, const llm::RotaryEmbedding* rope = nullptr) {
  const int64_t d = w.wq.size(0) / heads, groups = heads / kv_heads, t = x.size(1);
  const llm::RotaryEmbedding plain(d, kMaxPositions);
  const llm::RotaryEmbedding& r = rope != nullptr ? *rope : plain;
  auto xd = x.to(w.wq.scalar_type());
  auto future = torch::ones({t, t}, torch::kBool).tril().logical_not();  // key j > query i
  auto project = [&](const torch::Tensor& weight, const torch::Tensor& bias, int64_t head) {
    auto y = torch::matmul(xd, weight.narrow(0, head * d, d).t());  // (B, T, D)
    return bias.defined() ? y + bias.narrow(0, head * d, d) : y;
  };
  auto rms = [&](const torch::Tensor& y, const torch::Tensor& weight) {
    return y / (y.pow(2).mean(-1, true) + w.eps).sqrt() * weight.to(y.scalar_type());
  };
  std::vector<torch::Tensor> outs;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t j = h / groups;
    auto q = project(w.wq, w.bq, h), k = project(w.wk, w.bk, j), v = project(w.wv, w.bv, j);  // (B, T, D)
    if (w.q_norm.defined()) q = rms(q, w.q_norm), k = rms(k, w.k_norm);
    q = r.apply(q.unsqueeze(1), offset).squeeze(1);
    k = r.apply(k.unsqueeze(1), offset).squeeze(1);
    auto scores = torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(d));    // (B, T, T)
    outs.push_back(torch::matmul(torch::softmax(scores.masked_fill(future, -kInf), -1), v));  // (B, T, D)
  }
  auto y = torch::matmul(torch::cat(outs, -1), w.wo.t());  // (B, T, C)
  return w.bo.defined() ? y + w.bo : y;
}

inline torch::Tensor NaiveModule(const torch::Tensor& x, const torch::Tensor& wq, const torch::Tensor& wk,
                                 const torch::Tensor& wv, const torch::Tensor& wo, int64_t heads, int64_t kv_heads,
                                 int64_t offset = 0) {
  NaiveWeights w;
  w.wq = wq, w.wk = wk, w.wv = wv, w.wo = wo;
  return NaiveModule(x, w, heads, kv_heads, offset);
}

// The same float64 reference from a module's own weights (biases and QK-norm included when the
// module has them, and its RoPE tables), detached and converted to float64.
inline torch::Tensor NaiveModule(llm::Attention& attn, const torch::Tensor& x, int64_t offset = 0) {
  auto f64 = [](const torch::Tensor& t) { return t.defined() ? t.detach().to(torch::kFloat64) : t; };
  NaiveWeights w;
  w.wq = f64(attn->q_proj->weight), w.wk = f64(attn->k_proj->weight), w.wv = f64(attn->v_proj->weight);
  w.wo = f64(attn->o_proj->weight);
  w.bq = f64(attn->q_proj->bias), w.bk = f64(attn->k_proj->bias), w.bv = f64(attn->v_proj->bias);
  w.bo = f64(attn->o_proj->bias);
  if (attn->q_norm)
    w.q_norm = f64(attn->q_norm->weight), w.k_norm = f64(attn->k_norm->weight), w.eps = attn->q_norm->eps;
  return NaiveModule(x, w, attn->num_heads, attn->num_kv_heads, offset, &attn->rope);
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
