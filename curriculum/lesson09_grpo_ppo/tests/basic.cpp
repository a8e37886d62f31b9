// Lesson 09, basic: GRPO's group advantages on golden values from the formula, the completion
// mask, the clipped per-token loss with the k3 KL, the four aggregations on one worked example,
// log-probs aligned with the ids, and dapo through the trainer equal to one big batch; PPO's GAE
// golden and a hand loop, the per-token rewards with the score on the last real token, whitening,
// the clipped policy and value losses, the value head's alignment, and PPO epochs that lower the loss.
// Grade with:  ctest --preset default -R lesson09.basic
#include "rl_fixtures.h"

#include <llm/align/grpo.h>
#include <llm/align/ppo.h>
#include <llm/common/testing.h>
#include <llm/model/causal_lm.h>
#include <llm/train/adamw.h>
#include <llm/train/trainer.h>

#include <cmath>
#include <functional>
#include <vector>

namespace {

using lesson09::Bools;
using lesson09::DirectLogprobs;
using lesson09::F32;
using lesson09::GroupRows;
using lesson09::kEnd;
using lesson09::MakeRollout;
using lesson09::RlTest;
using lesson09::Subset;
using lesson09::TinyConfig;
using lesson09::TrainerStep;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class GroupAdvantagesTest : public RlTest {};
class CompletionMaskTest : public RlTest {};
class GrpoTokenLossTest : public RlTest {};
class GrpoAggregationTest : public RlTest {};
class RolloutLogprobsTest : public RlTest {};
class GrpoTrainerTest : public RlTest {};
class GaeTest : public RlTest {};
class PpoRewardsTest : public RlTest {};
class WhitenTest : public RlTest {};
class PpoLossesTest : public RlTest {};
class PolicyWithValueTest : public RlTest {};
class PpoTrainTest : public RlTest {};

llm::GrpoOptions Grpo(const std::string& loss_type, double beta = 0.0, double eps_low = 0.2, double eps_high = 0.2) {
  llm::GrpoOptions o;
  o.loss_type = loss_type;
  o.beta = beta;
  o.epsilon_low = eps_low;
  o.epsilon_high = eps_high;
  return o;
}

// logp and old_logp whose ratio exp(logp - old_logp) is `ratios` in every row.
std::pair<torch::Tensor, torch::Tensor> WithRatios(const std::vector<float>& ratios, int64_t rows) {
  auto old_logp = -1.3 - torch::rand({rows, static_cast<int64_t>(ratios.size())});
  auto logp = old_logp + torch::log(F32(ratios)).unsqueeze(0);
  return {logp, old_logp};
}

// ------------------------------------------------------------------------------ group advantages

TEST_F(GroupAdvantagesTest, GivesTheGoldenValuesForGroupsOfFour) {
  // From the formula: [1, 0, 0, 1] has std 0.57735 (Bessel) -> +-0.8658754; [0, 0, 0, 1] has std 0.5
  // -> (-0.25, -0.25, -0.25, 0.75) / 0.5001 = (-0.4999, -0.4999, -0.4999, 1.4997).
  auto a = llm::group_advantages(F32({1, 0, 0, 1, 0, 0, 0, 1}), /*group_size=*/4);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{8}));
  EXPECT_EQ(a.scalar_type(), torch::kFloat32);
  const double s1 = std::sqrt(1.0 / 3.0) + 1e-4, s2 = 0.5 + 1e-4;
  EXPECT_TRUE(AllClose(a.narrow(0, 0, 4), F32({0.8658754f, -0.8658754f, -0.8658754f, 0.8658754f}), 0, 1e-6))
      << "group 0: (r - 0.5) / (0.57735 + 1e-4)";
  EXPECT_TRUE(AllClose(a.narrow(0, 4, 4), F32({-0.4999f, -0.4999f, -0.4999f, 1.4997f}), 0, 1e-4))
      << "group 1, to 4 digits";
  EXPECT_TRUE(AllClose(
      a, torch::tensor({0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1, -0.25 / s2, -0.25 / s2, -0.25 / s2, 0.75 / s2}), 0,
      1e-6))
      << "each group has its own mean and its own std";
}

TEST_F(GroupAdvantagesTest, AGroupWhoseAnswersScoreAlikeHasZeroAdvantage) {
  auto a = llm::group_advantages(F32({0.5, 0.5, 0.5, 0.5, 1, 0, 1, 0}), 4);
  EXPECT_TRUE(AllClose(a.narrow(0, 0, 4), torch::zeros({4}), 0, 0))
      << "std 0: 0 / (0 + 1e-4) = 0, no signal (TRL logs the fraction of such groups, frac_reward_zero_std)";
  EXPECT_GT(a[4].item<double>(), 0.8) << "the other group still learns";
}

