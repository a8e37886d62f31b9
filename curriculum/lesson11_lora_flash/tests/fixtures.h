// Shared by lesson 11's suites: the NF4 table typed in from bitsandbytes' functional.py (not taken
// from nf4.h), the nearest code by brute-force argmin, bitsandbytes' dynamic map recomputed in double
// from its formula, a tiny CausalLM, a temporary folder, and the naive attention the tiled one is
// checked against (lesson 03's scaled_dot_product_attention with a boolean mask built here).
#pragma once

#include <llm/common/testing.h>
#include <llm/config/model_config.h>
#include <llm/model/causal_lm.h>
#include <llm/model/linear.h>
#include <llm/model/scaled_dot_product.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace lesson11 {

class Lesson11Test : public llm::testing::SeededTest {};

inline torch::Tensor F32(const std::vector<float>& values) {
  return torch::tensor(values, torch::kFloat32);
}

// bitsandbytes' NF4 code (bitsandbytes/functional.py, get_4bit_type("nf4")), index 0b0000 .. 0b1111.
inline const std::vector<float>& Nf4Table() {
  static const std::vector<float> table = {-1.0f,
                                           -0.6961928009986877f,
                                           -0.5250730514526367f,
                                           -0.39491748809814453f,
                                           -0.28444138169288635f,
                                           -0.18477343022823334f,
                                           -0.09105003625154495f,
                                           0.0f,
                                           0.07958029955625534f,
                                           0.16093020141124725f,
                                           0.24611230194568634f,
                                           0.33791524171829224f,
                                           0.44070982933044434f,
                                           0.5626170039176941f,
                                           0.7229568362236023f,
                                           1.0f};
  return table;
}

// The largest gap between adjacent NF4 codes is the first one, -1 .. -0.6961928: half of it bounds
// the error of a value scaled into [-1, 1].
constexpr double kNf4HalfLargestGap = (1.0 - 0.6961928009986877) / 2;  // 0.1519036

// The index of the nearest of `code` to each value, by argmin |x - c| (no midpoints, no bucketize).
inline torch::Tensor NearestByArgmin(const torch::Tensor& scaled, const torch::Tensor& code) {
  return (scaled.reshape({-1, 1}).to(torch::kFloat64) - code.reshape({1, -1}).to(torch::kFloat64))
      .abs()
      .argmin(1);  // (n,) int64
}

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), in double:
// for e = 0..6 the 2^e midpoints of linspace(0.1, 1, 2^e + 1), times +-10^(e - 6); then 0 and 1.
inline std::vector<double> DynamicMapFormula() {
  std::vector<double> map;
  for (int e = 0; e < 7; ++e) {
    const int n = 1 << e;
    for (int i = 0; i < n; ++i) {
      const double lo = 0.1 + 0.9 * i / n, hi = 0.1 + 0.9 * (i + 1) / n;
      const double v = (lo + hi) / 2 * std::pow(10.0, e - 6);
      map.push_back(v);
      map.push_back(-v);
    }
  }
  map.push_back(0.0);
  map.push_back(1.0);
  std::sort(map.begin(), map.end());
  return map;
}

inline llm::ModelConfig TinyConfig() {
  llm::ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;  // head_dim 4: q_proj 16 -> 16, v_proj 16 -> 8
  c.max_position_embeddings = 32;
  c.multiple_of = 8;
  return c;
}

// A fresh CausalLM with the same weights as `from`.
inline llm::CausalLM CopyOf(const llm::CausalLM& from) {
  llm::CausalLM copy(from->config);
  llm::testing::CopyParameters(*from, *copy);
  return copy;
}

inline torch::Tensor SomeIds() {
  return torch::tensor(std::vector<int64_t>{3, 7, 1, 9, 4, 4, 12, 30, 5, 2, 18, 6, 21, 0, 8, 11}, torch::kLong)
      .view({2, 8});
}

// Gives every lora_B of the model random values (PEFT's init_lora_weights=False), so the branch
// contributes and a wrong scaling, merge or load shows.
inline void RandomizeLoraB(torch::nn::Module& model, double std = 0.1) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    const auto& name = p.key();
    if (name.size() >= 13 && name.compare(name.size() - 13, 13, "lora_B.weight") == 0)
      p.value().copy_(torch::randn(p.value().sizes()) * std);
  }
}

// Holds one Linear under the name "proj", for the functions that walk a model's submodules.
struct HolderImpl : torch::nn::Module {
  HolderImpl(int64_t in, int64_t out) { proj = register_module("proj", llm::Linear(in, out)); }
  llm::Linear proj{nullptr};
};
TORCH_MODULE(Holder);

// A fresh directory under the system's temporary directory, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "llm-lesson11-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------- attention

// Which keys each query may see, (B, 1, T, Tk) bool: causal bottom-right (j <= i + Tk - T, which
// for T > Tk leaves the first T - Tk rows with no key) and the key padding mask (B, Tk).
inline torch::Tensor VisibleKeys(int64_t B, int64_t T, int64_t Tk, bool causal, const torch::Tensor& padding = {}) {
  auto mask = torch::ones({B, 1, T, Tk}, torch::kBool);
  if (causal) mask = mask.logical_and(torch::ones({T, Tk}, torch::kBool).tril(Tk - T));
  if (padding.defined()) mask = mask.logical_and(padding.to(torch::kBool).view({B, 1, 1, Tk}));
  return mask;
}

// Lesson 03's attention with that mask: a row with no visible key gives 0.
inline torch::Tensor NaiveAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                                    const torch::Tensor& padding = {}, double scale = 0) {
  llm::AttentionOptions o;
  o.mask = VisibleKeys(q.size(0), q.size(2), k.size(2), causal, padding);
  if (scale > 0) o.scale = scale;
  return llm::scaled_dot_product_attention(q, k, v, o).out;
}

// torch::logsumexp of the masked, scaled scores, (B, H, T); -inf for a row with no visible key.
inline torch::Tensor NaiveLse(const torch::Tensor& q, const torch::Tensor& k, bool causal,
                              const torch::Tensor& padding = {}, double scale = 0) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1), Tk = k.size(2);
  const double s = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(D));
  auto kr = k.repeat_interleave(H / Hkv, 1);                 // (B, H, Tk, D): head h reads kv head h / G
  auto scores = torch::matmul(q, kr.transpose(-1, -2)) * s;  // (B, H, T, Tk)
  scores =
      scores.masked_fill(VisibleKeys(B, T, Tk, causal, padding).logical_not(), -std::numeric_limits<float>::infinity());
  return torch::logsumexp(scores, -1);  // (B, H, T)
}

struct Qkv {
  torch::Tensor q, k, v;
};

// Leaf tensors that require grad: q (B, H, T, D), k and v (B, Hkv, Tk, D).
inline Qkv RandomQkv(int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t Tk, int64_t D) {
  return {torch::randn({B, H, T, D}).requires_grad_(), torch::randn({B, Hkv, Tk, D}).requires_grad_(),
          torch::randn({B, Hkv, Tk, D}).requires_grad_()};
}

// d(sum(out * g))/d(q, k, v) by autograd.
inline std::vector<torch::Tensor> Grads(const torch::Tensor& out, const Qkv& x, const torch::Tensor& g) {
  return torch::autograd::grad({out}, {x.q, x.k, x.v}, {g});
}

}  // namespace lesson11
