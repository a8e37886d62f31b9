// Lesson 08 - Direct Preference Optimization (Rafailov et al. 2023), as TRL's DPOTrainer computes it.
//
// Shapes: P pairs, 2P rows (all chosen, then all rejected: lesson 06's preference.h), T positions,
// V vocabulary.
//
// RLHF fits a reward model to human preferences, then maximises that reward with RL while a KL term
// keeps the policy pi near a reference pi_ref. DPO shows the optimum of that RL problem is
//
//     pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)    =>    r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x)
//
// and substitutes it into the Bradley-Terry preference model p(y_c > y_r) = sigmoid(r_c - r_r). Z(x)
// cancels in the difference, so the policy *is* the reward model and one classification loss trains it:
//
//     h    = (log pi(y_c|x) - log pi_ref(y_c|x)) - (log pi(y_r|x) - log pi_ref(y_r|x))     the log-ratio margin
//     loss = -log sigmoid(beta h)                                                          averaged over pairs
//
// log pi(y|x) is the *sum* of the per-token log-probabilities of the completion: prompt and padding
// excluded, the completion's end token included (it is part of the answer; a model that never learns
// to stop has not learned the preferred answer). At the start pi = pi_ref, so h = 0 and the loss is
// ln 2 = 0.6931: a test.
//
// The variants TRL offers under loss_type (trl/trainer/dpo_trainer.py: "TRL-classic" is v0.23.0's
// DPOTrainer.dpo_loss, "TRL-1.x" the trainer rewritten in v0.29 (PR #3906), _compute_loss),
// eps = label_smoothing:
//     sigmoid   -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)     eps > 0 is conservative DPO (cDPO):
//                                                                             the labels are wrong with probability eps
//     robust    (-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)) / (1 - 2 eps)    unbiased under label noise
//     hinge     relu(1 - beta h)                                               SLiC
//     ipo       (h' - 1 / (2 beta))^2       h' from *length-averaged* log-probs: each log-ratio divided by its
//                                           completion's token count (IPO, Azar et al. 2023)
// Where TRL's versions disagree we follow TRL-classic for sigmoid (label smoothing = cDPO; TRL-1.x
// ignores label_smoothing for sigmoid, so cDPO would be unreachable) and keep its reference_free
// option (pi_ref = uniform: the reference log-ratios are 0; TRL-1.x removed it). On top of any of
// them, rpo_alpha > 0 adds RPO's alpha NLL(chosen) (dpo_loss_sum, below).
//
// The implicit rewards TRL logs are r = beta (log pi - log pi_ref):
//     rewards/chosen, rewards/rejected   their means;   rewards/margins   mean(r_c - r_r)
//     rewards/accuracies                 mean(r_c > r_r), strictly: a tie counts 0
#pragma once

#include <llm/common/todo.h>
#include <llm/data/preference.h>
#include <llm/model/causal_lm.h>
#include <llm/train/trainer.h>

#include <torch/torch.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>

