// Lesson 07 - AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).
//
// For every parameter p with gradient g, at step t = 1, 2, ... (state: m, v, both starting at 0):
//
//     p = p * (1 - lr * wd)                       decoupled decay FIRST, on the old p, with this lr
//     m = b1 m + (1 - b1) g                       first moment: a running mean of g
//     v = b2 v + (1 - b2) g^2                     second moment: a running mean of g^2
//     denom = sqrt(v) / sqrt(1 - b2^t) + eps      eps OUTSIDE the bias-corrected square root
//     p = p - (lr / (1 - b1^t)) * m / denom
//
// Bias correction: m and v start at 0, so early on they underestimate E[g] and E[g^2] by the
// factors (1 - b1^t) and (1 - b2^t); dividing them out makes the first steps the right size.
// Without it the first update with b2 = 0.999 is ~30x too large in relative terms.
//
// Decoupled decay: Adam with L2 regularisation adds wd p to g, and the adaptive denominator then
// shrinks the decay of parameters with large gradients. AdamW decays p directly, the same for all.
//
// The order of operations is PyTorch 1.13's (torch/optim/adamw.py, _single_tensor_adamw, and the
// C++ torch/csrc/api/src/optim/adamw.cpp): decay, moments, denom with eps added after the division,
// then addcdiv. Following it op for op makes this optimizer equal to torch::optim::AdamW to the last
// bit, which the tests check over 1,000 steps. A parameter without a gradient is skipped entirely
// (no decay either), as in PyTorch.
#pragma once

#include <llm/common/todo.h>
#include <llm/train/optimizer.h>

#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>
#include <unordered_map>

namespace llm {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // lr and weight decay live in each ParamGroup (PyTorch's defaults: lr 1e-3, weight_decay 1e-2).
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {}) : Optimizer(std::move(groups)), options_(options) {
    TORCH_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
                "AdamW: betas must be in [0, 1), got ", options.beta1, " and ", options.beta2);
    TORCH_CHECK(options.eps >= 0, "AdamW: eps must be >= 0, got ", options.eps);
  }

  void step() override {
    // Under torch::NoGradGuard, for every group and every (name, p) in it with a defined gradient g:
    //   1. state for `name` (created on first use: step 0, exp_avg and exp_avg_sq zeros_like(p)).
    //   2. if weight_decay != 0: p.mul_(1 - lr * weight_decay)
    //   3. step += 1; bias_correction1 = 1 - b1^step; bias_correction2 = 1 - b2^step
    //   4. exp_avg.mul_(b1).add_(g, 1 - b1); exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
    //   5. denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
    //   6. p.addcdiv_(exp_avg, denom, -lr / bias_correction1)
    // BEGIN SOLUTION: AdamW::step(): decoupled decay, moments, bias-corrected denom with eps outside, update
    torch::NoGradGuard no_grad;
    const double b1 = options_.beta1, b2 = options_.beta2;
    for (auto& group : groups_) {
      for (size_t i = 0; i < group.params.size(); ++i) {
        auto& p = group.params[i];
        const auto& g = p.grad();
        if (!g.defined()) continue;
        auto [it, created] = state_.try_emplace(group.names[i]);
        State& s = it->second;
        if (created) s.exp_avg = torch::zeros_like(p), s.exp_avg_sq = torch::zeros_like(p);
        if (group.weight_decay != 0) p.mul_(1 - group.lr * group.weight_decay);
        s.step += 1;
        const double bias_correction1 = 1 - std::pow(b1, static_cast<double>(s.step));
        const double bias_correction2 = 1 - std::pow(b2, static_cast<double>(s.step));
        s.exp_avg.mul_(b1).add_(g, 1 - b1);
        s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2);
        auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
        p.addcdiv_(s.exp_avg, denom, -group.lr / bias_correction1);
      }
    }
    // END SOLUTION
  }

  // "<name>.exp_avg", "<name>.exp_avg_sq", "<name>.step" (an int64 scalar) for every parameter that
  // has state: copies, so a saved state does not change as training goes on.
  OptimizerState state_dict() const override {
    OptimizerState out;
    for (const auto& [name, s] : state_) {
      out[name + ".exp_avg"] = s.exp_avg.clone();
      out[name + ".exp_avg_sq"] = s.exp_avg_sq.clone();
      out[name + ".step"] = torch::tensor(s.step, torch::kLong);
    }
    return out;
  }

  // Restores what state_dict() returned: a parameter with any entry must have all three, with its
  // shape; a parameter with none has not been stepped yet; an entry for no parameter is an error.
  void load_state_dict(const OptimizerState& state) override {
    std::unordered_map<std::string, State> loaded;
    std::set<std::string> used;
    for (const auto& group : groups_) {
      for (size_t i = 0; i < group.params.size(); ++i) {
        const std::string& name = group.names[i];
        const std::string keys[3] = {name + ".step", name + ".exp_avg", name + ".exp_avg_sq"};
        if (!state.count(keys[0]) && !state.count(keys[1]) && !state.count(keys[2])) continue;
        if (!state.count(keys[0])) throw std::runtime_error("AdamW state has no '" + keys[0] + "'");
        State s;
        s.exp_avg = state_entry(state, keys[1], group.params[i]);
        s.exp_avg_sq = state_entry(state, keys[2], group.params[i]);
        s.step = state.at(keys[0]).item<int64_t>();
        loaded[name] = std::move(s);
        used.insert(keys, keys + 3);
      }
    }
    check_no_unknown_state(state, used, "AdamW");
    state_ = std::move(loaded);
  }

  const AdamWOptions& options() const { return options_; }

 private:
  struct State {
    int64_t step = 0;
    torch::Tensor exp_avg, exp_avg_sq;
  };
  AdamWOptions options_;
  std::unordered_map<std::string, State> state_;
};

}  // namespace llm
