// Lesson 09 - Proximal Policy Optimization for language models (Schulman et al. 2017; Ouyang et
// al. 2022), as TRL's PPOTrainer computes it (trl/experimental/ppo/ppo_trainer.py).
//
// Shapes: N sampled rows, S = prompt + completion positions (grpo.h's Rollout layout), C width.
//
// A completion is a sequence of actions (tokens). PPO needs, for every token, how much better it was
// than expected: the advantage. It learns the expectation with a value head V(s_t) on the policy's
// hidden states, and builds each token's reward from two parts:
//
//     r_t = -kl_coef * kl_t                         every completion token: stay near the reference
//         + score     on the last real token        the task's reward, once the answer is complete
//     kl_t = logp_t - ref_t            (k1)    or   (exp(ref_t - logp_t) - 1) - (ref_t - logp_t)   (k3, >= 0)
//
// TRL adds the score at the token *after* the end token (the first padding position: sequence_length
// + 1), a placement flagged as an off-by-one in trl#1893 and trl#3750; we put it on the last real
// token of the completion (its end token, or the last one sampled when it was cut), the convention of
// the "N+ implementation details of RLHF" study and of the fix proposed upstream. The value of that
// token then predicts the score it is paid, instead of a padding position that no loss sees.
//
// Generalised advantage estimation (Schulman et al. 2016), backwards over the completion:
//
//     delta_t = r_t + gamma V_{t+1} - V_t          V after the last real token = 0
//     A_t     = delta_t + gamma lambda A_{t+1}     returns R_t = A_t + V_t
//
// then the advantages are whitened over the valid tokens (mean 0, variance 1, the variance unbiased
// as TRL's masked_var). The losses, over valid tokens:
//
//     ratio   = exp(logp - old_logp)
//     pg      = mean( max(-A ratio, -A clip(ratio, 1 - c, 1 + c)) )
//     vf      = 0.5 mean( max((V - R)^2, (clip(V, V_old - c_v, V_old + c_v) - R)^2) )
//     loss    = pg + vf_coef * vf
//
// and one rollout is reused for several PPO epochs: the clip keeps the policy from moving far from
// the one that sampled, which is what makes the reuse safe.
//
// Alignment with the ids: log-probs and values are stored at the position of the token they are
// about. The token at position t is chosen from the state after ids[<t], so its log-prob comes from
// logits[t - 1] (rollout_logprobs) and its value from the value head at t - 1 (TRL's
// full_value[:, context_length - 1 : -1]).
#pragma once

#include <llm/align/grpo.h>
#include <llm/common/todo.h>
#include <llm/model/causal_lm.h>
#include <llm/train/trainer.h>

#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace llm {

// The policy and a value head on its final hidden states (TRL's AutoModelForCausalLMWithValueHead:
// one backbone, a Linear(C, 1) "v_head"). The head is initialised N(0, 0.02) with a zero bias (TRL's
// "normal" v_head_init_strategy with initializer_range 0.02), so values start near 0. TRL also puts
// a dropout (p = 0.1) before the head; we leave it out: the tiny models here need no regularisation
// and PPO's value targets are noisy enough.
//
// The head starts knowing nothing while the policy starts trained, and until it predicts the score
// the advantages are mostly its errors. TRL sidesteps this by starting the value model from a trained
// reward model; we have none, so `llm ppo` gives the head its own, larger learning rate (the
// optimizer's lr_scale, lesson 07) and first trains it alone for a few rollouts with the policy held
// still (verl's trainer.critic_warmup). Its explained_variance metric shows when it has caught up.
struct PolicyWithValueImpl : torch::nn::Module {
  explicit PolicyWithValueImpl(CausalLM policy_model) : policy(std::move(policy_model)) {
    register_module("policy", policy);
    v_head = register_module("v_head", torch::nn::Linear(policy->config.hidden_size, 1));
    torch::NoGradGuard no_grad;
    v_head->weight.normal_(0.0, 0.02);
    v_head->bias.zero_();
  }

