// Lesson 09, advanced: Bessel's correction, the gradients of the clipped GRPO and PPO losses (zero
// where a clip is active), the on-policy GRPO loss that is 0 while its gradient is not, the
// per-micro-batch aggregations through the trainer, GAE's terminal positions, a value head on tied
// embeddings, PPO's first epoch, and the errors that name the bad value.
// Grade with:  ctest --preset default -R lesson09.advanced
#include "rl_fixtures.h"

#include <llm/align/grpo.h>
#include <llm/align/ppo.h>
#include <llm/common/testing.h>
#include <llm/generate/generate.h>
#include <llm/model/causal_lm.h>
#include <llm/train/adamw.h>

#include <cmath>
#include <vector>

namespace {

using lesson09::Bools;
using lesson09::DirectLogprobs;
using lesson09::F32;
using lesson09::GroupRows;
using lesson09::kEnd;
using lesson09::MakeRollout;
using lesson09::MaskedSum;
using lesson09::RlTest;
using lesson09::Subset;
using lesson09::TinyConfig;
using lesson09::TrainerStep;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class GroupAdvantagesAdvanced : public RlTest {};
class CompletionMaskAdvanced : public RlTest {};
class GrpoTokenLossAdvanced : public RlTest {};
class GrpoTrainerAdvanced : public RlTest {};
class GaeAdvanced : public RlTest {};
class PpoRewardsAdvanced : public RlTest {};
class WhitenAdvanced : public RlTest {};
class PpoLossesAdvanced : public RlTest {};
class PolicyWithValueAdvanced : public RlTest {};
class PpoLossSumAdvanced : public RlTest {};

llm::GrpoOptions Grpo(const std::string& loss_type, double beta = 0.0) {
  llm::GrpoOptions o;
  o.loss_type = loss_type;
  o.beta = beta;
  return o;
}

// ------------------------------------------------------------------------------ group advantages

TEST_F(GroupAdvantagesAdvanced, TwoAnswersUseTheBesselCorrectedStd) {
  // Rewards (1, 0): the Bessel-corrected std is 0.7071068 (torch.std, TRL's nanstd), so
  // A = +-0.5 / 0.7072068 = +-0.7070; the population std 0.5 would give +-0.9998.
  auto a = llm::group_advantages(F32({1, 0, 3, 3}), 2);
  const double s = std::sqrt(0.5) + 1e-4;
  EXPECT_TRUE(AllClose(a, torch::tensor({0.5 / s, -0.5 / s, 0.0, 0.0}), 0, 1e-6));
}

TEST_F(GroupAdvantagesAdvanced, RejectsBadGroupsAndScalesNamingThem) {
  auto rewards = F32({1, 0, 0, 1, 0, 0, 0, 1});
  EXPECT_TRUE(ThrowsWith([&] { llm::group_advantages(rewards, 3); }, {"group size 3", "8"}))
      << "3 does not divide the 8 rewards";
  EXPECT_TRUE(ThrowsWith([&] { llm::group_advantages(rewards, 1); }, {"group size 1", ">= 2"}))
      << "a group of one has no baseline";
  EXPECT_TRUE(ThrowsWith([&] { llm::group_advantages(rewards, 4, "max"); }, {"'max'", "batch", "group", "none"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::group_advantages(rewards.view({2, 4}), 4);
      },
      {"[2, 4]"}))
      << "rewards are one number per completion";
}

// ------------------------------------------------------------------------------ completion mask

TEST_F(CompletionMaskAdvanced, AnEndAtTheLastPositionAndEndsInARow) {
  const int64_t E = kEnd;
  auto mask = llm::completion_mask_until_end(
      torch::tensor(std::vector<int64_t>{1, 3, 4, E, E, E, E, E}, torch::kLong).view({2, 4}), E);
  EXPECT_TRUE(torch::equal(mask.to(torch::kBool), Bools({1, 1, 1, 1, 1, 0, 0, 0}).view({2, 4})))
      << "an end in the last column is included; of several ends only the first is part of the answer";
  EXPECT_TRUE(ThrowsWith([] { llm::completion_mask_until_end(torch::zeros({5}, torch::kLong), 2); }, {"[5]"}));
}

// -------------------------------------------------------------------------------- token loss

TEST_F(GrpoTokenLossAdvanced, GradientIsMinusARatioInsideTheClipAndZeroWhereItIsActive) {
  // d l / d logp = -A r where the unclipped term wins the min, 0 where the clipped one does (the
  // clipped ratio is a constant there): the clip stops the update of tokens that already moved far.
  auto old_logp = torch::full({2, 5}, -1.3);
  auto logp = (old_logp + torch::log(F32({1.0f, 1.1f, 1.5f, 0.5f, 0.7f})).unsqueeze(0)).detach().requires_grad_();
  auto t = llm::grpo_token_loss(logp, old_logp, torch::Tensor(), F32({1, -2}), torch::ones({2, 5}, torch::kBool),
                                Grpo("dapo"));
  t.loss.sum().backward();
  ASSERT_TRUE(logp.grad().defined()) << "the loss must be differentiable in logp";
  EXPECT_TRUE(AllClose(logp.grad(), F32({-1, -1.1f, 0, -0.5f, -0.7f, 2, 2.2f, 3.0f, 0, 0}).view({2, 5}), 0, 1e-6))
      << "A = +1: ratio 1.5 clipped; A = -2: ratios 0.5 and 0.7 clipped";
}

TEST_F(GrpoTokenLossAdvanced, OnPolicyTheLossIsZeroButTheGradientIsNot) {
  // One pass per generation: old_logp = logp.detach(), so the ratio is 1 and each token's loss is
  // -A. With advantages centred in their group the aggregated loss is 0 at every step, while the
  // gradient -A / n per token is not (trl#2703): the printed loss says nothing, the reward does.
  auto logp = (torch::randn({2, 3}) - 2).requires_grad_();
  const float a = 0.7f;
  auto t = llm::grpo_token_loss(logp, logp.detach(), torch::Tensor(), F32({a, -a}), torch::ones({2, 3}, torch::kBool),
                                Grpo("dapo"));
  auto loss = llm::aggregate_grpo_loss(t.loss, torch::ones({2, 3}, torch::kBool), Grpo("dapo"));
  EXPECT_NEAR(loss.item<double>(), 0.0, 1e-7) << "the loss is 0 on-policy";
  loss.backward();
  ASSERT_TRUE(logp.grad().defined());
  EXPECT_TRUE(AllClose(logp.grad(), F32({-a / 6, -a / 6, -a / 6, a / 6, a / 6, a / 6}).view({2, 3}), 1e-5, 1e-7))
      << "... and its gradient is -A / 6 per token: up for the better answer, down for the worse";
}

TEST_F(GrpoTokenLossAdvanced, RejectsBadOptionsNamingThem) {
  auto logp = torch::zeros({2, 3}), mask = torch::ones({2, 3}, torch::kBool), adv = F32({1, -1});
  auto token_loss = [&](const llm::GrpoOptions& o, const torch::Tensor& ref = {}) {
    return [=] { llm::grpo_token_loss(logp, logp, ref, adv, mask, o); };
  };
  EXPECT_TRUE(ThrowsWith([&] { llm::aggregate_grpo_loss(logp, mask, Grpo("ppo")); }, {"'ppo'", "dapo", "dr_grpo"}));
  auto o = Grpo("dapo");
  o.epsilon_low = 1.0;
  EXPECT_TRUE(ThrowsWith(token_loss(o), {"epsilon_low", "1"})) << "a lower clip of 1 - 1 = 0";
  o = Grpo("dapo");
  o.epsilon_high = -0.1;
  EXPECT_TRUE(ThrowsWith(token_loss(o), {"epsilon_high", "-0.1"}));
  EXPECT_TRUE(ThrowsWith(token_loss(Grpo("dapo", -0.5)), {"beta", "-0.5"}));
  EXPECT_TRUE(ThrowsWith(token_loss(Grpo("dapo", 0.1)), {"beta", "0.1", "reference"}))
      << "a KL penalty needs the reference's log-probs";
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::grpo_token_loss(logp, logp, {}, adv, torch::ones({2, 4}, torch::kBool), Grpo("dapo"));
      },
      {"[2, 3]", "[2, 4]"}));
}