TEST_F(GroupAdvantagesTest, BatchScaleDividesByTheBatchStdAndNoneDoesNotDivide) {
  // The mean stays per group; "batch" divides by the std of all 8 rewards, sqrt(1.875 / 7) = 0.5175492.
  auto rewards = F32({1, 0, 0, 1, 0, 0, 0, 1});
  auto centred = torch::tensor({0.5, -0.5, -0.5, 0.5, -0.25, -0.25, -0.25, 0.75});
  const double batch_std = std::sqrt(1.875 / 7.0);
  EXPECT_TRUE(AllClose(llm::group_advantages(rewards, 4, "batch"), centred / (batch_std + 1e-4), 0, 1e-6))
      << "scale_rewards batch";
  EXPECT_TRUE(AllClose(llm::group_advantages(rewards, 4, "none"), centred, 0, 1e-7))
      << "scale_rewards none (Dr. GRPO): the reward minus its group's mean";
}

// ------------------------------------------------------------------------------ completion mask

TEST_F(CompletionMaskTest, CoversEverythingUpToAndIncludingTheFirstEnd) {
  const int64_t E = kEnd;
  auto completions = torch::tensor(std::vector<int64_t>{5, 3, E, 7, E, 9,  //
                                                        E, 4, 4, 4, 4, 4,  //
                                                        1, 3, 3, 4, 5, 6},
                                   torch::kLong)
                         .view({3, 6});
  auto mask = llm::completion_mask_until_end(completions, E);
  ASSERT_EQ(mask.sizes(), completions.sizes());
  EXPECT_TRUE(torch::equal(mask.to(torch::kBool), Bools({1, 1, 1, 0, 0, 0,  //
                                                         1, 0, 0, 0, 0, 0,  //
                                                         1, 1, 1, 1, 1, 1})
                                                      .view({3, 6})))
      << "row 0: the first end is part of the answer, the second end and the 9 after it are not; row 1: only the "
         "end; row 2: no end token, a truncated answer, all of it counts";
}

// -------------------------------------------------------------------------------- token loss

TEST_F(GrpoTokenLossTest, TakesThePessimisticSideOfTheClip) {
  // eps 0.2, ratios (1, 1.1, 1.5, 0.5, 0.7), l = -min(r A, clip(r, 0.8, 1.2) A):
  //   A = +1:  (-1, -1.1, -1.2, -0.5, -0.7)    r = 1.5 clipped to 1.2; r = 0.5 keeps its own, smaller, value
  //   A = -2:  (2, 2.2, 3.0, 1.6, 1.6)         r = 1.5 keeps 3.0; r = 0.5 and 0.7 clipped to 0.8
  auto [logp, old_logp] = WithRatios({1.0f, 1.1f, 1.5f, 0.5f, 0.7f}, 2);
  auto t = llm::grpo_token_loss(logp, old_logp, torch::Tensor(), F32({1, -2}), torch::ones({2, 5}, torch::kBool),
                                Grpo("dapo"));
  ASSERT_EQ(t.loss.sizes(), (std::vector<int64_t>{2, 5}));
  // exp(log r) rounds r by ~1e-7.
  EXPECT_TRUE(AllClose(t.loss, F32({-1, -1.1f, -1.2f, -0.5f, -0.7f, 2, 2.2f, 3.0f, 1.6f, 1.6f}).view({2, 5}), 0, 1e-6));
  EXPECT_TRUE(torch::equal(t.clipped.to(torch::kBool), Bools({0, 0, 1, 0, 0, 0, 0, 0, 1, 1}).view({2, 5})))
      << "clipped where the clipped term won the min: r > 1 + eps with A > 0, r < 1 - eps with A < 0";
  ASSERT_TRUE(t.kl.defined());
  EXPECT_TRUE(AllClose(t.kl, torch::zeros({2, 5}), 0, 0)) << "beta 0: no KL term";
}

TEST_F(GrpoTokenLossTest, EpsilonHighWidensOnlyTheUpperClip) {
  // eps_low 0.2, eps_high 0.28 (DAPO's clip-higher): the range is [0.8, 1.28].
  auto [logp, old_logp] = WithRatios({1.25f, 1.5f, 0.75f}, 2);
  auto t = llm::grpo_token_loss(logp, old_logp, torch::Tensor(), F32({1, -1}), torch::ones({2, 3}, torch::kBool),
                                Grpo("dapo", 0.0, 0.2, 0.28));
  EXPECT_TRUE(AllClose(t.loss, F32({-1.25f, -1.28f, -0.75f, 1.25f, 1.5f, 0.8f}).view({2, 3}), 0, 1e-6))
      << "A > 0: 1.25 is inside [0.8, 1.28], 1.5 clipped to 1.28; A < 0: the lower clip is still 0.8";
  EXPECT_TRUE(torch::equal(t.clipped.to(torch::kBool), Bools({0, 1, 0, 0, 0, 1}).view({2, 3})));
}

