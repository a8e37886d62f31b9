// Lesson 07 - what every optimizer here shares: parameter groups and saveable state.
//
// A parameter group is a set of parameters with its own settings. Language models use two: the
// matrices (embeddings, projections) with weight decay, and the 1-D parameters (norm gains, biases)
// without it (nanoGPT's configure_optimizers: decay exactly the params with dim >= 2). Decaying a
// norm's gain pulls it towards 0, which only fights the normalization; decaying a matrix keeps its
// entries small, which is the regulariser we want.
//
// State. Adam-style optimizers keep running averages per parameter; a run that stops and resumes
// must get them back exactly, or the resumed run differs from the uninterrupted one. The state is a
// flat map from names to tensors ("<parameter name>.exp_avg", ...), keyed by the parameter's
// *name*, not its position, so a checkpoint (lesson 10) says what it holds and a model whose
// parameters were reordered cannot load the wrong moments silently.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

struct ParamGroup {
  std::string name;  // "decay" or "no_decay", for logs
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  double lr = 1e-3;  // set every step by the schedule: its lr x lr_scale
  double weight_decay = 0.0;
  // This group's learning rate relative to the schedule's, as each PyTorch param group keeps its own
  // base lr that a LambdaLR multiplies. 1 almost everywhere; PPO's value head learns faster (100x),
  // and 0 holds a group still (PPO's value warm-up keeps the policy where it is).
  double lr_scale = 1.0;
};

// Two groups from a module's named parameters: dim >= 2 with weight_decay, the rest with 0.
// Parameters that do not require grad (frozen, lesson 11) are left out. A group with no parameters
// is dropped.
inline std::vector<ParamGroup> decay_param_groups(const torch::OrderedDict<std::string, torch::Tensor>& named,
                                                  double lr, double weight_decay) {
  // BEGIN SOLUTION: decay_param_groups(): matrices (dim >= 2) decay, vectors (norms, biases) do not
  ParamGroup decay{"decay", {}, {}, lr, weight_decay}, no_decay{"no_decay", {}, {}, lr, 0.0};
  for (const auto& item : named) {
    if (!item.value().requires_grad()) continue;
    auto& group = item.value().dim() >= 2 ? decay : no_decay;
    group.names.push_back(item.key());
    group.params.push_back(item.value());
  }
  std::vector<ParamGroup> groups;
  for (auto* g : {&decay, &no_decay}) {
    if (!g->params.empty()) groups.push_back(std::move(*g));
  }
  return groups;
  // END SOLUTION
}

using OptimizerState = std::map<std::string, torch::Tensor>;

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
    std::set<std::string> seen;
    for (const auto& g : groups_) {
      TORCH_CHECK(g.names.size() == g.params.size(), "optimizer: group '", g.name, "' has ", g.names.size(),
                  " names for ", g.params.size(), " parameters");
      for (const auto& name : g.names) {
        // The state is keyed by name: two parameters with one name would share one state.
        TORCH_CHECK(seen.insert(name).second, "optimizer: the parameter name '", name, "' appears twice");
      }
    }
  }
  virtual ~Optimizer() = default;

  virtual void step() = 0;
  virtual OptimizerState state_dict() const = 0;
  virtual void load_state_dict(const OptimizerState& state) = 0;

  // Gradients set to undefined (not zero): no memory traffic, and backward writes them fresh.
  void zero_grad() {
    for (auto& g : groups_) {
      for (auto& p : g.params) {
        if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
      }
    }
  }
  // The schedule sets every group's learning rate at each step: lr x the group's lr_scale.
  void set_lr(double lr) {
    for (auto& g : groups_) g.lr = lr * g.lr_scale;
  }
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }

 protected:
  std::vector<ParamGroup> groups_;
};

// Throws naming every key of `state` that `used` does not contain: an entry for a parameter this
// optimizer does not have (another model's checkpoint, a renamed module).
inline void check_no_unknown_state(const OptimizerState& state, const std::set<std::string>& used, const char* who) {
  std::string unknown;
  for (const auto& [key, value] : state) {
    if (!used.count(key)) unknown += (unknown.empty() ? "'" : ", '") + key + "'";
  }
  if (!unknown.empty())
    throw std::runtime_error(std::string(who) +
                             " state has entries for parameters this optimizer does not have: " + unknown);
}

// A copy of the state tensor called `key`, with the shape and dtype of `like`; errors name what is missing.
inline torch::Tensor state_entry(const OptimizerState& state, const std::string& key, const torch::Tensor& like) {
  auto it = state.find(key);
  if (it == state.end()) throw std::runtime_error("optimizer state has no '" + key + "'");
  if (it->second.sizes() != like.sizes()) {
    std::ostringstream message;
    message << "optimizer state '" << key << "' has shape " << it->second.sizes() << ", the parameter " << like.sizes();
    throw std::runtime_error(message.str());
  }
  return it->second.to(like.scalar_type()).clone();
}

}  // namespace llm