  // ids (N, S), attention_mask (N, S) -> {logits (N, S, V) float32, values (N, S) float32}, values
  // aligned with the ids as the top of the file says: values[:, t] = v_head(h[:, t - 1]), 0 at t = 0.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& ids, const torch::Tensor& attention_mask) {
    // 1. h = policy->model(ids, 0, attention_mask)                                       (N, S, C)
    // 2. logits = lm_head(h), or linear_no_bias(h, embed_tokens.weight) when tied; as float32.
    // 3. v = v_head(h.float()).squeeze(-1)                                              (N, S)
    // 4. values = cat(zeros (N, 1), v[:, :-1]) along dim 1.
    // BEGIN SOLUTION: PolicyWithValue::forward(): one backbone pass, the LM head and the value head, values shifted to the token they judge
    auto h = policy->model(ids, 0, attention_mask);  // (N, S, C)
    auto logits = policy->config.tie_word_embeddings ? linear_no_bias(h, policy->model->embed_tokens->weight)
                                                     : policy->lm_head(h);
    auto v = v_head(h.to(torch::kFloat32)).squeeze(-1);  // (N, S)
    const int64_t S = ids.size(1);
    auto values = torch::cat({torch::zeros({ids.size(0), 1}, v.options()), v.narrow(1, 0, S - 1)}, 1);
    return {logits.to(torch::kFloat32), values};
    // END SOLUTION
  }

  CausalLM policy{nullptr};
  torch::nn::Linear v_head{nullptr};
};
TORCH_MODULE(PolicyWithValue);

// Per-token rewards (N, S): the KL penalty on every masked token plus the score (N,) on each row's
// last masked token. estimator "k1" or "k3" (TRL's kl_estimator, default k1).
inline torch::Tensor ppo_rewards(const torch::Tensor& logp, const torch::Tensor& ref_logp, const torch::Tensor& scores,
                                 const torch::Tensor& mask, double kl_coef, const std::string& estimator = "k1") {
  // 1. Check shapes ((N, S) x3, scores (N,)), estimator k1 or k3, and that every row has a masked
  //    token (name the row). The tests look for these words:
  //      "ppo_rewards: logp, ref_logp and mask must be (N, S) and scores (N,), got [2, 4], [2, 4], [2, 4], [3]"
  //      "ppo_rewards: kl estimator 'k2' is not one of: k1, k3"   (std::invalid_argument)
  //      "ppo_rewards: row 1 has no completion token"
  // 2. logr = ref_logp - logp; kl = -logr (k1) or (exp(logr) - 1) - logr (k3).
  // 3. rewards = where(mask, -kl_coef * kl, 0).
  // 4. last[n] = the index of row n's last true mask entry; rewards[n, last[n]] += scores[n].
  // BEGIN SOLUTION: ppo_rewards(): the per-token KL penalty, plus the score on the last real token
  TORCH_CHECK(logp.dim() == 2 && logp.sizes() == ref_logp.sizes() && logp.sizes() == mask.sizes() &&
                  scores.dim() == 1 && scores.size(0) == logp.size(0),
              "ppo_rewards: logp, ref_logp and mask must be (N, S) and scores (N,), got ", logp.sizes(), ", ",
              ref_logp.sizes(), ", ", mask.sizes(), ", ", scores.sizes());
  if (estimator != "k1" && estimator != "k3") {
    throw std::invalid_argument("ppo_rewards: kl estimator '" + estimator + "' is not one of: k1, k3");
  }
  const auto m = mask.to(torch::kBool);
  const auto counts = m.sum(1);
  for (int64_t n = 0; n < m.size(0); ++n) {
    TORCH_CHECK(counts[n].item<int64_t>() > 0, "ppo_rewards: row ", n, " has no completion token");
  }
  const auto logr = ref_logp - logp;
  const auto kl = estimator == "k1" ? -logr : (torch::exp(logr) - 1) - logr;
  auto rewards = torch::where(m, -kl_coef * kl, torch::zeros_like(kl)).detach().clone();
  const int64_t S = m.size(1);
  const auto positions = torch::arange(S, torch::kLong).expand_as(m);
  const auto last = torch::where(m, positions, torch::full_like(positions, -1)).amax(1);  // (N,)
  rewards.scatter_add_(1, last.unsqueeze(1), scores.to(rewards.dtype()).unsqueeze(1));
  return rewards;
  // END SOLUTION
}

