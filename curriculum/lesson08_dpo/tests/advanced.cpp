// Lesson 08, advanced: bf16 logits scored in fp32, what a sequence's log-prob must ignore (prompt,
// padding, garbage and -inf there) and the gradient that stays finite, reference-free DPO, strict
// accuracy with ties, the gradient of the sigmoid loss, the reference pass in eval mode without
// gradient, and the errors for bad options.
// Grade with:  ctest --preset default -R lesson08.advanced
#include "dpo_fixtures.h"

#include <llm/align/dpo.h>
#include <llm/common/testing.h>
#include <llm/model/causal_lm.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

using lesson08::Batch;
using lesson08::DpoTest;
using lesson08::F32;
using lesson08::NegLogSigmoid;
using lesson08::Pairs;
using lesson08::RowLogprobs;
using lesson08::TinyConfig;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class TokenLogprobsAdvanced : public DpoTest {};
class SequenceLogprobsAdvanced : public DpoTest {};
class DpoLossAdvanced : public DpoTest {};
class ReferenceAdvanced : public DpoTest {};

llm::DpoOptions Options(const std::string& loss_type, double beta = 0.1, double label_smoothing = 0.0) {
  llm::DpoOptions o;
  o.loss_type = loss_type;
  o.beta = beta;
  o.label_smoothing = label_smoothing;
  return o;
}

// ------------------------------------------------------------------------------ token log-probs

TEST_F(TokenLogprobsAdvanced, Bf16LogitsAreScoredInFloat32) {
  // Logits of size ~10 in bf16 (8 significant bits). A log_softmax in bf16 is off by ~3e-2; the
  // same bf16 numbers upcast and scored in fp32 are exact to ~1e-6.
  auto logits = (torch::randn({2, 6, 40}) * 10).to(torch::kBFloat16);
  auto targets = torch::randint(0, 40, {2, 6}, torch::kLong);
  auto out = llm::token_logprobs(logits, targets);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32) << "float32 whatever the logits' dtype";
  auto expected = torch::log_softmax(logits.to(torch::kFloat32), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  EXPECT_TRUE(AllClose(out, expected, /*rtol=*/1e-5, /*atol=*/1e-5)) << "log_softmax(logits.float()), not in bf16";
}

TEST_F(TokenLogprobsAdvanced, RejectsMismatchedShapesNamingThem) {
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::token_logprobs(torch::zeros({2, 5, 7}), torch::zeros({2, 4}, torch::kLong));
      },
      {"[2, 5, 7]", "[2, 4]"}));
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::token_logprobs(torch::zeros({5, 7}), torch::zeros({5}, torch::kLong));
      },
      {"[5, 7]", "[5]"}));
}

// ---------------------------------------------------------------------------- sequence log-probs

TEST_F(SequenceLogprobsAdvanced, PromptAndPaddingLogitsChangeNothingAndTheGradientStaysFinite) {
  // Row layout (T = 7): prompt 3, completion 2 (its end token last), padding 2. The completion's
  // tokens at positions 3 and 4 are scored by the logits at 2 and 3; every other position's logits
  // may hold anything: huge values, -inf, even -inf everywhere (a NaN log_softmax).
  auto logits = torch::randn({1, 7, 9});
  auto ids = torch::tensor({4, 5, 6, 7, 2, 0, 0}, torch::kLong).view({1, 7});
  auto mask = torch::tensor({0, 0, 0, 1, 1, 0, 0}, torch::kBool).view({1, 7});
  const double expected =
      (torch::log_softmax(logits[0][2], -1)[7] + torch::log_softmax(logits[0][3], -1)[2]).item<double>();

  auto garbage = logits.clone();
  garbage[0][0] = 1e4;                                         // predicts a prompt token
  garbage[0][1][5] = -std::numeric_limits<float>::infinity();  // predicts prompt token 6
  garbage[0][4] = -std::numeric_limits<float>::infinity();     // predicts padding: NaN after log_softmax
  garbage[0][5][0] = -std::numeric_limits<float>::infinity();  // predicts padding id 0
  garbage[0][6] = 50;                                          // the last position predicts nothing
  garbage.requires_grad_();
  auto s = llm::sequence_logprobs(garbage, ids, mask);
  ASSERT_EQ(s.sum.sizes(), (std::vector<int64_t>{1}));
  EXPECT_NEAR(s.sum.item<double>(), expected, 1e-5)
      << "only the logits that predict completion tokens count; NaN here means -inf * 0 or NaN * 0";
  EXPECT_EQ(s.tokens.item<double>(), 2.0);
  s.sum.sum().backward();
  ASSERT_TRUE(garbage.grad().defined());
  auto g = garbage.grad()[0];
  EXPECT_FALSE(g[2].isnan().any().item<bool>() || g[3].isnan().any().item<bool>())
      << "the gradient of the scored positions is finite";
  EXPECT_TRUE(AllClose(g[0], torch::zeros({9}), 0, 0)) << "no gradient into the prompt's logits";
  EXPECT_TRUE(AllClose(g[5], torch::zeros({9}), 0, 0)) << "no gradient into the padding's logits";
}