TEST_F(GrpoTokenLossTest, AddsBetaTimesTheK3EstimateOfTheKl) {
  // On-policy (ratio 1), A = 0.5, beta 0.1, d = ref - logp: l = -0.5 + 0.1 (exp(d) - d - 1).
  const std::vector<double> d = {-2, -0.5, 0, 0.3, 1.5};
  auto logp = torch::full({1, 5}, -1.7);
  auto ref = logp + torch::tensor(d).to(torch::kFloat32).unsqueeze(0);
  auto t = llm::grpo_token_loss(logp, logp.clone(), ref, F32({0.5}), torch::ones({1, 5}, torch::kBool),
                                Grpo("dapo", /*beta=*/0.1));
  std::vector<double> kl;
  for (double x : d) kl.push_back(std::exp(x) - x - 1);  // 1.1353, 0.1065, 0, 0.0499, 1.9817
  EXPECT_TRUE(AllClose(t.kl, torch::tensor(kl).view({1, 5}), 1e-5, 1e-6))
      << "k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman); logp - ref (k1) is negative for d > 0";
  EXPECT_TRUE((t.kl >= 0).all().item<bool>()) << "k3 is never negative";
  EXPECT_TRUE(AllClose(t.loss, -0.5 + 0.1 * torch::tensor(kl).view({1, 5}), 1e-5, 1e-6)) << "-A + beta k3";
}

TEST_F(GrpoTokenLossTest, MaskedPositionsAreZeroEvenWhenTheirNumbersAreInfinite) {
  // Positions after the end hold whatever the sampler left there; here logp = 100, so the ratio is
  // exp(101.3) = inf and l = inf for A < 0. Selecting with where leaves exactly 0; inf * 0 is NaN.
  auto old_logp = torch::full({2, 4}, -1.3);
  auto logp = old_logp.clone();
  logp.narrow(1, 2, 2).fill_(100);
  auto mask = Bools({1, 1, 0, 0, 1, 1, 0, 0}).view({2, 4});
  auto t = llm::grpo_token_loss(logp, old_logp, old_logp.clone(), F32({1, -1}), mask, Grpo("dapo", 0.1));
  EXPECT_TRUE(AllClose(t.loss, F32({-1, -1, 0, 0, 1, 1, 0, 0}).view({2, 4}), 0, 1e-6))
      << "-A on the 2 real tokens (ratio 1, no KL), 0 after the end";
  EXPECT_TRUE(AllClose(t.kl, torch::zeros({2, 4}), 0, 0)) << "no KL outside the mask either";
  EXPECT_FALSE(t.clipped.to(torch::kBool).any().item<bool>()) << "a masked token is never counted as clipped";
}

// -------------------------------------------------------------------------------- aggregation

TEST_F(GrpoAggregationTest, GrpoBnpoDrGrpoAndDapoOnAWorkedExample) {
  // Token losses of 2 answers of 2 and 1 tokens (T = 3); the 100s sit at masked positions.
  //   grpo     mean over answers of their token mean: ((1 + 2) / 2 + 4 / 1) / 2 = 2.75
  //   bnpo     all tokens alike: (1 + 2 + 4) / 3                        = 2.3333
  //   dr_grpo  (1 + 2 + 4) / (N * L) = 7 / (2 * 3)                     = 1.1667  (L = 5: 0.7)
  //   dapo     7 / num_items_in_batch = 7 / 14                          = 0.5     (0: this batch's 3 tokens)
  auto loss = F32({1, 2, 100, 4, 100, 100}).view({2, 3});
  auto mask = Bools({1, 1, 0, 1, 0, 0}).view({2, 3});
  const double grpo = llm::aggregate_grpo_loss(loss, mask, Grpo("grpo")).item<double>();
  const double bnpo = llm::aggregate_grpo_loss(loss, mask, Grpo("bnpo")).item<double>();
  const double dr = llm::aggregate_grpo_loss(loss, mask, Grpo("dr_grpo")).item<double>();
  const double dapo = llm::aggregate_grpo_loss(loss, mask, Grpo("dapo"), /*num_items_in_batch=*/14).item<double>();
  EXPECT_NEAR(grpo, 2.75, 1e-6) << "grpo: a token of the short answer weighs twice one of the long answer";
  EXPECT_NEAR(bnpo, 7.0 / 3, 1e-6) << "bnpo: sum over the micro-batch's tokens / their count";
  EXPECT_NEAR(dr, 7.0 / 6, 1e-6) << "dr_grpo: / (N * T) with max_completion_length 0";
  EXPECT_NEAR(dapo, 0.5, 1e-6) << "dapo: / the token count of the whole generation batch";
  auto o = Grpo("dr_grpo");
  o.max_completion_length = 5;
  EXPECT_NEAR(llm::aggregate_grpo_loss(loss, mask, o).item<double>(), 0.7, 1e-6) << "dr_grpo: / (N * 5)";
  EXPECT_NEAR(llm::aggregate_grpo_loss(loss, mask, Grpo("dapo")).item<double>(), 7.0 / 3, 1e-6)
      << "dapo without num_items_in_batch: this micro-batch's own token count";
  const std::vector<std::pair<double, double>> pairs = {{grpo, bnpo}, {grpo, dr},   {grpo, dapo},
                                                        {bnpo, dr},   {bnpo, dapo}, {dr, dapo}};
  for (const auto& [a, b] : pairs) {
    EXPECT_GT(std::abs(a - b), 0.1) << "with unequal lengths the four normalisations differ";
  }
}