// GAE over (N, S) rewards and values; positions outside the mask count as after the end (reward 0,
// value 0), so the last real token bootstraps from 0. Returns {advantages, returns}, zero outside
// the mask, not whitened.
inline std::pair<torch::Tensor, torch::Tensor> gae(const torch::Tensor& rewards, const torch::Tensor& values,
                                                   const torch::Tensor& mask, double gamma, double lam) {
  // 1. Check the shapes; r = where(mask, rewards, 0), v = where(mask, values, 0).
  // 2. last_gae = 0; for t = S - 1 down to 0:
  //      next_v = v[:, t + 1] (0 at t = S - 1); delta = r[:, t] + gamma next_v - v[:, t]
  //      last_gae = delta + gamma lam last_gae; A[:, t] = last_gae
  // 3. returns = A + v; both zeroed outside the mask.
  // BEGIN SOLUTION: gae(): deltas and the discounted sum of them, backwards over the positions
  TORCH_CHECK(rewards.dim() == 2 && rewards.sizes() == values.sizes() && rewards.sizes() == mask.sizes(),
              "gae: rewards, values and mask must all be (N, S), got ", rewards.sizes(), ", ", values.sizes(), ", ",
              mask.sizes());
  torch::NoGradGuard no_grad;
  const auto m = mask.to(torch::kBool);
  const auto r = torch::where(m, rewards, torch::zeros_like(rewards)).to(torch::kFloat32);
  const auto v = torch::where(m, values, torch::zeros_like(values)).to(torch::kFloat32);
  const int64_t S = r.size(1);
  std::vector<torch::Tensor> columns(S);
  auto last_gae = torch::zeros({r.size(0)}, r.options());
  for (int64_t t = S - 1; t >= 0; --t) {
    const auto next_v = t + 1 < S ? v.select(1, t + 1) : torch::zeros_like(last_gae);
    const auto delta = r.select(1, t) + gamma * next_v - v.select(1, t);
    last_gae = delta + gamma * lam * last_gae;
    columns[t] = last_gae;
  }
  auto advantages = torch::stack(columns, 1);
  auto returns = advantages + v;
  const auto zero = torch::zeros_like(advantages);
  return {torch::where(m, advantages, zero), torch::where(m, returns, zero)};
  // END SOLUTION
}

// (x - mean) / sqrt(var + 1e-8) over the masked entries, the variance unbiased (TRL's
// masked_whiten); 0 outside the mask.
inline torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask) {
  // x and mask of one shape, or name both: "masked_whiten: x [2, 3] and mask [3, 2] differ".
  // n = mask.sum() (at least 2, or name it: "masked_whiten: needs at least 2 masked entries, got 1");
  // mean = sum(x m) / n;
  // var = sum((x - mean)^2 m) / (n - 1); where(mask, (x - mean) * rsqrt(var + 1e-8), 0).
  // BEGIN SOLUTION: masked_whiten(): mean 0 and unbiased variance 1 over the masked entries
  TORCH_CHECK(x.sizes() == mask.sizes(), "masked_whiten: x ", x.sizes(), " and mask ", mask.sizes(), " differ");
  const auto m = mask.to(torch::kBool);
  const auto mf = m.to(x.dtype());
  const double n = mf.sum().item<double>();
  TORCH_CHECK(n >= 2, "masked_whiten: needs at least 2 masked entries, got ", n);
  const auto xs = torch::where(m, x, torch::zeros_like(x));
  const auto mean = xs.sum() / n;
  const auto var = ((xs - mean).pow(2) * mf).sum() / (n - 1);
  return torch::where(m, (x - mean) * torch::rsqrt(var + 1e-8), torch::zeros_like(x));
  // END SOLUTION
}

struct PpoOptions {
  double cliprange = 0.2;        // c
  double cliprange_value = 0.2;  // c_v
  double vf_coef = 0.1;
  double kl_coef = 0.05;
  std::string kl_estimator = "k1";
  double gamma = 1.0;
  double lam = 0.95;
  double temperature = 1.0;  // the sampling temperature, divided out of the logits (TRL's PPOConfig: 0.7)
};

struct PpoLosses {
  torch::Tensor loss, pg_loss, vf_loss;  // scalars
  double clipfrac = 0, vf_clipfrac = 0, approx_kl = 0;
};