// --------------------------------------------------------------------------- GRPO with the trainer

TEST_F(GrpoTrainerAdvanced, PerMicroBatchAggregationsAverageTheMicroBatches) {
  // bnpo normalises inside each micro-batch; the trainer then averages the micro-batches (count 1
  // each, as TRL divides by gradient_accumulation_steps): (sum_a / 9 + sum_b / 4) / 2, which is not
  // the token mean over all 13 tokens. That difference is why dapo exists.
  llm::CausalLM model(TinyConfig());
  const auto options = Grpo("bnpo", /*beta=*/0.05);
  const auto rollout = MakeRollout(model, F32({1.0, -1.0, 0.5, -0.5}));
  const auto a = Subset(rollout, {0, 3}), b = Subset(rollout, {1, 2});
  const auto step = TrainerStep(model, {a, b}, options);
  EXPECT_EQ(step.result.count, 2) << "grpo_count: 1 per micro-batch for bnpo";
  const auto ha = lesson09::HandGrpoLoss(model, a, 0.05), hb = lesson09::HandGrpoLoss(model, b, 0.05);
  const double la = MaskedSum(ha.loss, a.completion_mask) / 9, lb = MaskedSum(hb.loss, b.completion_mask) / 4;
  EXPECT_NEAR(step.result.loss, (la + lb) / 2, 1e-5) << "the mean of the two micro-batches' bnpo losses";
  const double global = (MaskedSum(ha.loss, a.completion_mask) + MaskedSum(hb.loss, b.completion_mask)) / 13;
  EXPECT_GT(std::abs((la + lb) / 2 - global), 1e-3) << "the test's premise: it differs from the token mean";
  ASSERT_EQ(step.result.metrics.count("kl"), 1u);
  const double kl = (MaskedSum(ha.kl, a.completion_mask) / 9 + MaskedSum(hb.kl, b.completion_mask) / 4) / 2;
  EXPECT_NEAR(step.result.metrics.at("kl"), kl, 1e-5) << "each micro-batch's mean KL per token, averaged";
}