TEST_F(SequenceLogprobsAdvanced, AMaskAtPositionZeroIsIgnoredBecauseNothingPredictsIt) {
  // A row that is all completion (no prompt): position 0 has no logits before it, so the sum starts
  // at position 1 and counts T - 1 tokens.
  auto logits = torch::randn({1, 4, 6});
  auto ids = torch::tensor({1, 2, 3, 4}, torch::kLong).view({1, 4});
  auto mask = torch::ones({1, 4}, torch::kBool);
  auto lp = torch::log_softmax(logits[0], -1);
  const double expected = (lp[0][2] + lp[1][3] + lp[2][4]).item<double>();
  auto s = llm::sequence_logprobs(logits, ids, mask);
  EXPECT_NEAR(s.sum.item<double>(), expected, 1e-5);
  EXPECT_EQ(s.tokens.item<double>(), 3.0) << "the mask of position 0 is dropped with the shift";
}

// ------------------------------------------------------------------------------------ DPO loss

TEST_F(DpoLossAdvanced, ReferenceFreeDropsTheReferenceLogRatios) {
  // pi -5 / -7, reference -4 / -8. With the reference: h = (-5 + 4) - (-7 + 8) = -2, loss
  // -log sigmoid(-0.2) = 0.7981389. Reference-free (pi_ref uniform): h = -5 - (-7) = 2, 0.5981389.
  auto pc = F32({-5}), pr = F32({-7}), rc = F32({-4}), rr = F32({-8});
  auto with = llm::dpo_loss(pc, pr, rc, rr, Options("sigmoid"));
  EXPECT_NEAR(with.losses.item<double>(), 0.7981389, 1e-6) << "the reference makes this pair a loss";
  auto o = Options("sigmoid");
  o.reference_free = true;
  auto free = llm::dpo_loss(pc, pr, rc, rr, o);
  EXPECT_NEAR(free.losses.item<double>(), 0.5981389, 1e-6) << "reference_free: h = log pi(c) - log pi(r)";
  EXPECT_NEAR(free.chosen_rewards.item<double>(), -0.1, 1e-6) << "the logged rewards still use the reference";
  EXPECT_NEAR(free.rejected_rewards.item<double>(), 0.1, 1e-6);
}

TEST_F(DpoLossAdvanced, SigmoidGradientIsMinusBetaSigmoidOfMinusBetaH) {
  // d/dh of -log sigmoid(beta h) = -beta sigmoid(-beta h): largest (-beta / 2) at h = 0, vanishing
  // as the margin grows. h enters with +1 through log pi(c) and -1 through log pi(r).
  const double beta = 0.5;
  auto pc = F32({-3, -10, -2, -6, -1}).requires_grad_();
  auto pr = F32({-3, -4, -8, -6.5, -30}).requires_grad_();
  auto rc = F32({-4, -5, -5, -5, -5}), rr = F32({-4, -5, -5, -5, -5});
  auto out = llm::dpo_loss(pc, pr, rc, rr, Options("sigmoid", beta));
  out.losses.sum().backward();
  auto h = (pc - rc) - (pr - rr);
  auto expected = -beta * torch::sigmoid(-beta * h.detach());
  ASSERT_TRUE(pc.grad().defined() && pr.grad().defined())
      << "the loss must be differentiable in the policy's log-probs";
  EXPECT_TRUE(AllClose(pc.grad(), expected, /*rtol=*/1e-5, /*atol=*/1e-7)) << "d loss / d log pi(c)";
  EXPECT_TRUE(AllClose(pr.grad(), -expected, 1e-5, 1e-7)) << "d loss / d log pi(r)";
  EXPECT_NEAR(pc.grad()[0].item<double>(), -beta / 2, 1e-7) << "at h = 0 the gradient is -beta / 2";
}

TEST_F(DpoLossAdvanced, IpoCountsAnEmptyCompletionAsOneToken) {
  // Token counts are clamped to >= 1 before dividing (TRL-1.x): no inf from a zero count.
  auto out = llm::dpo_loss(F32({-5}), F32({-7}), F32({-6}), F32({-6}), Options("ipo"), F32({0}), F32({1}));
  EXPECT_NEAR(out.losses.item<double>(), 9.0, 1e-5) << "h' = 1 / 1 + 1 / 1 = 2: (2 - 5)^2";
}