// ----------------------------------------------------------------------------- rollout log-probs

TEST_F(RolloutLogprobsTest, ShiftedLogprobsGivesHandWorkedValuesAtTwoTemperatures) {
  // One row, V = 2, ids = (1, 1, 0). Position 0's logits (0, ln 3) predict ids[1] = 1 with
  // p = 3/4; position 1's (ln 4, 0) predict ids[2] = 0 with p = 4/5; position 2's predict nothing
  // (their 100 must not show). At T = 1/2 the logits double: p = 9/10 and 16/17.
  const auto logits = torch::tensor({0.0, std::log(3.0), std::log(4.0), 0.0, 100.0, -100.0}).view({1, 3, 2});
  const auto ids = torch::tensor({1, 1, 0}, torch::kInt64).view({1, 3});
  const auto out = llm::shifted_logprobs(logits.to(torch::kFloat32), ids);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 3})) << "aligned with the ids";
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(AllClose(out, F32({0.0f, std::log(0.75f), std::log(0.8f)}).view({1, 3}), 0, 1e-6))
      << "(0, ln 3/4, ln 4/5): column 0 is 0, column t scores ids[t] with position t-1's logits";
  const auto half = llm::shifted_logprobs(logits.to(torch::kFloat32), ids, 0.5);
  EXPECT_TRUE(AllClose(half, F32({0.0f, std::log(0.9f), std::log(16.0f / 17.0f)}).view({1, 3}), 0, 1e-6))
      << "T = 0.5: log_softmax(logits / 0.5) gives (0, ln 9/10, ln 16/17)";
  EXPECT_TRUE(ThrowsWith([&] { llm::shifted_logprobs(logits, ids, -1.0); }, {"temperature", "-1"}));
}

TEST_F(RolloutLogprobsTest, ColumnTIsTheLogProbOfTokenTGivenThePrefixAndColumnZeroIsZero) {
  llm::CausalLM model(TinyConfig());
  const auto rows = GroupRows();  // left-padded prompts, right-padded completions, S = 8
  auto out = llm::rollout_logprobs(model, rows.input_ids, rows.attention_mask);
  ASSERT_EQ(out.sizes(), rows.input_ids.sizes()) << "aligned with the ids: (N, S)";
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(AllClose(out.select(1, 0), torch::zeros({4}), 0, 0)) << "nothing predicts position 0";
  torch::NoGradGuard no_grad;
  const int64_t S = rows.input_ids.size(1);
  for (int64_t t = 1; t < S; ++t) {
    // The model sees only ids[<t] (and their padding mask): the log-prob of ids[t] from its last position.
    auto logits = model(rows.input_ids.narrow(1, 0, t), 0, rows.attention_mask.narrow(1, 0, t));  // (N, t, V)
    auto expected =
        torch::log_softmax(logits.select(1, t - 1), -1).gather(-1, rows.input_ids.select(1, t).unsqueeze(1));
    // A prefix and the full row run different matmul shapes: fp32 rounding.
    EXPECT_TRUE(AllClose(out.select(1, t), expected.squeeze(1), /*rtol=*/1e-5, /*atol=*/1e-5))
        << "column " << t << " = log p(ids[" << t << "] | ids[<" << t << "])";
  }
}