namespace llm {

// log p(targets[b, t]) under logits[b, t]: (B, T, V), (B, T) -> (B, T) float32.
// TRL's selective_log_softmax: gather(log_softmax(logits), targets), without materialising the
// one-hot. The log_softmax runs in float32 whatever the logits' dtype (bf16 log-probs lose the
// small differences DPO is made of).
inline torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& targets) {
  // 1. Check logits is (B, T, V), targets (B, T) with the same B and T, naming both shapes, e.g.
  //    "token_logprobs: logits must be (B, T, V) and targets (B, T), got [2, 5, 7] and [2, 4]".
  // 2. log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).
  // BEGIN SOLUTION: token_logprobs(): log_softmax in float32, gathered at the targets
  TORCH_CHECK(
      logits.dim() == 3 && targets.dim() == 2 && logits.size(0) == targets.size(0) && logits.size(1) == targets.size(1),
      "token_logprobs: logits must be (B, T, V) and targets (B, T), got ", logits.sizes(), " and ", targets.sizes());
  return torch::log_softmax(logits.to(torch::kFloat32), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  // END SOLUTION
}

struct SequenceLogprobs {
  torch::Tensor sum;     // (N,) float32: sum of log p over completion tokens
  torch::Tensor tokens;  // (N,) float32: how many completion tokens (for IPO's length average)
};

// The log-probability of each row's completion. logits (N, T, V) from a forward pass over
// input_ids (N, T); completion_mask (N, T) marks completion tokens, aligned with input_ids.
// Position t's token is predicted by logits[t - 1], so
//     sum[n] = sum over t >= 1 with completion_mask[n, t] of log softmax(logits[n, t - 1])[input_ids[n, t]]
inline SequenceLogprobs sequence_logprobs(const torch::Tensor& logits, const torch::Tensor& input_ids,
                                          const torch::Tensor& completion_mask) {
  // 1. Check the shapes: logits (N, T, V), input_ids and completion_mask (N, T).
  // 2. per_token = token_logprobs(logits[:, :-1], input_ids[:, 1:])                 (N, T - 1)
  // 3. mask = completion_mask[:, 1:]; sum = where(mask, per_token, 0).sum(1); tokens = mask.sum(1)
  //    as float. Select with where rather than multiplying by the mask: a padding position may hold
  //    -inf, and -inf * 0 is NaN.
  // BEGIN SOLUTION: sequence_logprobs(): shifted token log-probs summed over the completion mask
  TORCH_CHECK(logits.dim() == 3 && input_ids.sizes() == completion_mask.sizes() && input_ids.dim() == 2 &&
                  logits.size(0) == input_ids.size(0) && logits.size(1) == input_ids.size(1),
              "sequence_logprobs: logits must be (N, T, V) and input_ids, completion_mask (N, T), got ", logits.sizes(),
              ", ", input_ids.sizes(), ", ", completion_mask.sizes());
  const int64_t T = input_ids.size(1);
  auto per_token = token_logprobs(logits.narrow(1, 0, T - 1), input_ids.narrow(1, 1, T - 1));  // (N, T-1)
  auto mask = completion_mask.narrow(1, 1, T - 1).to(torch::kFloat32);
  auto kept = torch::where(mask > 0, per_token, torch::zeros_like(per_token));
  return {kept.sum(1), mask.sum(1)};
  // END SOLUTION
}

struct DpoOptions {
  double beta = 0.1;                  // TRL's default: how far from pi_ref the policy may move
  std::string loss_type = "sigmoid";  // sigmoid, robust, hinge, ipo
  double label_smoothing = 0.0;       // eps of cDPO (sigmoid) and robust DPO, in [0, 0.5)
  bool reference_free = false;        // pi_ref uniform: the reference log-ratios are 0
  double rpo_alpha = 0.0;             // RPO: + alpha NLL(chosen) (TRL's rpo_alpha; the paper uses 1), 0 = off

  void validate() const {
    static const std::set<std::string> kTypes = {"sigmoid", "robust", "hinge", "ipo"};
    if (!kTypes.count(loss_type)) {
      throw std::invalid_argument("dpo loss_type '" + loss_type + "' is not one of: hinge, ipo, robust, sigmoid");
    }
    if (!(beta > 0)) throw std::invalid_argument("dpo beta must be > 0, got " + std::to_string(beta));
    if (!(label_smoothing >= 0 && label_smoothing < 0.5)) {
      throw std::invalid_argument("dpo label_smoothing must be in [0, 0.5), got " + std::to_string(label_smoothing));
    }
    if (!(rpo_alpha >= 0 && std::isfinite(rpo_alpha))) {
      throw std::invalid_argument("dpo rpo_alpha must be >= 0 (0 turns RPO off), got " + std::to_string(rpo_alpha));
    }
  }
};

struct DpoOutput {
  torch::Tensor losses;            // (P,) per pair
  torch::Tensor chosen_rewards;    // (P,) beta (log pi(c) - log pi_ref(c)), detached
  torch::Tensor rejected_rewards;  // (P,)
};

// The DPO loss per pair from sequence log-probs (P,) of the policy and the reference. The token
// counts (P,) are used by ipo only (may be undefined otherwise).
inline DpoOutput dpo_loss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                          const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected, const DpoOptions& options,
                          const torch::Tensor& chosen_tokens = {}, const torch::Tensor& rejected_tokens = {}) {
  // 1. options.validate(). The four log-prob tensors must have the same shape (P,), or name all
  //    four shapes, e.g. "dpo_loss: the four log-prob tensors must all be (P,), got [2], [1], [1], [1]".
  // 2. chosen_ratio = policy_chosen - ref_chosen, rejected_ratio likewise (reference_free: the policy
  //    log-probs alone). For ipo, divide each ratio by its token count (clamped to >= 1); ipo without
  //    counts throws std::invalid_argument naming ipo and the token counts, e.g.
  //    "dpo_loss: loss_type ipo needs the completions' token counts".
  // 3. h = chosen_ratio - rejected_ratio; z = beta h; with eps = label_smoothing:
  //      sigmoid  -(1 - eps) logsigmoid(z) - eps logsigmoid(-z)
  //      robust   (-(1 - eps) logsigmoid(z) + eps logsigmoid(-z)) / (1 - 2 eps)
  //      hinge    relu(1 - z)
  //      ipo      (h - 1 / (2 beta))^2
  // 4. rewards = beta * (policy - ref) for chosen and rejected (unnormalised, detached), as TRL logs.
  // BEGIN SOLUTION: dpo_loss(): the log-ratio margin, then sigmoid / robust / hinge / ipo; the implicit rewards
  options.validate();
  TORCH_CHECK(policy_chosen.sizes() == policy_rejected.sizes() && policy_chosen.sizes() == ref_chosen.sizes() &&
                  policy_chosen.sizes() == ref_rejected.sizes() && policy_chosen.dim() == 1,
              "dpo_loss: the four log-prob tensors must all be (P,), got ", policy_chosen.sizes(), ", ",
              policy_rejected.sizes(), ", ", ref_chosen.sizes(), ", ", ref_rejected.sizes());
  const bool ipo = options.loss_type == "ipo";
  if (ipo && (!chosen_tokens.defined() || !rejected_tokens.defined())) {
    throw std::invalid_argument("dpo_loss: loss_type ipo needs the completions' token counts");
  }
  auto zero = torch::zeros_like(policy_chosen);
  auto chosen_ratio = policy_chosen - (options.reference_free ? zero : ref_chosen);
  auto rejected_ratio = policy_rejected - (options.reference_free ? zero : ref_rejected);
  if (ipo) {
    chosen_ratio = chosen_ratio / chosen_tokens.clamp_min(1);
    rejected_ratio = rejected_ratio / rejected_tokens.clamp_min(1);
  }
  const auto h = chosen_ratio - rejected_ratio;
  const double beta = options.beta, eps = options.label_smoothing;
  const auto z = beta * h;
  torch::Tensor losses;
  if (options.loss_type == "sigmoid") {
    losses = -(1 - eps) * torch::log_sigmoid(z) - eps * torch::log_sigmoid(-z);
  } else if (options.loss_type == "robust") {
    losses = (-(1 - eps) * torch::log_sigmoid(z) + eps * torch::log_sigmoid(-z)) / (1 - 2 * eps);
  } else if (options.loss_type == "hinge") {
    losses = torch::relu(1 - z);
  } else {
    losses = (h - 1 / (2 * beta)).pow(2);
  }
  return {losses, (beta * (policy_chosen - ref_chosen)).detach(), (beta * (policy_rejected - ref_rejected)).detach()};
  // END SOLUTION
}

