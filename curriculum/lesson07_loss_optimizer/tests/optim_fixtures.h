// Shared by lesson 07's suites: tensors with hand-set gradients, torch's own cross-entropy with the
// same options, a tiny two-group regression net (matrices decayed, vectors not) that both our
// optimizers and torch::optim::AdamW can train on the same batches, and a deep copy of a state.
#pragma once

#include <llm/common/testing.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/optimizer.h>

#include <ATen/CPUGeneratorImpl.h>

#include <string>
#include <utility>
#include <vector>

namespace lesson07 {

class OptimTest : public llm::testing::SeededTest {};

// A float32 tensor from values (torch::tensor on a double literal list would be ambiguous to read).
inline torch::Tensor F32(const std::vector<float>& values) {
  return torch::tensor(values, torch::kFloat32);
}
inline torch::Tensor Ids(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::kLong);
}

// A leaf parameter that requires grad, with the given values and gradient.
inline torch::Tensor ParamWithGrad(const std::vector<float>& values, const std::vector<float>& grad) {
  auto p = F32(values).requires_grad_();
  p.mutable_grad() = F32(grad);
  return p;
}

// One group holding `params` under `names`.
inline std::vector<llm::ParamGroup> OneGroup(std::vector<std::string> names, std::vector<torch::Tensor> params,
                                             double lr, double weight_decay) {
  return {llm::ParamGroup{"group", std::move(names), std::move(params), lr, weight_decay}};
}

// The same cross-entropy from torch::nn::functional, the independent reference.
inline torch::Tensor TorchCrossEntropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                       const llm::CrossEntropyOptions& o) {
  namespace F = torch::nn::functional;
  auto options = F::CrossEntropyFuncOptions().ignore_index(o.ignore_index).label_smoothing(o.label_smoothing);
  switch (o.reduction) {
    case llm::Reduction::kMean:
      options.reduction(torch::kMean);
      break;
    case llm::Reduction::kSum:
      options.reduction(torch::kSum);
      break;
    case llm::Reduction::kNone:
      options.reduction(torch::kNone);
      break;
  }
  return F::cross_entropy(logits, targets, options);
}

inline const char* ReductionName(llm::Reduction r) {
  return r == llm::Reduction::kMean ? "mean" : r == llm::Reduction::kSum ? "sum" : "none";
}
inline const std::vector<llm::Reduction> kReductions = {llm::Reduction::kMean, llm::Reduction::kSum,
                                                        llm::Reduction::kNone};

// Batch `step` of a fixed stream: the same numbers for every net, whatever the global generator did.
inline std::pair<torch::Tensor, torch::Tensor> Batch(int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + static_cast<uint64_t>(step % 16));
  auto x = torch::randn({8, 4}, gen);                                            // (8, 4)
  auto mix = torch::randn({4, 3}, at::make_generator<at::CPUGeneratorImpl>(7));  // (4, 3)
  return {x, torch::sin(x.matmul(mix))};                                         // y (8, 3)
}

// y ~ gain * (w2 tanh(w1 x + b1)): two matrices for the decayed group, two vectors for the other.
struct TinyNet {
  torch::Tensor w1, b1, w2, gain;

  static TinyNet Random() {
    TinyNet n{torch::randn({6, 4}) * 0.5, torch::randn({6}) * 0.1, torch::randn({3, 6}) * 0.5, torch::ones({3})};
    for (auto* p : {&n.w1, &n.b1, &n.w2, &n.gain}) p->requires_grad_();
    return n;
  }
  // Independent leaves with the same values.
  TinyNet Clone() const {
    auto c = [](const torch::Tensor& t) { return t.detach().clone().requires_grad_(); };
    return {c(w1), c(b1), c(w2), c(gain)};
  }
  std::vector<torch::Tensor> Params() const { return {w1, b1, w2, gain}; }
  std::vector<llm::ParamGroup> Groups(double lr, double weight_decay) const {
    return {llm::ParamGroup{"decay", {"w1", "w2"}, {w1, w2}, lr, weight_decay},
            llm::ParamGroup{"no_decay", {"b1", "gain"}, {b1, gain}, lr, 0.0}};
  }
  // Mean squared error on batch `step`, backpropagated into fresh .grad()s (call after zero_grad).
  void Backward(int64_t step) const {
    auto [x, y] = Batch(step);
    auto out = torch::tanh(x.matmul(w1.t()) + b1).matmul(w2.t()) * gain;  // (8, 3)
    (out - y).pow(2).mean().backward();
  }
};

// A learning rate that changes every step, so an optimizer that caches it is caught.
inline double VaryingLr(int64_t step) {
  return 1e-2 * static_cast<double>(1 + step % 5) / 5.0;
}

// What a checkpoint holds: copies, not the live tensors the optimizer keeps updating.
inline llm::OptimizerState DeepCopy(const llm::OptimizerState& state) {
  llm::OptimizerState copy;
  for (const auto& [key, value] : state) copy[key] = value.clone();
  return copy;
}

// Empty when every parameter of `a` equals the one of `b` bit for bit, else which differs and by how much.
inline std::string FirstDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  const char* names[] = {"w1", "b1", "w2", "gain"};
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) {
      return fmt::format("{} differs, max abs diff {:.3g}", i < 4 ? names[i] : "a parameter",
                         (a[i] - b[i]).abs().max().item<double>());
    }
  }
  return "";
}

}  // namespace lesson07