TEST_F(RolloutLogprobsTest, ScoresTheTokensAtTheSamplingTemperature) {
  // Answers sampled from softmax(logits / T) are scored under that same distribution (TRL's
  // _get_per_token_logps divides the logits by its temperature), not under T = 1.
  llm::CausalLM model(TinyConfig());
  const auto rows = GroupRows();
  torch::NoGradGuard no_grad;
  const auto logits = model(rows.input_ids, 0, rows.attention_mask);
  const auto at_half = llm::rollout_logprobs(model, rows.input_ids, rows.attention_mask, 0.5);
  EXPECT_TRUE(AllClose(at_half, DirectLogprobs(logits / 0.5, rows.input_ids), 1e-5, 1e-5))
      << "log_softmax(logits / 0.5), gathered at the next ids";
  EXPECT_FALSE(AllClose(at_half, DirectLogprobs(logits, rows.input_ids), 1e-3, 1e-3))
      << "T = 0.5 must not give the T = 1 log-probs";
  EXPECT_TRUE(AllClose(llm::rollout_logprobs(model, rows.input_ids, rows.attention_mask),
                       DirectLogprobs(logits, rows.input_ids), 1e-5, 1e-5))
      << "the default temperature is 1";
  EXPECT_TRUE(ThrowsWith([&] { llm::rollout_logprobs(model, rows.input_ids, rows.attention_mask, 0.0); },
                         {"temperature", "0"}));
}

// --------------------------------------------------------------------------- GRPO with the trainer

TEST_F(GrpoTrainerTest, DapoOverTwoMicroBatchesOfDifferentTokenCountsEqualsOneBigBatch) {
  llm::CausalLM model(TinyConfig());
  const auto options = Grpo("dapo", /*beta=*/0.05);
  const auto rollout = MakeRollout(model, F32({1.0, -1.0, 0.5, -0.5}));
  // Rows 0 and 3 hold 4 + 5 = 9 completion tokens, rows 1 and 2 hold 2 + 2 = 4.
  const auto a = Subset(rollout, {0, 3}), b = Subset(rollout, {1, 2});
  const auto big = TrainerStep(model, {rollout}, options);
  const auto split = TrainerStep(model, {a, b}, options);
  EXPECT_EQ(big.result.count, 13) << "grpo_count for dapo: the completion tokens";
  EXPECT_EQ(split.result.count, 13) << "9 + 4: the trainer's N is dapo's num_items_in_batch";

  // The loss by hand, from the token formula, over all 13 tokens.
  const auto hand = lesson09::HandGrpoLoss(model, rollout, 0.05);
  const auto m = rollout.completion_mask;
  const double expected = lesson09::MaskedSum(hand.loss, m) / 13;
  EXPECT_NEAR(big.result.loss, expected, 1e-5) << "sum of the token losses / all 13 tokens";
  EXPECT_NEAR(split.result.loss, expected, 1e-5) << "the same over two micro-batches";
  ASSERT_EQ(big.grads.size(), split.grads.size());
  for (size_t i = 0; i < big.grads.size(); ++i) {
    ASSERT_TRUE(big.grads[i].defined() && split.grads[i].defined()) << "parameter " << i << " has no gradient";
    // fp32 sums in another grouping.
    EXPECT_TRUE(AllClose(split.grads[i], big.grads[i], /*rtol=*/1e-4, /*atol=*/1e-6))
        << "parameter " << i << ": each micro-batch reports its SUM, the trainer divides by the 13 tokens of both";
  }
  ASSERT_EQ(split.result.metrics.count("kl"), 1u);
  ASSERT_EQ(split.result.metrics.count("clip_ratio"), 1u);
  EXPECT_NEAR(split.result.metrics.at("kl"), lesson09::MaskedSum(hand.kl, m) / 13, 1e-5)
      << "the mean k3 per completion token";
  const double clipped = lesson09::MaskedSum(hand.clipped, m);
  EXPECT_GT(clipped, 0) << "the test's premise: some tokens clip";
  EXPECT_NEAR(split.result.metrics.at("clip_ratio"), clipped / 13, 1e-9)
      << "the fraction of completion tokens whose clip was active";
}

// ------------------------------------------------------------------------------------------- GAE

TEST_F(GaeTest, GivesTheGoldenValues) {
  // gamma 1, lambda 0.95, r = (0, 0, 1), V = (0.5, 0.6, 0.7), V after the end = 0:
  //   delta = (0.6 - 0.5, 0.7 - 0.6, 1 - 0.7) = (0.1, 0.1, 0.3)
  //   A = (0.1 + 0.95 * 0.385, 0.1 + 0.95 * 0.3, 0.3) = (0.46575, 0.385, 0.3);  R = A + V
  auto [A, R] = llm::gae(F32({0, 0, 1}).view({1, 3}), F32({0.5, 0.6, 0.7}).view({1, 3}),
                         torch::ones({1, 3}, torch::kBool), /*gamma=*/1.0, /*lam=*/0.95);
  ASSERT_EQ(A.sizes(), (std::vector<int64_t>{1, 3}));
  EXPECT_TRUE(AllClose(A, F32({0.46575f, 0.385f, 0.3f}).view({1, 3}), 0, 1e-6)) << "advantages";
  EXPECT_TRUE(AllClose(R, F32({0.96575f, 0.985f, 1.0f}).view({1, 3}), 0, 1e-6)) << "returns = A + V";
}