// Sequence log-probs of both halves of a preference batch in one forward pass of `model`:
// logits of the (2P, T) batch (with its attention mask as the padding mask), then chunk(2).
struct PairLogprobs {
  SequenceLogprobs chosen, rejected;  // each (P,)
};

inline PairLogprobs pair_logprobs(CausalLM& model, const PreferenceBatch& batch) {
  // logits = model(input_ids, 0, attention_mask); s = sequence_logprobs(logits, input_ids,
  // completion_mask); the first P rows are chosen, the last P rejected.
  // BEGIN SOLUTION: pair_logprobs(): one forward over [chosen; rejected], split in two
  const int64_t P = batch.num_pairs();
  auto logits = model(batch.input_ids, 0, batch.attention_mask);  // (2P, T, V)
  auto s = sequence_logprobs(logits, batch.input_ids, batch.completion_mask);
  return {{s.sum.narrow(0, 0, P), s.tokens.narrow(0, 0, P)}, {s.sum.narrow(0, P, P), s.tokens.narrow(0, P, P)}};
  // END SOLUTION
}

// A preference batch with the frozen reference's log-probs computed once (TRL's
// precompute_ref_log_probs): the reference model need not stay in memory during training.
struct DpoBatch {
  PreferenceBatch pairs;
  torch::Tensor ref_chosen, ref_rejected;  // (P,)
};