TEST_F(DpoLossAdvanced, AccuracyIsStrictSoATieCountsZero) {
  // Policy and reference the same weights: every reward is exactly 0, every pair a tie.
  llm::CausalLM policy(TinyConfig());
  auto reference = lesson08::Copy(policy);
  const auto pairs = Pairs();
  const auto batch = llm::with_reference_logprobs(reference, Batch(pairs));
  const auto out = llm::dpo_loss_sum(policy, batch, Options("sigmoid"));
  ASSERT_EQ(out.metrics.count("rewards/accuracies"), 1u);
  EXPECT_EQ(out.metrics.at("rewards/accuracies"), 0.0) << "chosen > rejected, strictly: a tie is not a win";
  EXPECT_EQ(out.metrics.at("rewards/margins"), 0.0);
  EXPECT_NEAR(out.sum.item<double>(), 3 * std::log(2.0), 1e-6) << "3 pairs at ln 2 each";

  // Against another model's log-probs: the count is the pairs whose chosen reward is strictly higher.
  llm::CausalLM other(TinyConfig());
  const auto pi = RowLogprobs(policy, pairs), ref = RowLogprobs(other, pairs);
  const auto b2 = llm::with_reference_logprobs(other, Batch(pairs));
  double wins = 0;
  for (size_t i = 0; i < pairs.size(); ++i) wins += (pi.chosen[i] - ref.chosen[i]) > (pi.rejected[i] - ref.rejected[i]);
  EXPECT_EQ(llm::dpo_loss_sum(policy, b2, Options("sigmoid")).metrics.at("rewards/accuracies"), wins);
}

TEST_F(DpoLossAdvanced, RejectsBadOptionsNamingTheValue) {
  auto pc = F32({-5}), pr = F32({-7}), rc = F32({-6}), rr = F32({-6});
  auto loss = [&](const llm::DpoOptions& o) { return [=] { llm::dpo_loss(pc, pr, rc, rr, o); }; };
  EXPECT_TRUE(ThrowsWith(loss(Options("kto")), {"'kto'", "sigmoid", "robust", "hinge", "ipo"}));
  EXPECT_TRUE(ThrowsWith(loss(Options("sigmoid", 0.0)), {"beta", "0"}));
  EXPECT_TRUE(ThrowsWith(loss(Options("sigmoid", -1.0)), {"beta", "-1"}));
  EXPECT_TRUE(ThrowsWith(loss(Options("robust", 0.1, 0.5)), {"label_smoothing", "0.5"}))
      << "robust divides by 1 - 2 eps: eps 0.5 divides by 0";
  EXPECT_TRUE(ThrowsWith(loss(Options("sigmoid", 0.1, -0.1)), {"label_smoothing", "-0.1"}));
  EXPECT_TRUE(ThrowsWith(loss(Options("ipo")), {"ipo", "token"})) << "ipo without the token counts";
  auto negative_rpo = Options("sigmoid");
  negative_rpo.rpo_alpha = -1;
  EXPECT_TRUE(ThrowsWith(loss(negative_rpo), {"rpo_alpha", "-1"}))
      << "a negative NLL weight would push the chosen answers down";
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::dpo_loss(F32({-5, -6}), pr, rc, rr, Options("sigmoid"));
      },
      {"[2]", "[1]"}))
      << "the four log-prob tensors must have the same shape";
}

// ------------------------------------------------------------------------------- the reference

TEST_F(ReferenceAdvanced, RunsInEvalModeWithoutGradientAndRestoresTheMode) {
  // With dropout 0.5 a forward in training mode is random; the reference pass must be the
  // deterministic eval-mode one, without a graph, and leave the model as it found it.
  llm::CausalLM reference(TinyConfig(/*dropout=*/0.5));
  reference->train();
  const auto pairs = Pairs();
  const auto a = llm::with_reference_logprobs(reference, Batch(pairs));
  EXPECT_TRUE(reference->is_training()) << "the mode is restored";
  reference->eval();
  const auto expected = RowLogprobs(reference, pairs);  // eval mode: dropout off
  EXPECT_TRUE(AllClose(a.ref_chosen, torch::tensor(expected.chosen), 1e-5, 1e-5)) << "computed with dropout off";
  EXPECT_TRUE(AllClose(a.ref_rejected, torch::tensor(expected.rejected), 1e-5, 1e-5));
  EXPECT_FALSE(a.ref_chosen.requires_grad()) << "no graph: the reference is frozen";
  EXPECT_FALSE(a.ref_rejected.requires_grad());
  EXPECT_TRUE(torch::equal(a.pairs.input_ids, Batch(pairs).input_ids)) << "the batch is passed through";

  const auto b = llm::with_reference_logprobs(reference, Batch(pairs));
  EXPECT_FALSE(reference->is_training()) << "a model in eval mode stays in eval mode";
  EXPECT_TRUE(torch::equal(a.ref_chosen, b.ref_chosen)) << "the same numbers every time";
}

}  // namespace
