// Shared by lesson 09's suites: a tiny CausalLM, sampled rows in the Rollout layout (left-padded
// prompt, then the completion up to its end token, right-padded), the log-probs of those rows
// computed directly with log_softmax + gather (the independent reference), and an optimizer that
// records the gradients the trainer hands it.
#pragma once

#include <llm/align/grpo.h>
#include <llm/common/testing.h>
#include <llm/config/model_config.h>
#include <llm/model/causal_lm.h>
#include <llm/train/optimizer.h>
#include <llm/train/trainer.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lesson09 {

class RlTest : public llm::testing::SeededTest {};

constexpr int64_t kPad = 0, kEnd = 2;  // pad and <|end|> ids of the hand-made rows

inline llm::ModelConfig TinyConfig(bool tied = false) {
  llm::ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.multiple_of = 8;
  c.tie_word_embeddings = tied;
  return c;
}

inline torch::Tensor F32(const std::vector<float>& values) {
  return torch::tensor(values, torch::kFloat32);
}
inline torch::Tensor Bools(const std::vector<int>& values) {
  return torch::tensor(std::vector<int64_t>(values.begin(), values.end()), torch::kLong).to(torch::kBool);
}

// The Rollout layout (grpo.h): (N, S) with S = longest prompt + longest completion.
struct Rows {
  torch::Tensor input_ids, attention_mask, completion_mask;
};

inline Rows MakeRows(const std::vector<std::vector<int64_t>>& prompts,
                     const std::vector<std::vector<int64_t>>& completions) {
  const int64_t N = static_cast<int64_t>(prompts.size());
  int64_t P = 0, T = 0;
  for (int64_t i = 0; i < N; ++i) {
    P = std::max<int64_t>(P, prompts[i].size());
    T = std::max<int64_t>(T, completions[i].size());
  }
  Rows r{torch::full({N, P + T}, kPad, torch::kLong), torch::zeros({N, P + T}, torch::kBool),
         torch::zeros({N, P + T}, torch::kBool)};
  for (int64_t i = 0; i < N; ++i) {
    const int64_t start = P - static_cast<int64_t>(prompts[i].size());
    for (size_t t = 0; t < prompts[i].size(); ++t) {
      r.input_ids[i][start + t] = prompts[i][t];
      r.attention_mask[i][start + t] = true;
    }
    for (size_t t = 0; t < completions[i].size(); ++t) {
      r.input_ids[i][P + t] = completions[i][t];
      r.attention_mask[i][P + t] = true;
      r.completion_mask[i][P + t] = true;
    }
  }
  return r;
}

// Two prompts, two answers each (G = 2), of 4, 2, 2 and 5 completion tokens (the last one cut
// before its end token): P = 3, T = 5, S = 8.
inline Rows GroupRows() {
  return MakeRows({{5, 6, 7}, {5, 6, 7}, {8, 9}, {8, 9}},
                  {{10, 11, 12, kEnd}, {13, kEnd}, {14, kEnd}, {15, 16, 17, 18, 19}});
}

// out[:, t] = log p(ids[t] | ids[<t]) from one forward pass, 0 at t = 0: the alignment of
// rollout_logprobs, computed here with log_softmax and gather.
inline torch::Tensor DirectLogprobs(const torch::Tensor& logits, const torch::Tensor& ids) {
  const int64_t S = ids.size(1);
  auto per = torch::log_softmax(logits.narrow(1, 0, S - 1).to(torch::kFloat32), -1)
                 .gather(-1, ids.narrow(1, 1, S - 1).unsqueeze(-1))
                 .squeeze(-1);                                  // (N, S - 1)
  return torch::cat({torch::zeros({ids.size(0), 1}), per}, 1);  // (N, S)
}

inline torch::Tensor DirectLogprobs(llm::CausalLM& model, const Rows& rows) {
  return DirectLogprobs(model(rows.input_ids, 0, rows.attention_mask), rows.input_ids);
}

// Rows `index` of every tensor of a rollout-like struct.
inline torch::Tensor Take(const torch::Tensor& t, const std::vector<int64_t>& index) {
  return t.defined() ? t.index_select(0, torch::tensor(index, torch::kLong)) : t;
}

// Plain SGD that records every gradient it is handed, per step and parameter.
class RecordingSgd : public llm::Optimizer {
 public:
  using llm::Optimizer::Optimizer;
  void step() override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> seen;
    for (auto& g : groups_) {
      for (auto& p : g.params) {
        seen.push_back(p.grad().defined() ? p.grad().detach().clone() : torch::Tensor());
        if (p.grad().defined()) p.sub_(p.grad() * g.lr);
      }
    }
    grads.push_back(std::move(seen));
  }
  llm::OptimizerState state_dict() const override { return {}; }
  void load_state_dict(const llm::OptimizerState&) override {}
  std::vector<std::vector<torch::Tensor>> grads;
};