TEST_F(GrpoTrainerAdvanced, LossSumScoresThePolicyAtTheOptionsTemperature) {
  // Sampled at T = 0.7 and scored at 0.7, the policy is exactly the one that sampled: the ratio is 1
  // (nothing clipped) and the KL to an identical reference is 0. Scored at T = 1 instead, the same
  // rollout looks off-policy: a KL that is not 0 and a loss that differs.
  llm::CausalLM model(TinyConfig());
  const auto rows = GroupRows();
  llm::Rollout r;
  r.input_ids = rows.input_ids;
  r.attention_mask = rows.attention_mask;
  r.completion_mask = rows.completion_mask;
  {
    torch::NoGradGuard no_grad;
    r.old_logp = DirectLogprobs(model(rows.input_ids, 0, rows.attention_mask) / 0.7, rows.input_ids);
  }
  r.ref_logp = r.old_logp;
  r.advantages = F32({1.0, -1.0, 0.5, -0.5});
  auto options = Grpo("bnpo", /*beta=*/0.1);
  options.temperature = 0.7;
  const auto hot = llm::grpo_loss_sum(model, r, options);
  EXPECT_NEAR(hot.metrics.at("kl"), 0.0, 1e-6) << "policy and reference both at T = 0.7: no KL";
  EXPECT_EQ(hot.metrics.at("clip_ratio"), 0.0) << "ratio 1: nothing clipped";
  const auto m = rows.completion_mask.to(torch::kFloat32);
  const double expected = -(r.advantages.unsqueeze(1) * m).sum().item<double>() / m.sum().item<double>();
  EXPECT_NEAR(hot.sum.item<double>(), expected, 1e-5) << "bnpo on-policy: -sum(A m) / sum(m)";
  options.temperature = 1.0;
  const auto cold = llm::grpo_loss_sum(model, r, options);
  EXPECT_GT(cold.metrics.at("kl"), 1e-4) << "scored at T = 1, answers sampled at 0.7 look off-policy";
  options.temperature = -1.0;
  EXPECT_TRUE(ThrowsWith([&] { llm::grpo_loss_sum(model, r, options); }, {"temperature", "-1"}));
}

// ------------------------------------------------------------------------------------------- GAE