TEST_F(GaeTest, MatchesAHandLoopForGammaAndLambdaBelowOne) {
  // Three rows whose completions span positions 2..6, 1..7 (to the end of S) and 4 alone; random
  // rewards and values everywhere, also outside the spans, where they must not count.
  const int64_t N = 3, S = 8;
  const double gamma = 0.9, lam = 0.8;
  const std::vector<std::pair<int64_t, int64_t>> spans = {{2, 6}, {1, 7}, {4, 4}};
  auto rewards = torch::randn({N, S}), values = torch::randn({N, S});
  auto mask = torch::zeros({N, S}, torch::kBool);
  for (int64_t n = 0; n < N; ++n) mask[n].narrow(0, spans[n].first, spans[n].second - spans[n].first + 1).fill_(true);
  auto [A, R] = llm::gae(rewards, values, mask, gamma, lam);
  auto expected_a = torch::zeros({N, S}, torch::kFloat64), expected_r = torch::zeros({N, S}, torch::kFloat64);
  for (int64_t n = 0; n < N; ++n) {
    double next_a = 0;
    for (int64_t t = spans[n].second; t >= spans[n].first; --t) {
      const double v = values[n][t].item<double>();
      const double next_v = t < spans[n].second ? values[n][t + 1].item<double>() : 0.0;  // terminal after the end
      next_a = rewards[n][t].item<double>() + gamma * next_v - v + gamma * lam * next_a;
      expected_a[n][t] = next_a;
      expected_r[n][t] = next_a + v;
    }
  }
  EXPECT_TRUE(AllClose(A, expected_a, /*rtol=*/1e-5, /*atol=*/1e-6))
      << "A_t = delta_t + gamma lambda A_{t+1}, backwards; 0 outside the mask";
  EXPECT_TRUE(AllClose(R, expected_r, 1e-5, 1e-6)) << "returns = A + V, 0 outside the mask";
}

// --------------------------------------------------------------------------------- PPO rewards

TEST_F(PpoRewardsTest, KlPenaltyOnEveryCompletionTokenAndTheScoreOnTheLastRealOne) {
  // Row 0: prompt at 0..1, completion at 2..4, padding at 5. Row 1: completion 1..5, cut at the end of S.
  // k1 = logp - ref; r_t = -kl_coef k1_t; the score on the last real token: position 4 of row 0, 5 of row 1.
  // TRL puts row 0's score on position 5, the token after the end (trl#1893); we chose the last
  // real token, so position 5 of row 0 must get nothing.
  auto logp = torch::randn({2, 6}) - 2, ref = torch::randn({2, 6}) - 2;
  auto mask = Bools({0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}).view({2, 6});
  const double kl_coef = 0.05;
  auto rewards = llm::ppo_rewards(logp, ref, F32({2.0, -1.0}), mask, kl_coef, "k1");
  ASSERT_EQ(rewards.sizes(), (std::vector<int64_t>{2, 6}));
  auto expected = torch::where(mask, -kl_coef * (logp - ref), torch::zeros_like(logp));
  expected[0][4] += 2.0;
  expected[1][5] += -1.0;
  EXPECT_TRUE(AllClose(rewards, expected, 1e-5, 1e-6));
  EXPECT_EQ(rewards[0][5].item<double>(), 0.0) << "not on the token after the last real one (TRL's placement)";
  EXPECT_FALSE(rewards.requires_grad()) << "rewards are data, not part of the graph";
}

TEST_F(PpoRewardsTest, K3PenaltyIsNonNegative) {
  // k3 = (exp(logr) - 1) - logr with logr = ref - logp, >= 0; the penalty -kl_coef k3 is <= 0.
  const std::vector<double> logr = {-1.5, -0.2, 0, 0.4, 2.0};
  auto logp = torch::full({1, 5}, -3.0);
  auto ref = logp + torch::tensor(logr).to(torch::kFloat32).unsqueeze(0);
  auto rewards = llm::ppo_rewards(logp, ref, F32({0}), torch::ones({1, 5}, torch::kBool), 0.1, "k3");
  std::vector<double> expected;
  for (double x : logr) expected.push_back(-0.1 * ((std::exp(x) - 1) - x));
  EXPECT_TRUE(AllClose(rewards, torch::tensor(expected).view({1, 5}), 1e-5, 1e-6));
  EXPECT_TRUE((rewards <= 0).all().item<bool>()) << "k3 is never negative, so the penalty never pays";
}

// ---------------------------------------------------------------------------------- whitening

