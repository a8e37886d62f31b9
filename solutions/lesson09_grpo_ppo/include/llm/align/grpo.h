// Lesson 09 - Group Relative Policy Optimization (DeepSeekMath, Shao et al. 2024), as TRL's
// GRPOTrainer computes it (trl/trainer/grpo_trainer.py, _compute_loss).
//
// Shapes: N = P prompts x G completions, laid out group by group (rows g*G .. g*G + G - 1 answer
// prompt g); T completion positions.
//
// PPO (ppo.h) needs a value network to tell a good action from a lucky one. GRPO drops it: sample G
// answers to the same prompt, score each with the reward R_i, and use the group as the baseline,
//
//     A_i = (R_i - mean(R_group)) / (std(R_group) + 1e-4)          the same A_i for every token of answer i
//
// (std Bessel-corrected, as torch.std and TRL's nanstd; scale_rewards "batch" divides by the std of
// the whole batch instead, "none" not at all: Dr. GRPO argues the division favours easy and hard
// prompts). A group whose answers all score alike has A = 0: nothing to learn from it.
//
// The per-token loss is PPO's clipped surrogate plus an optional KL penalty to a frozen reference,
//
//     r_t  = exp(logp_t - old_logp_t)                       1 on the first pass (old = logp, detached)
//     l_t  = -min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A)  +  beta k3_t
//     k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1     Schulman's k3 estimate of KL(pi || pi_ref): >= 0, unbiased
//
// and the token losses become one number by one of four aggregations (m = the completion mask):
//     grpo     mean over sequences of (sum_t l m / sum_t m)          DeepSeekMath: long answers weigh less per token
//     bnpo     sum l m / sum m over the micro-batch                  every token weighs the same
//     dr_grpo  sum l m / (N * max_completion_length)                 Dr. GRPO: a constant, no length bias
//     dapo     sum l m / num_items_in_batch                          tokens of the whole generation batch
//                                                                   (all micro-batches, all ranks): TRL's default
// With one pass per generation (TRL's num_iterations = 1) the ratio is 1 and the loss printed is
// ~0 at every step while the gradient is not (trl#2703): expected, not a bug.
//
// Completions are cut after the first end token: the mask covers the answer up to and including
// <|end|>, and everything sampled after it is masked.
#pragma once

#include <llm/align/dpo.h>
#include <llm/common/todo.h>

#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>

namespace llm {

// Group-normalised advantages: rewards (N,) in groups of G consecutive rows -> (N,).
//   scale "group": (r - group mean) / (group std + 1e-4); "batch": / (batch std + 1e-4); "none": r - group mean.
inline torch::Tensor group_advantages(const torch::Tensor& rewards, int64_t group_size,
                                      const std::string& scale = "group") {
  // 1. Check rewards is 1-D, group_size >= 2 and divides N (name N and G), scale is one of group,
  //    batch, none. The tests look for these words:
  //      "group_advantages: rewards must be (N,), got [2, 4]"
  //      "group_advantages: group size 3 must be >= 2 and divide the 8 rewards"
  //      "group_advantages: scale 'max' is not one of: batch, group, none"   (std::invalid_argument)
  // 2. grouped = rewards.view(N / G, G); mean = grouped.mean(1), std = grouped.std(1) (Bessel).
  // 3. centred = (grouped - mean[:, None]).view(N); divide by std (per group, repeated G times) or by
  //    rewards.std() + 1e-4, or not at all.
  // BEGIN SOLUTION: group_advantages(): reward minus its group's mean, over the group's (or batch's) std + 1e-4
  TORCH_CHECK(rewards.dim() == 1, "group_advantages: rewards must be (N,), got ", rewards.sizes());
  const int64_t N = rewards.size(0), G = group_size;
  TORCH_CHECK(G >= 2 && N % G == 0, "group_advantages: group size ", G, " must be >= 2 and divide the ", N, " rewards");
  if (scale != "group" && scale != "batch" && scale != "none") {
    throw std::invalid_argument("group_advantages: scale '" + scale + "' is not one of: batch, group, none");
  }
  auto r = rewards.to(torch::kFloat32);
  auto grouped = r.view({N / G, G});
  auto centred = (grouped - grouped.mean(1, true)).view({N});
  if (scale == "group")
    return centred / (grouped.std(1, /*unbiased=*/true, /*keepdim=*/false).repeat_interleave(G) + 1e-4);
  if (scale == "batch") return centred / (r.std() + 1e-4);
  return centred;
  // END SOLUTION
}

// The completion mask of sampled tokens (N, T): true up to and including the first `end_id` of
// each row, false after it (a row without it is true everywhere: a truncated answer).
inline torch::Tensor completion_mask_until_end(const torch::Tensor& completions, int64_t end_id) {
  // Check completions is 2-D, naming its shape, e.g. "completion_mask_until_end: completions must be
  // (N, T), got [5]". is_end = completions == end_id; ends_before[t] = number of ends at positions < t
  // (cumsum(is_end) - is_end); mask = ends_before == 0.
  // BEGIN SOLUTION: completion_mask_until_end(): every token up to and including the first end token
  TORCH_CHECK(completions.dim() == 2, "completion_mask_until_end: completions must be (N, T), got ",
              completions.sizes());
  auto is_end = completions.eq(end_id).to(torch::kLong);
  return (is_end.cumsum(1) - is_end).eq(0);
  // END SOLUTION
}

struct GrpoOptions {
  double epsilon_low = 0.2;           // TRL's epsilon
  double epsilon_high = 0.2;          // TRL's epsilon_high (DAPO suggests 0.28)
  double beta = 0.0;                  // KL weight; TRL's default 0 needs no reference model
  std::string loss_type = "dapo";     // grpo, bnpo, dr_grpo, dapo
  int64_t max_completion_length = 0;  // dr_grpo's constant (0: the mask's width T)
  double temperature = 1.0;           // the sampling temperature: logits are divided by it when scored