TEST_F(GaeAdvanced, PositionsOutsideTheMaskAreTerminalAndChangeNothing) {
  // S = 6: prompt at 0, completion at 1..3, padding at 4..5, all holding junk rewards and values.
  // gamma 0.9, lambda 0.8; the value after the last real token is 0:
  //   t = 3: delta = 1.0 - 0.5 = 0.5;                 A = 0.5
  //   t = 2: delta = -0.2 + 0.9 * 0.5 - 0.4 = -0.15;  A = -0.15 + 0.72 * 0.5 = 0.21
  //   t = 1: delta = 0.1 + 0.9 * 0.4 - 0.3 = 0.16;    A = 0.16 + 0.72 * 0.21 = 0.3112
  auto rewards = F32({9, 0.1f, -0.2f, 1.0f, 7, 7}).view({1, 6});
  auto values = F32({5, 0.3f, 0.4f, 0.5f, -8, 8}).view({1, 6});
  auto mask = Bools({0, 1, 1, 1, 0, 0}).view({1, 6});
  auto [A, R] = llm::gae(rewards, values, mask, 0.9, 0.8);
  EXPECT_TRUE(AllClose(A, F32({0, 0.3112f, 0.21f, 0.5f, 0, 0}).view({1, 6}), 0, 1e-6))
      << "the last real token bootstraps from 0, not from the junk value -8 after it";
  EXPECT_TRUE(AllClose(R, F32({0, 0.6112f, 0.61f, 1.0f, 0, 0}).view({1, 6}), 0, 1e-6));
  auto [A0, R0] = llm::gae(torch::where(mask, rewards, torch::zeros_like(rewards)),
                           torch::where(mask, values, torch::zeros_like(values)), mask, 0.9, 0.8);
  EXPECT_TRUE(AllClose(A, A0, 0, 0)) << "junk outside the mask changes nothing";
  EXPECT_TRUE(AllClose(R, R0, 0, 0));
}

// --------------------------------------------------------------------------------- PPO rewards

TEST_F(PpoRewardsAdvanced, RejectsARowWithoutCompletionAndAnUnknownEstimator) {
  auto logp = torch::zeros({2, 4}), scores = F32({1, 1});
  auto mask = Bools({0, 1, 1, 0, 0, 0, 0, 0}).view({2, 4});
  EXPECT_TRUE(ThrowsWith([&] { llm::ppo_rewards(logp, logp, scores, mask, 0.05); }, {"row 1"}))
      << "a row with no completion token has nowhere to put its score";
  EXPECT_TRUE(ThrowsWith([&] { llm::ppo_rewards(logp, logp, scores, mask.logical_or(mask.flip(0)), 0.05, "k2"); },
                         {"'k2'", "k1", "k3"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::ppo_rewards(logp, logp, F32({1, 1, 1}), mask, 0.05);
      },
      {"[3]"}))
      << "one score per row";
}

// ---------------------------------------------------------------------------------- whitening

TEST_F(WhitenAdvanced, NeedsAtLeastTwoEntriesAndMatchingShapes) {
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::masked_whiten(F32({1, 2, 3}), Bools({0, 1, 0}));
      },
      {"at least 2", "got 1"}))
      << "an unbiased variance of one number divides by 0";
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::masked_whiten(torch::zeros({2, 3}), torch::ones({3, 2}, torch::kBool));
      },
      {"[2, 3]", "[3, 2]"}));
}

// ---------------------------------------------------------------------------------- PPO losses

TEST_F(PpoLossesAdvanced, GradientIsZeroWhereAClipIsActive) {
  // basic.cpp's hand-worked example. Policy: tokens 0 and 1 are clipped (gradient 0); token 2 gets
  // -A r / 4 = -0.125, token 3 -(-2)(1.1) / 4 = 0.55. Values: token 0's clipped value wins (0);
  // the others (V - R) / 4 = -0.125, -0.225, 0.275, times vf_coef 0.1. Token 4 is masked.
  auto old_logp = F32({-1, -2, -1.5, -0.7, -1}).view({1, 5});
  auto logp = (old_logp + torch::log(F32({1.5, 0.5, 0.5, 1.1, 3.0})).view({1, 5})).detach().requires_grad_();
  auto values = F32({0.5, -0.5, 1.1, 0.1, 9}).view({1, 5}).requires_grad_();
  auto out =
      llm::ppo_losses(logp, values, old_logp, F32({0, 0, 1, 0, 0}).view({1, 5}), F32({1, -1, 1, -2, 5}).view({1, 5}),
                      F32({1, 0, 2, -1, 0}).view({1, 5}), Bools({1, 1, 1, 1, 0}).view({1, 5}), llm::PpoOptions{});
  out.loss.backward();
  ASSERT_TRUE(logp.grad().defined() && values.grad().defined());
  EXPECT_TRUE(AllClose(logp.grad(), F32({0, 0, -0.125f, 0.55f, 0}).view({1, 5}), 0, 1e-6)) << "d loss / d logp";
  EXPECT_TRUE(AllClose(values.grad(), F32({0, -0.0125f, -0.0225f, 0.0275f, 0}).view({1, 5}), 0, 1e-7))
      << "d loss / d V = vf_coef (V - R) / 4 where the unclipped value wins";
}