inline std::vector<llm::ParamGroup> AllParams(torch::nn::Module& module, double lr) {
  llm::ParamGroup g{"all", {}, {}, lr, 0.0};
  for (auto& item : module.named_parameters()) {
    g.names.push_back(item.key());
    g.params.push_back(item.value());
  }
  return {g};
}

inline llm::TrainerOptions ConstantLr(double lr, double grad_clip = 0.0) {
  llm::TrainerOptions o;
  o.grad_clip = grad_clip;
  o.schedule.kind = "constant";
  o.schedule.peak_lr = lr;
  o.schedule.min_lr = 0;
  o.schedule.warmup_steps = 0;
  o.schedule.total_steps = 100;
  return o;
}

// --------------------------------------------------------------------------- GRPO rollouts

// A rollout of GroupRows() with the given per-row advantages, old log-probs off the current policy
// (so ratios differ from 1 and some clip) and a reference for the KL.
inline llm::Rollout MakeRollout(llm::CausalLM& model, const torch::Tensor& advantages) {
  const auto rows = GroupRows();
  torch::NoGradGuard no_grad;
  const auto logp = DirectLogprobs(model, rows);
  llm::Rollout r;
  r.input_ids = rows.input_ids;
  r.attention_mask = rows.attention_mask;
  r.completion_mask = rows.completion_mask;
  r.old_logp = logp + 0.3 * torch::randn(logp.sizes());
  r.ref_logp = logp + 0.2 * torch::randn(logp.sizes());
  r.advantages = advantages;
  return r;
}

// Rows `index` of a rollout: one micro-batch.
inline llm::Rollout Subset(const llm::Rollout& r, const std::vector<int64_t>& index) {
  return {Take(r.input_ids, index), Take(r.attention_mask, index), Take(r.completion_mask, index),
          Take(r.old_logp, index),  Take(r.ref_logp, index),       Take(r.advantages, index)};
}

// The per-token GRPO loss of a rollout under `model`, written out (eps 0.2 both sides):
// -min(r A, clip(r) A) + beta k3, and k3 itself; (N, S), not masked.
struct HandTokenLoss {
  torch::Tensor loss, kl, clipped;
};
inline HandTokenLoss HandGrpoLoss(llm::CausalLM& model, const llm::Rollout& r, double beta) {
  torch::NoGradGuard no_grad;
  const auto logp = DirectLogprobs(model, Rows{r.input_ids, r.attention_mask, r.completion_mask});
  const auto ratio = torch::exp(logp - r.old_logp);
  const auto A = r.advantages.unsqueeze(1);
  const auto d = r.ref_logp - logp;
  const auto kl = torch::exp(d) - d - 1;
  return {-torch::min(ratio * A, ratio.clamp(0.8, 1.2) * A) + beta * kl, kl,
          ((ratio < 0.8) & (A < 0)) | ((ratio > 1.2) & (A > 0))};
}

// Sum over the completion tokens of `x`.
inline double MaskedSum(const torch::Tensor& x, const torch::Tensor& mask) {
  return torch::where(mask, x.to(torch::kFloat64), torch::zeros_like(x, torch::kFloat64)).sum().item<double>();
}

struct GrpoStep {
  llm::StepResult result;
  std::vector<torch::Tensor> grads;
};

// One trainer step of GRPO on a copy of `start` over `micro_batches`, recording the gradients.
inline GrpoStep TrainerStep(const llm::CausalLM& start, const std::vector<llm::Rollout>& micro_batches,
                            const llm::GrpoOptions& options) {
  llm::CausalLM model(start->config);
  llm::testing::CopyParameters(*start, *model);
  RecordingSgd optimizer(AllParams(*model, 0.1));
  llm::Trainer trainer(optimizer, ConstantLr(0.1));
  std::function<int64_t(const llm::Rollout&)> count = [&](const llm::Rollout& r) {
    return llm::grpo_count(r, options);
  };
  std::function<llm::LossSum(const llm::Rollout&)> loss_sum = [&](const llm::Rollout& r) {
    return llm::grpo_loss_sum(model, r, options);
  };
  auto result = trainer.step<llm::Rollout>(micro_batches, count, loss_sum);
  return {result, optimizer.grads.at(0)};
}

}  // namespace lesson09
