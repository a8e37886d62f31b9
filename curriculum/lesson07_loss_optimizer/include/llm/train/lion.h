// Lesson 07 - Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").
//
// Found by a program search, Lion keeps one moment and moves every parameter by the same amount,
// lr, in the direction of the *sign* of an interpolation between the moment and the gradient:
//
//     p = p * (1 - lr * wd)                    decoupled decay, as AdamW
//     c = b1 m + (1 - b1) g                    the update direction, before the moment changes
//     p = p - lr * sign(c)                     sign(0) = 0
//     m = b2 m + (1 - b2) g                    the moment is updated AFTER, with b2 (not b1)
//
// The order is the reference implementation's (google/automl lion/lion_pytorch.py, Lion.step;
// lucidrains/lion-pytorch's update_fn is identical). Defaults: lr 1e-4, betas (0.9, 0.99), wd 0.
// Every update has norm lr * sqrt(#params), so Lion wants a learning rate 3-10x smaller than
// AdamW's and a weight decay 3-10x larger (the paper's advice), and half the optimizer memory.
#pragma once

#include <llm/common/todo.h>
#include <llm/train/optimizer.h>

#include <torch/torch.h>

#include <set>
#include <string>
#include <unordered_map>

namespace llm {

struct LionOptions {
  double beta1 = 0.9;
  double beta2 = 0.99;
};

class Lion : public Optimizer {
 public:
  Lion(std::vector<ParamGroup> groups, LionOptions options = {}) : Optimizer(std::move(groups)), options_(options) {
    TORCH_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
                "Lion: betas must be in [0, 1), got ", options.beta1, " and ", options.beta2);
  }

  void step() override {
    // Under torch::NoGradGuard, for every parameter p with a defined gradient g (state: exp_avg m,
    // zeros_like(p) on first use):
    //   1. if weight_decay != 0: p.mul_(1 - lr * weight_decay)
    //   2. c = m * b1 + g * (1 - b1);  p.add_(sign(c), -lr)
    //   3. m.mul_(b2).add_(g, 1 - b2)
    LLM_TODO("lesson07: Lion::step(): decay, step by -lr * sign(b1 m + (1 - b1) g), then update m with b2");
  }

  // "<name>.exp_avg" for every parameter that has state, copied.
  OptimizerState state_dict() const override {
    OptimizerState out;
    for (const auto& [name, m] : exp_avg_) out[name + ".exp_avg"] = m.clone();
    return out;
  }

  void load_state_dict(const OptimizerState& state) override {
    std::unordered_map<std::string, torch::Tensor> loaded;
    std::set<std::string> used;
    for (const auto& group : groups_) {
      for (size_t i = 0; i < group.params.size(); ++i) {
        const std::string key = group.names[i] + ".exp_avg";
        if (!state.count(key)) continue;
        loaded[group.names[i]] = state_entry(state, key, group.params[i]);
        used.insert(key);
      }
    }
    check_no_unknown_state(state, used, "Lion");
    exp_avg_ = std::move(loaded);
  }

 private:
  LionOptions options_;
  std::unordered_map<std::string, torch::Tensor> exp_avg_;
};

}  // namespace llm