TEST_F(PpoLossesAdvanced, RejectsMismatchedShapesAndAnEmptyMask) {
  auto x = torch::zeros({1, 5});
  auto mask = torch::ones({1, 5}, torch::kBool);
  const llm::PpoOptions o;
  EXPECT_TRUE(ThrowsWith([&] { llm::ppo_losses(x, x, x, x, x, torch::zeros({1, 4}), mask, o); }, {"[1, 4]", "[1, 5]"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::ppo_losses(x, x, x, x, x, x, torch::zeros({1, 5}, torch::kBool), o);
      },
      {"no token"}));
}

// --------------------------------------------------------------------------------- value head

TEST_F(PolicyWithValueAdvanced, TiedEmbeddingsGiveTheCausalLMsLogitsAndTheHeadStartsNearZero) {
  llm::PolicyWithValue model{llm::CausalLM(TinyConfig(/*tied=*/true))};
  const auto rows = GroupRows();
  torch::NoGradGuard no_grad;
  auto [logits, values] = model(rows.input_ids, rows.attention_mask);
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(AllClose(logits, model->policy(rows.input_ids, 0, rows.attention_mask), 0, 1e-6))
      << "tie_word_embeddings: the output layer is the embedding matrix, as in CausalLM";
  EXPECT_EQ(model->v_head->bias.abs().max().item<double>(), 0.0) << "TRL's init: bias 0";
  EXPECT_LT(values.abs().max().item<double>(), 0.5) << "weights N(0, 0.02): values start near 0";
  EXPECT_GT(values.abs().max().item<double>(), 0.0) << "... but not all 0";
}

// ---------------------------------------------------------------------------------- PPO loss_sum

TEST_F(PpoLossSumAdvanced, FirstEpochIsMinusTheMeanAdvantagePlusTheValueError) {
  // On the rollout's own policy the ratio is 1 and V = V_old (no clip can act), so
  //   loss = -mean(A) + vf_coef 0.5 mean((V_old - R)^2)   over the completion tokens.
  llm::PolicyWithValue model{llm::CausalLM(TinyConfig())};
  const auto rows = GroupRows();
  const llm::PpoOptions options;
  llm::PpoRollout r{rows.input_ids, rows.attention_mask, rows.completion_mask, {}, {}, {}, {}};
  {
    torch::NoGradGuard no_grad;
    auto [logits, values] = model(rows.input_ids, rows.attention_mask);
    r.old_logp = DirectLogprobs(logits, rows.input_ids);
    r.old_values = values;
  }
  r.advantages = torch::randn(rows.input_ids.sizes());  // not whitened: pg is not 0 here
  r.returns = torch::randn(rows.input_ids.sizes());
  const auto m = rows.completion_mask;
  const double n = m.sum().item<double>();
  const double pg = -MaskedSum(r.advantages, m) / n;
  const double vf = 0.5 * MaskedSum((r.old_values - r.returns).pow(2), m) / n;
  const auto out = llm::ppo_loss_sum(model, r, options);
  ASSERT_EQ(out.sum.dim(), 0);
  EXPECT_NEAR(out.sum.item<double>(), pg + options.vf_coef * vf, 1e-5)
      << "log-probs and values of the ids aligned as in the rollout: position t from the state before it";
  for (const char* key : {"pg_loss", "vf_loss", "clipfrac", "vf_clipfrac", "approx_kl"}) {
    EXPECT_EQ(out.metrics.count(key), 1u) << "missing metric '" << key << "'";
  }
  EXPECT_NEAR(out.metrics.at("pg_loss"), pg, 1e-5);
  EXPECT_NEAR(out.metrics.at("vf_loss"), vf, 1e-5);
  EXPECT_EQ(out.metrics.at("clipfrac"), 0.0);
  EXPECT_NEAR(out.metrics.at("approx_kl"), 0.0, 1e-10);
}