TEST_F(WhitenTest, GivesMeanZeroAndUnbiasedVarianceOneOverTheMask) {
  auto x = torch::randn({3, 7}) * 3 + 2;
  auto mask = torch::rand({3, 7}) < 0.6;
  mask[0][0] = true, mask[1][1] = true, mask[2][2] = false;
  auto w = llm::masked_whiten(x, mask);
  ASSERT_EQ(w.sizes(), x.sizes());
  auto kept = w.masked_select(mask).to(torch::kFloat64);
  EXPECT_NEAR(kept.mean().item<double>(), 0.0, 1e-6) << "mean 0 over the masked entries";
  EXPECT_NEAR(kept.var(/*unbiased=*/true).item<double>(), 1.0, 1e-5) << "unbiased variance 1 (TRL's masked_var)";
  EXPECT_TRUE(AllClose(w.masked_select(~mask), torch::zeros({(~mask).sum().item<int64_t>()}), 0, 0))
      << "0 outside the mask";
  // The statistics come from the masked entries only: x = (1, 2, 3) -> (-1, 0, 1) (unbiased var 1).
  auto hand = llm::masked_whiten(F32({1, 2, 3, 100}).view({1, 4}), Bools({1, 1, 1, 0}).view({1, 4}));
  EXPECT_TRUE(AllClose(hand, F32({-1, 0, 1, 0}).view({1, 4}), 0, 1e-6))
      << "a biased variance gives +-1.2247; the 100 outside the mask must not move the mean";
}

// ---------------------------------------------------------------------------------- PPO losses

// Five tokens, the last one masked (its numbers are junk). c = c_v = 0.2.
//   token  A   ratio  -A r   -A clip(r)  pg    | V_old  V     R    (V-R)^2  (clip(V)-R)^2  vf
//   0      1   1.5    -1.5   -1.2        -1.2  | 0      0.5   1    0.25     0.64 (V->0.2)  0.64
//   1      -1  0.5    0.5    0.8         0.8   | 0      -0.5  0    0.25     0.04 (->-0.2)  0.25
//   2      1   0.5    -0.5   -0.8        -0.5  | 1      1.1   2    0.81     0.81           0.81
//   3      -2  1.1    2.2    2.2         2.2   | 0      0.1   -1   1.21     1.21           1.21
// pg = 1.3 / 4 = 0.325, clipfrac 2/4; vf = 0.5 * 2.91 / 4 = 0.36375, vf_clipfrac 1/4;
// loss = 0.325 + 0.1 * 0.36375 = 0.361375.
struct PpoExample {
  torch::Tensor logp, values, old_logp, old_values, advantages, returns, mask;
};

PpoExample HandWorkedPpo() {
  PpoExample e;
  e.old_logp = F32({-1, -2, -1.5, -0.7, -1}).view({1, 5});
  e.logp = e.old_logp + torch::log(F32({1.5, 0.5, 0.5, 1.1, 3.0})).view({1, 5});
  e.advantages = F32({1, -1, 1, -2, 5}).view({1, 5});
  e.old_values = F32({0, 0, 1, 0, 0}).view({1, 5});
  e.values = F32({0.5, -0.5, 1.1, 0.1, 9}).view({1, 5});
  e.returns = F32({1, 0, 2, -1, 0}).view({1, 5});
  e.mask = Bools({1, 1, 1, 1, 0}).view({1, 5});
  return e;
}

TEST_F(PpoLossesTest, HandWorkedClippedPolicyAndValueLosses) {
  const auto e = HandWorkedPpo();
  llm::PpoOptions o;  // TRL's defaults: cliprange 0.2, cliprange_value 0.2, vf_coef 0.1
  auto out = llm::ppo_losses(e.logp, e.values, e.old_logp, e.old_values, e.advantages, e.returns, e.mask, o);
  ASSERT_TRUE(out.loss.defined() && out.pg_loss.defined() && out.vf_loss.defined());
  EXPECT_NEAR(out.pg_loss.item<double>(), 0.325, 1e-6) << "mean over the 4 real tokens of max(-A r, -A clip(r))";
  EXPECT_NEAR(out.vf_loss.item<double>(), 0.36375, 1e-6) << "0.5 mean of max((V - R)^2, (clip(V) - R)^2)";
  EXPECT_NEAR(out.loss.item<double>(), 0.361375, 1e-6) << "pg + vf_coef vf";
  EXPECT_NEAR(out.clipfrac, 0.5, 1e-9) << "tokens 0 and 1: the clipped term was the larger";
  EXPECT_NEAR(out.vf_clipfrac, 0.25, 1e-9) << "token 0's value was clipped";
  double kl = 0;
  for (double r : {1.5, 0.5, 0.5, 1.1}) kl += std::log(r) * std::log(r);
  EXPECT_NEAR(out.approx_kl, 0.5 * kl / 4, 1e-6) << "0.5 mean (logp - old_logp)^2";
}