  void validate() const {
    static const std::set<std::string> kTypes = {"grpo", "bnpo", "dr_grpo", "dapo"};
    if (!kTypes.count(loss_type)) {
      throw std::invalid_argument("grpo loss_type '" + loss_type + "' is not one of: bnpo, dapo, dr_grpo, grpo");
    }
    if (!(epsilon_low >= 0 && epsilon_low < 1 && epsilon_high >= 0)) {
      throw std::invalid_argument("grpo epsilon_low must be in [0, 1) and epsilon_high >= 0, got " +
                                  std::to_string(epsilon_low) + " and " + std::to_string(epsilon_high));
    }
    if (!(beta >= 0)) throw std::invalid_argument("grpo beta must be >= 0, got " + std::to_string(beta));
    if (!(temperature > 0)) {
      throw std::invalid_argument("grpo temperature must be > 0, got " + std::to_string(temperature));
    }
  }
};

struct GrpoTokenLoss {
  torch::Tensor loss;     // (N, T) l_t, zero where masked
  torch::Tensor kl;       // (N, T) k3_t (zeros when there is no reference)
  torch::Tensor clipped;  // (N, T) bool: the clip was active (the gradient of that token is 0)
};

// Per-token GRPO losses. logp, old_logp, ref_logp: (N, T) log-probs of the sampled tokens under
// the policy (with gradient), the policy that sampled them, and the reference (undefined when
// beta = 0); advantages (N,); mask (N, T).
inline GrpoTokenLoss grpo_token_loss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                                     const torch::Tensor& ref_logp, const torch::Tensor& advantages,
                                     const torch::Tensor& mask, const GrpoOptions& options) {
  // 1. options.validate(); check the shapes, naming all four, e.g. "grpo_token_loss: logp, old_logp
  //    and mask must be (N, T) and advantages (N,), got [2, 3], [2, 3], [2, 4], [2]"; beta > 0 needs
  //    ref_logp of the same shape, e.g. "grpo_token_loss: beta 0.1 needs the reference log-probs, (N, T)".
  // 2. ratio = exp(logp - old_logp); clipped_ratio = clamp(ratio, 1 - eps_low, 1 + eps_high);
  //    A = advantages[:, None]; l = -min(ratio A, clipped_ratio A).
  // 3. With beta > 0: d = ref_logp - logp; kl = exp(d) - d - 1; l += beta kl.
  // 4. clipped = (ratio < 1 - eps_low and A < 0) or (ratio > 1 + eps_high and A > 0): where the
  //    clipped term won the min (TRL's clip_ratio metrics).
  // 5. Zero l and kl where the mask is false (where, not multiply).
  // BEGIN SOLUTION: grpo_token_loss(): clipped ratio times the advantage, plus beta times the k3 KL estimate
  options.validate();
  TORCH_CHECK(logp.dim() == 2 && logp.sizes() == old_logp.sizes() && logp.sizes() == mask.sizes() &&
                  advantages.dim() == 1 && advantages.size(0) == logp.size(0),
              "grpo_token_loss: logp, old_logp and mask must be (N, T) and advantages (N,), got ", logp.sizes(), ", ",
              old_logp.sizes(), ", ", mask.sizes(), ", ", advantages.sizes());
  TORCH_CHECK(options.beta == 0 || (ref_logp.defined() && ref_logp.sizes() == logp.sizes()), "grpo_token_loss: beta ",
              options.beta, " needs the reference log-probs, (N, T)");
  const auto ratio = torch::exp(logp - old_logp);
  const auto clipped_ratio = ratio.clamp(1 - options.epsilon_low, 1 + options.epsilon_high);
  const auto A = advantages.to(torch::kFloat32).unsqueeze(1);
  auto loss = -torch::min(ratio * A, clipped_ratio * A);
  auto kl = torch::zeros_like(logp);
  if (options.beta > 0) {
    const auto d = ref_logp - logp;
    kl = torch::exp(d) - d - 1;
    loss = loss + options.beta * kl;
  }
  const auto clipped = ((ratio < 1 - options.epsilon_low) & (A < 0)) | ((ratio > 1 + options.epsilon_high) & (A > 0));
  const auto m = mask.to(torch::kBool);
  return {torch::where(m, loss, torch::zeros_like(loss)), torch::where(m, kl, torch::zeros_like(kl)).detach(),
          clipped & m};
  // END SOLUTION
}