// The PPO losses of one micro-batch over its masked tokens (see the top of the file). logp and
// values with gradient; old_logp, old_values, advantages (whitened) and returns from the rollout.
inline PpoLosses ppo_losses(const torch::Tensor& logp, const torch::Tensor& values, const torch::Tensor& old_logp,
                            const torch::Tensor& old_values, const torch::Tensor& advantages,
                            const torch::Tensor& returns, const torch::Tensor& mask, const PpoOptions& options) {
  // 1. Check every tensor is (N, S) like the mask, e.g. "ppo_losses: every tensor must be (N, S) like
  //    the mask [1, 5], got [1, 4]", and the mask has a true entry: "ppo_losses: the mask selects no token".
  // 2. masked_mean(x) = sum(where(mask, x, 0)) / mask.sum().
  // 3. ratio = exp(logp - old_logp); pg = masked_mean(max(-A ratio, -A clamp(ratio, 1 - c, 1 + c))).
  // 4. v_clipped = clamp(values, old_values - c_v, old_values + c_v);
  //    vf = 0.5 masked_mean(max((values - R)^2, (v_clipped - R)^2)).
  // 5. loss = pg + vf_coef vf; clipfrac = masked mean of (the clipped pg term was larger);
  //    vf_clipfrac likewise; approx_kl = 0.5 masked_mean((logp - old_logp)^2) (TRL's).
  // BEGIN SOLUTION: ppo_losses(): the clipped surrogate and the clipped value loss over the masked tokens
  for (const auto* t : {&logp, &values, &old_logp, &old_values, &advantages, &returns}) {
    TORCH_CHECK(t->sizes() == mask.sizes(), "ppo_losses: every tensor must be (N, S) like the mask ", mask.sizes(),
                ", got ", t->sizes());
  }
  const auto m = mask.to(torch::kBool);
  const auto n = m.sum().to(torch::kFloat32);
  TORCH_CHECK(n.item<double>() > 0, "ppo_losses: the mask selects no token");
  auto masked_mean = [&](const torch::Tensor& x) { return torch::where(m, x, torch::zeros_like(x)).sum() / n; };
  const auto log_ratio = logp - old_logp;
  const auto ratio = torch::exp(log_ratio);
  const auto pg1 = -advantages * ratio;
  const auto pg2 = -advantages * ratio.clamp(1 - options.cliprange, 1 + options.cliprange);
  const auto pg = masked_mean(torch::max(pg1, pg2));
  const auto v_clipped =
      torch::max(torch::min(values, old_values + options.cliprange_value), old_values - options.cliprange_value);
  const auto vf1 = (values - returns).pow(2), vf2 = (v_clipped - returns).pow(2);
  const auto vf = 0.5 * masked_mean(torch::max(vf1, vf2));
  PpoLosses out;
  out.pg_loss = pg;
  out.vf_loss = vf;
  out.loss = pg + options.vf_coef * vf;
  torch::NoGradGuard no_grad;
  out.clipfrac = masked_mean((pg2 > pg1).to(torch::kFloat32)).item<double>();
  out.vf_clipfrac = masked_mean((vf2 > vf1).to(torch::kFloat32)).item<double>();
  out.approx_kl = 0.5 * masked_mean(log_ratio.pow(2)).item<double>();
  return out;
  // END SOLUTION
}

// A rollout with what PPO adds to GRPO's: the values of the sampling policy, the advantages per
// token (whitened) and the returns.
struct PpoRollout {
  torch::Tensor input_ids, attention_mask, completion_mask;  // (N, S)
  torch::Tensor old_logp, old_values, advantages, returns;   // (N, S)
};

// The lesson 10 trainer's loss_sum for PPO: count 1 per micro-batch (the step's loss is the mean of
// the micro-batches' losses, as TRL's accelerator.accumulate gives), metrics pg_loss, vf_loss,
// clipfrac, vf_clipfrac, approx_kl.
inline LossSum ppo_loss_sum(PolicyWithValue& model, const PpoRollout& r, const PpoOptions& options) {
  // [logits, values] = model(input_ids, attention_mask);
  // logp = shifted_logprobs(logits, input_ids, options.temperature) (grpo.h); l = ppo_losses(...);
  // return {l.loss, metrics}.
  // BEGIN SOLUTION: ppo_loss_sum(): one forward of policy and value head, the PPO losses and their metrics
  auto [logits, values] = model(r.input_ids, r.attention_mask);
  auto logp = shifted_logprobs(logits, r.input_ids, options.temperature);
  auto l = ppo_losses(logp, values, r.old_logp, r.old_values, r.advantages, r.returns, r.completion_mask, options);
  return {l.loss,
          {{"pg_loss", l.pg_loss.item<double>()},
           {"vf_loss", l.vf_loss.item<double>()},
           {"clipfrac", l.clipfrac},
           {"vf_clipfrac", l.vf_clipfrac},
           {"approx_kl", l.approx_kl}}};
  // END SOLUTION
}

}  // namespace llm