TEST_F(PpoLossSumAdvanced, ScoresThePolicyAtTheOptionsTemperature) {
  // The rollout's log-probs were taken at T = 0.7 (TRL's PPO samples there and divides its logits
  // by the temperature when it scores them): at the same temperature the first epoch is on-policy.
  llm::PolicyWithValue model{llm::CausalLM(TinyConfig())};
  const auto rows = GroupRows();
  llm::PpoOptions options;
  options.temperature = 0.7;
  llm::PpoRollout r{rows.input_ids, rows.attention_mask, rows.completion_mask, {}, {}, {}, {}};
  {
    torch::NoGradGuard no_grad;
    auto [logits, values] = model(rows.input_ids, rows.attention_mask);
    r.old_logp = DirectLogprobs(logits / 0.7, rows.input_ids);
    r.old_values = values;
  }
  r.advantages = torch::randn(rows.input_ids.sizes());
  r.returns = torch::randn(rows.input_ids.sizes());
  const auto hot = llm::ppo_loss_sum(model, r, options);
  EXPECT_NEAR(hot.metrics.at("approx_kl"), 0.0, 1e-10) << "scored at the sampling temperature: ratio 1";
  EXPECT_EQ(hot.metrics.at("clipfrac"), 0.0);
  options.temperature = 1.0;
  EXPECT_GT(llm::ppo_loss_sum(model, r, options).metrics.at("approx_kl"), 1e-6)
      << "scored at T = 1, a rollout taken at 0.7 is off-policy";
}

}  // namespace

// ------------------------------------------------------------------------------- GRPO end to end

class GrpoBanditAdvanced : public lesson09::RlTest {};

// The whole recipe on a task a tiny model can learn in a few steps: after the prompt [1, 3], answer
// with token 5. Sample G answers per prompt with lesson 05's generate, reward 1 when the first
// answer token is 5, group advantages, one trainer step on grpo_loss_sum: the share of 5s sampled
// must rise. (A sign error, advantages paired with the wrong rows or log-probs one position off
// leave it where it started.)
TEST_F(GrpoBanditAdvanced, SampledAnswersLearnTheRewardedToken) {
  auto config = lesson09::TinyConfig();
  llm::CausalLM model(config);
  llm::AdamW adamw(lesson09::AllParams(*model, 1e-2), llm::AdamWOptions{0.9, 0.99, 1e-8});
  llm::Trainer trainer(adamw, lesson09::ConstantLr(1e-2, 1.0));
  const int64_t G = 16, target = 5;
  llm::GrpoOptions options;  // dapo, beta 0
  llm::GenerationConfig gen;
  gen.max_new_tokens = 2;
  gen.sampling.temperature = 1.0;
  gen.pad_id = lesson09::kPad;
  auto rng = at::make_generator<at::CPUGeneratorImpl>(7);
  auto share_of_target = [&](int64_t samples) {
    const auto out = llm::generate(model, std::vector<std::vector<int64_t>>(samples, {1, 3}), gen, rng);
    double hits = 0;
    for (const auto& c : out) hits += c[0] == target;
    return hits / samples;
  };
  const double before = share_of_target(256);
  for (int step = 0; step < 20; ++step) {
    const std::vector<std::vector<int64_t>> prompts(2 * G, {1, 3});
    const auto completions = llm::generate(model, prompts, gen, rng);  // (2G) x 2 tokens
    auto ids = torch::zeros({2 * G, 4}, torch::kLong);
    auto rewards = torch::zeros({2 * G});
    for (int64_t i = 0; i < 2 * G; ++i) {
      ids[i][0] = 1;
      ids[i][1] = 3;
      ids[i][2] = completions[i][0];
      ids[i][3] = completions[i][1];
      rewards[i] = completions[i][0] == target ? 1.0 : 0.0;
    }
    llm::Rollout r;
    r.input_ids = ids;
    r.attention_mask = torch::ones({2 * G, 4}, torch::kBool);
    r.completion_mask = torch::zeros({2 * G, 4}, torch::kBool);
    r.completion_mask.narrow(1, 2, 2).fill_(true);
    r.advantages = llm::group_advantages(rewards, G);
    {
      torch::NoGradGuard no_grad;
      r.old_logp = llm::rollout_logprobs(model, r.input_ids, r.attention_mask);
    }
    std::function<int64_t(const llm::Rollout&)> count = [&](const llm::Rollout& x) {
      return llm::grpo_count(x, options);
    };
    std::function<llm::LossSum(const llm::Rollout&)> loss_sum = [&](const llm::Rollout& x) {
      return llm::grpo_loss_sum(model, x, options);
    };
    trainer.step<llm::Rollout>({r}, count, loss_sum);
  }
  const double after = share_of_target(256);
  EXPECT_LT(before, 0.2) << "an untrained model picks token 5 about 1 time in 32";
  EXPECT_GT(after, before + 0.4) << "GRPO should teach the rewarded token: " << before << " -> " << after;
}