// The token losses (N, T) as one number, by options.loss_type (see the top of the file).
// num_items_in_batch: dapo's denominator, the mask's sum over the whole generation batch
// (every micro-batch and rank); 0 means this micro-batch's own sum.
inline torch::Tensor aggregate_grpo_loss(const torch::Tensor& token_loss, const torch::Tensor& mask,
                                         const GrpoOptions& options, double num_items_in_batch = 0) {
  // options.validate() first (an unknown loss_type is its error); check token_loss and mask are both
  // (N, T), naming their shapes. m = mask as float.
  //   grpo:    ((l m).sum(1) / m.sum(1).clamp_min(1)).mean()
  //   bnpo:    (l m).sum() / max(1, m.sum())
  //   dr_grpo: (l m).sum() / (N * L), L = max_completion_length or T
  //   dapo:    (l m).sum() / (num_items_in_batch > 0 ? num_items_in_batch : max(1, m.sum()))
  // BEGIN SOLUTION: aggregate_grpo_loss(): grpo, bnpo, dr_grpo and dapo normalisations
  options.validate();
  TORCH_CHECK(token_loss.sizes() == mask.sizes() && token_loss.dim() == 2,
              "aggregate_grpo_loss: token_loss and mask must both be (N, T), got ", token_loss.sizes(), " and ",
              mask.sizes());
  const auto m = mask.to(torch::kFloat32);
  const auto total = (token_loss * m).sum();
  if (options.loss_type == "grpo") return ((token_loss * m).sum(1) / m.sum(1).clamp_min(1)).mean();
  if (options.loss_type == "bnpo") return total / m.sum().clamp_min(1);
  if (options.loss_type == "dr_grpo") {
    const int64_t L = options.max_completion_length > 0 ? options.max_completion_length : mask.size(1);
    return total / static_cast<double>(mask.size(0) * L);
  }
  if (num_items_in_batch > 0) return total / num_items_in_batch;
  return total / m.sum().clamp_min(1);
  // END SOLUTION
}

// A group of sampled answers ready for the loss: prompt and completion in one row.
//   input_ids (N, S)  left-padded prompt, then the completion, right-padded   S = P_max + T
//   attention (N, S)  true on real prompt tokens and on completion tokens up to the end token
//   completion_mask (N, S)  true on completion tokens up to and including the end token
struct Rollout {
  torch::Tensor input_ids, attention_mask, completion_mask;
  torch::Tensor old_logp;    // (N, S) log-probs of the policy that sampled (zeros outside the completion)
  torch::Tensor ref_logp;    // (N, S) the reference's, or undefined
  torch::Tensor advantages;  // (N,)
};