// The reference log-probs of `batch` under `reference`, in eval mode without gradients.
inline DpoBatch with_reference_logprobs(CausalLM& reference, PreferenceBatch batch) {
  // Under NoGradGuard, with the model in eval mode (restore its mode afterwards): r =
  // pair_logprobs(reference, batch); return {batch, r.chosen.sum, r.rejected.sum}.
  // BEGIN SOLUTION: with_reference_logprobs(): the reference's log-probs, once, without gradients
  torch::NoGradGuard no_grad;
  const bool was_training = reference->is_training();
  reference->eval();
  auto r = pair_logprobs(reference, batch);
  reference->train(was_training);
  return {std::move(batch), r.chosen.sum, r.rejected.sum};
  // END SOLUTION
}

// The lesson 10 trainer's loss_sum for DPO: the sum over the batch's pairs of their losses (the
// trainer divides by the number of pairs), and the sums of TRL's metrics over pairs:
//     rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
//     logps/chosen, logps/rejected
//
// RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization"; TRL's rpo_alpha) adds
// alpha times the negative log-likelihood of the chosen answers, the mean over the batch's chosen
// completion tokens (TRL's nll_loss). Why: the DPO loss only widens the gap between chosen and
// rejected, and it can do that by lowering both; on a small model the chosen answers' probability
// then falls with the rejected ones and the task accuracy with it ("likelihood displacement",
// Razin et al. 2024). The NLL term holds the chosen answers up. Each pair carries the batch's mean
// NLL, so after the trainer's division by P the step's loss is mean DPO loss + alpha * NLL.
inline LossSum dpo_loss_sum(CausalLM& policy, const DpoBatch& batch, const DpoOptions& options) {
  // 1. p = pair_logprobs(policy, batch.pairs).
  // 2. out = dpo_loss(p.chosen.sum, p.rejected.sum, batch.ref_chosen, batch.ref_rejected, options,
  //    p.chosen.tokens, p.rejected.tokens).
  // 3. Return {out.losses.sum(), metric sums}: accuracies counts chosen_reward > rejected_reward.
  // 4. With rpo_alpha > 0: nll = -sum(p.chosen.sum) / sum(p.chosen.tokens) (at least 1 token); add
  //    rpo_alpha * P * nll to the sum, and the metric "nll_loss" = P * nll (its mean is nll).
  // BEGIN SOLUTION: dpo_loss_sum(): the summed pair losses and TRL's reward metrics, for the trainer
  auto p = pair_logprobs(policy, batch.pairs);
  auto out = dpo_loss(p.chosen.sum, p.rejected.sum, batch.ref_chosen, batch.ref_rejected, options, p.chosen.tokens,
                      p.rejected.tokens);
  const auto c = out.chosen_rewards, r = out.rejected_rewards;
  LossSum result{out.losses.sum(),
                 {{"rewards/chosen", c.sum().item<double>()},
                  {"rewards/rejected", r.sum().item<double>()},
                  {"rewards/margins", (c - r).sum().item<double>()},
                  {"rewards/accuracies", (c > r).sum().item<double>()},
                  {"logps/chosen", p.chosen.sum.detach().sum().item<double>()},
                  {"logps/rejected", p.rejected.sum.detach().sum().item<double>()}}};
  if (options.rpo_alpha > 0) {
    const double P = static_cast<double>(batch.pairs.num_pairs());
    const auto nll = -p.chosen.sum.sum() / p.chosen.tokens.sum().to(torch::kFloat32).clamp_min(1);
    result.sum = result.sum + options.rpo_alpha * P * nll;
    result.metrics["nll_loss"] = P * nll.item<double>();
  }
  return result;
  // END SOLUTION
}

}  // namespace llm