// --------------------------------------------------------------------------- value head, PPO loop

TEST_F(PolicyWithValueTest, ValuesAreTheHeadOnTheStateBeforeEachTokenAndLogitsAreTheCausalLMs) {
  llm::PolicyWithValue model{llm::CausalLM(TinyConfig())};
  const auto rows = GroupRows();
  auto [logits, values] = model(rows.input_ids, rows.attention_mask);
  ASSERT_EQ(values.sizes(), rows.input_ids.sizes()) << "one value per position, aligned with the ids";
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(AllClose(logits, model->policy(rows.input_ids, 0, rows.attention_mask), 0, 1e-6))
      << "the same logits as the CausalLM's forward";
  auto h = model->policy->model(rows.input_ids, 0, rows.attention_mask);  // (N, S, C)
  auto v = model->v_head(h).squeeze(-1);                                  // (N, S)
  const int64_t S = rows.input_ids.size(1);
  EXPECT_TRUE(AllClose(values.select(1, 0), torch::zeros({4}), 0, 0)) << "no state before position 0";
  EXPECT_TRUE(AllClose(values.narrow(1, 1, S - 1), v.narrow(1, 0, S - 1), 1e-5, 1e-7))
      << "values[:, t] = v_head(h[:, t - 1]): the value of the state the token at t was chosen from";
}

TEST_F(PpoTrainTest, SeveralEpochsOnOneRolloutLowerTheLoss) {
  llm::PolicyWithValue model{llm::CausalLM(TinyConfig())};
  llm::CausalLM reference(TinyConfig());
  llm::testing::CopyParameters(*model->policy, *reference);
  const auto rows = GroupRows();
  const llm::PpoOptions options;
  llm::PpoRollout r{rows.input_ids, rows.attention_mask, rows.completion_mask, {}, {}, {}, {}};
  {
    torch::NoGradGuard no_grad;
    auto [logits, values] = model(rows.input_ids, rows.attention_mask);
    r.old_logp = DirectLogprobs(logits, rows.input_ids);
    r.old_values = values;
    const auto ref_logp = DirectLogprobs(reference, rows);
    const auto rewards = llm::ppo_rewards(r.old_logp, ref_logp, F32({1, 0, 0.5, -1}), rows.completion_mask,
                                          options.kl_coef, options.kl_estimator);
    auto [advantages, returns] = llm::gae(rewards, values, rows.completion_mask, options.gamma, options.lam);
    r.advantages = llm::masked_whiten(advantages, rows.completion_mask);
    r.returns = returns;
  }
  // lr 1e-3: the policy moves a little per epoch and the clip stays inactive (0.01 clips every token by
  // epoch 2, after which only the value loss still falls).
  llm::AdamW optimizer(lesson09::AllParams(*model, 1e-3));
  llm::Trainer trainer(optimizer, lesson09::ConstantLr(1e-3, /*grad_clip=*/1.0));
  std::function<int64_t(const llm::PpoRollout&)> count = [](const llm::PpoRollout&) { return int64_t{1}; };
  std::function<llm::LossSum(const llm::PpoRollout&)> loss_sum = [&](const llm::PpoRollout& b) {
    return llm::ppo_loss_sum(model, b, options);
  };
  std::vector<llm::StepResult> epochs;
  for (int epoch = 0; epoch < 4; ++epoch) epochs.push_back(trainer.step<llm::PpoRollout>({r}, count, loss_sum));
  const auto& first = epochs.front().metrics;
  ASSERT_EQ(first.count("pg_loss"), 1u);
  ASSERT_EQ(first.count("approx_kl"), 1u);
  EXPECT_NEAR(first.at("pg_loss"), 0.0, 1e-6) << "epoch 0: ratio 1 and whitened advantages of mean 0";
  EXPECT_NEAR(first.at("approx_kl"), 0.0, 1e-10) << "epoch 0 runs the policy that sampled";
  EXPECT_EQ(first.at("clipfrac"), 0.0);
  for (size_t e = 1; e < epochs.size(); ++e) {
    // Each epoch lowers the loss by ~0.03 here.
    EXPECT_LT(epochs[e].loss, epochs[e - 1].loss - 0.01) << "epoch " << e << " on the same rollout";
  }
  const auto& last = epochs.back().metrics;
  EXPECT_LT(last.at("pg_loss"), -0.01) << "the surrogate improves: better-than-expected tokens became likelier";
  EXPECT_LT(last.at("vf_loss"), first.at("vf_loss")) << "the value head moves towards the returns";
  EXPECT_GT(last.at("approx_kl"), 0.0) << "the policy moved away from the one that sampled";
}

}  // namespace