// Log-probs of every row's tokens from the model's logits, aligned with input_ids:
//   out[:, t] = log softmax(logits[:, t-1] / temperature)[ids[t]]   for t >= 1,   out[:, 0] = 0
// logits (N, S, V) from one forward over ids (N, S); out (N, S) float32.
//
// Position t-1 predicts token t, so the logits drop their last column and the ids their first;
// the zero column in front keeps out[:, t] on the same index as ids[:, t], so a completion mask
// over the ids selects its log-probs directly.
//
// The distribution is the one the answers were sampled from: softmax(logits / temperature), as
// TRL's _get_per_token_logps divides by its temperature. Scored at T = 1 instead, an answer sampled
// at T = 0.7 has a ratio and a KL measured against a policy that never produced it.
inline torch::Tensor shifted_logprobs(const torch::Tensor& logits, const torch::Tensor& input_ids,
                                      double temperature = 1.0) {
  // temperature > 0, or name it, e.g. "shifted_logprobs: temperature must be > 0, got -1";
  // scaled = logits / temperature;
  // per = token_logprobs(scaled[:, :-1], ids[:, 1:])   (N, S-1); prepend a column of zeros.
  // BEGIN SOLUTION: shifted_logprobs(): next-token log-probs at the sampling temperature, aligned with the ids
  TORCH_CHECK(temperature > 0, "shifted_logprobs: temperature must be > 0, got ", temperature);
  const int64_t S = input_ids.size(1);
  auto scaled = temperature == 1.0 ? logits : logits / temperature;
  auto per = token_logprobs(scaled.narrow(1, 0, S - 1), input_ids.narrow(1, 1, S - 1));
  return torch::cat({torch::zeros({input_ids.size(0), 1}, per.options()), per}, 1);
  // END SOLUTION
}

// The same for whole rows under `model`: one forward, then shifted_logprobs. (N, S) float32.
inline torch::Tensor rollout_logprobs(CausalLM& model, const torch::Tensor& input_ids,
                                      const torch::Tensor& attention_mask, double temperature = 1.0) {
  // return shifted_logprobs(model(input_ids, 0, attention_mask), input_ids, temperature).
  // BEGIN SOLUTION: rollout_logprobs(): one forward, then shifted_logprobs
  return shifted_logprobs(model(input_ids, 0, attention_mask), input_ids, temperature);
  // END SOLUTION
}

// GRPO on the lesson 10 trainer. The trainer divides the summed loss_sum of a step's micro-batches
// by the summed count, so the aggregation decides what a micro-batch reports:
//   dapo:   count = its completion tokens, loss_sum = sum l m. The trainer's N is then the token
//           count of the whole generation batch, over every micro-batch and rank: exactly dapo's
//           num_items_in_batch, with nothing extra to compute (the same token normalisation as
//           gradient accumulation in lesson 10).
//   others: count = 1, loss_sum = the micro-batch's aggregated loss, so the step's loss is their mean
//           over micro-batches (TRL divides by gradient_accumulation_steps).
inline int64_t grpo_count(const Rollout& r, const GrpoOptions& options) {
  // BEGIN SOLUTION: grpo_count(): completion tokens for dapo, 1 for the per-micro-batch aggregations
  return options.loss_type == "dapo" ? r.completion_mask.sum().item<int64_t>() : 1;
  // END SOLUTION
}

// The loss (see grpo_count) and the metric sums kl and clip_ratio, on the same scale: divided by
// the trainer's N they are the mean KL and clipped fraction per completion token.
inline LossSum grpo_loss_sum(CausalLM& policy, const Rollout& r, const GrpoOptions& options) {
  // 1. logp = rollout_logprobs(policy, r.input_ids, r.attention_mask, options.temperature).
  // 2. t = grpo_token_loss(logp, r.old_logp, r.ref_logp, r.advantages, r.completion_mask, options).
  // 3. dapo: loss = (t.loss * m).sum(), metrics kl = t.kl.sum(), clip_ratio = t.clipped.sum().
  //    Otherwise: loss = aggregate_grpo_loss(t.loss, mask, options), metrics divided by the
  //    micro-batch's token count (at least 1).
  // BEGIN SOLUTION: grpo_loss_sum(): the policy's log-probs, the token losses, their aggregation, the metrics
  auto logp = rollout_logprobs(policy, r.input_ids, r.attention_mask, options.temperature);
  auto t = grpo_token_loss(logp, r.old_logp, r.ref_logp, r.advantages, r.completion_mask, options);
  const double kl = t.kl.sum().item<double>(), clipped = t.clipped.sum().item<double>();
  if (options.loss_type == "dapo") {
    return {(t.loss * r.completion_mask.to(torch::kFloat32)).sum(), {{"kl", kl}, {"clip_ratio", clipped}}};
  }
  const double tokens = std::max(1.0, r.completion_mask.sum().item<double>());
  return {aggregate_grpo_loss(t.loss, r.completion_mask, options),
          {{"kl", kl / tokens}, {"clip_ratio", clipped / tokens}}};
  // END SOLUTION
}

}  // namespace llm
