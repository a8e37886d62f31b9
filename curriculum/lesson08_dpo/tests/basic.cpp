// Lesson 08, basic: token log-probs against log_softmax + gather, a sequence's log-prob over its
// completion only (hand-built), one forward for both halves of a preference batch equal to separate
// forwards, the DPO loss and its variants on golden values computed from the formulas, TRL's metrics,
// RPO's NLL term, and a few trainer steps that raise the margin of chosen over rejected.
// Grade with:  ctest --preset default -R lesson08.basic
#include "dpo_fixtures.h"

#include <llm/align/dpo.h>
#include <llm/common/testing.h>
#include <llm/model/causal_lm.h>
#include <llm/train/adamw.h>
#include <llm/train/trainer.h>

#include <cmath>
#include <functional>
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

class TokenLogprobsTest : public DpoTest {};
class SequenceLogprobsTest : public DpoTest {};
class PairLogprobsTest : public DpoTest {};
class DpoLossTest : public DpoTest {};
class DpoLossSumTest : public DpoTest {};
class DpoTrainTest : public DpoTest {};

const double kLn2 = std::log(2.0);

llm::DpoOptions Options(const std::string& loss_type, double beta = 0.1, double label_smoothing = 0.0) {
  llm::DpoOptions o;
  o.loss_type = loss_type;
  o.beta = beta;
  o.label_smoothing = label_smoothing;
  return o;
}

// The golden pair: log pi(c) = -5, log pi(r) = -7, reference -6 and -6, so h = 1 - (-1) = 2.
struct Golden {
  torch::Tensor pc = F32({-5}), pr = F32({-7}), rc = F32({-6}), rr = F32({-6});
};

// ------------------------------------------------------------------------------ token log-probs

TEST_F(TokenLogprobsTest, EqualsLogSoftmaxGatheredAtTheTargets) {
  auto logits = torch::randn({3, 5, 11}) * 3;                  // (B, T, V)
  auto targets = torch::randint(0, 11, {3, 5}, torch::kLong);  // (B, T)
  auto out = llm::token_logprobs(logits, targets);
  ASSERT_EQ(out.sizes(), targets.sizes()) << "one log-prob per target";
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  auto expected = torch::log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  // fp32 log_softmax either way; a different formula (logits - logsumexp) rounds within 1e-6.
  EXPECT_TRUE(AllClose(out, expected, /*rtol=*/1e-5, /*atol=*/1e-6));
  EXPECT_TRUE((out <= 0).all().item<bool>()) << "log-probabilities are <= 0";
}

// ---------------------------------------------------------------------------- sequence log-probs

// Two rows, V = 4, T = 5; id 3 is the end token, 0 the padding (also an ordinary token: row 0's
// first completion token is 0). The logits at position t are log p_t plus a constant (log_softmax
// must normalise them); position t's token is scored by the logits at t - 1.
//   row 0: ids [2, 1 | 0, 3 | pad]      prompt 2 ids, completion 2 (the end included), 1 padding
//   row 1: ids [1 | 2, 1, 0, 3]         prompt 1 id, completion 4
struct HandBuilt {
  torch::Tensor logits, ids, mask;
  double row0, row1;
};

HandBuilt HandBuiltExample() {
  const std::vector<std::vector<float>> p = {
      {0.5f, 0.25f, 0.125f, 0.125f},  // p_0, predicts position 1
      {0.4f, 0.3f, 0.2f, 0.1f},       // p_1, predicts position 2
      {0.25f, 0.25f, 0.25f, 0.25f},   // p_2, predicts position 3
      {0.7f, 0.1f, 0.1f, 0.1f},       // p_3, predicts position 4
      {0.25f, 0.25f, 0.25f, 0.25f},   // p_4: the last position predicts nothing
  };
  auto probs = torch::stack({F32(p[0]), F32(p[1]), F32(p[2]), F32(p[3]), F32(p[4])});  // (T, V)
  auto logits = torch::stack({torch::log(probs) + 1.0, torch::log(probs) - 2.0});      // (N, T, V)
  // Row 0's position 4 is padding: its logits may be anything, -inf included (a masked vocabulary
  // entry). -inf * 0 is NaN: a sum that multiplies by the mask breaks here, one that selects does not.
  logits[0][3][0] = -std::numeric_limits<float>::infinity();
  auto ids = torch::tensor({2, 1, 0, 3, 0, 1, 2, 1, 0, 3}, torch::kLong).view({2, 5});
  auto mask = torch::tensor({0, 0, 1, 1, 0, 0, 1, 1, 1, 1}, torch::kBool).view({2, 5});
  // row 0: p_1[0] + p_2[3];  row 1: p_0[2] + p_1[1] + p_2[0] + p_3[3]
  return {logits, ids, mask, std::log(0.4) + std::log(0.25),
          std::log(0.125) + std::log(0.3) + std::log(0.25) + std::log(0.1)};
}

TEST_F(SequenceLogprobsTest, SumsTheCompletionTokensShiftedByOneAndCountsThem) {
  const auto ex = HandBuiltExample();
  auto s = llm::sequence_logprobs(ex.logits, ex.ids, ex.mask);
  ASSERT_TRUE(s.sum.defined() && s.tokens.defined());
  ASSERT_EQ(s.sum.sizes(), (std::vector<int64_t>{2}));
  ASSERT_EQ(s.tokens.sizes(), (std::vector<int64_t>{2}));
  EXPECT_FALSE(s.sum.isnan().any().item<bool>())
      << "row 0's padding position has a -inf logit at its target: select with where, do not multiply by the mask";
  // fp32 log-probs of values near -3.
  EXPECT_NEAR(s.sum[0].item<double>(), ex.row0, 1e-5)
      << "row 0: log p_1[0] + log p_2[3] = ln 0.4 + ln 0.25; the prompt and the padding add nothing, the first "
         "completion token (id 0, the pad's value) counts";
  EXPECT_NEAR(s.sum[1].item<double>(), ex.row1, 1e-5)
      << "row 1: ln 0.125 + ln 0.3 + ln 0.25 + ln 0.1, the end token's ln 0.1 included";
  EXPECT_TRUE(AllClose(s.tokens, F32({2, 4}), 0, 0)) << "completion tokens per row, the end token included";
  EXPECT_EQ(s.tokens.scalar_type(), torch::kFloat32);
}

// ------------------------------------------------------------------------------- pair log-probs

TEST_F(PairLogprobsTest, OneForwardOverBothHalvesEqualsSeparateForwardsOfEachRow) {
  llm::CausalLM model(TinyConfig());
  const auto pairs = Pairs();
  const auto batch = Batch(pairs);
  ASSERT_EQ(batch.num_pairs(), 3);
  auto p = llm::pair_logprobs(model, batch);
  const auto ref = RowLogprobs(model, pairs);  // each row alone, unpadded
  ASSERT_EQ(p.chosen.sum.sizes(), (std::vector<int64_t>{3})) << "the first P rows are the chosen ones";
  ASSERT_EQ(p.rejected.sum.sizes(), (std::vector<int64_t>{3})) << "the last P rows are the rejected ones";
  // The padded batch and the single rows run different matmul shapes: fp32 rounding ~1e-6 per token.
  EXPECT_TRUE(AllClose(p.chosen.sum, torch::tensor(ref.chosen), /*rtol=*/1e-5, /*atol=*/1e-5))
      << "chosen: sum over the completion of log p(token | everything before it)";
  EXPECT_TRUE(AllClose(p.rejected.sum, torch::tensor(ref.rejected), 1e-5, 1e-5)) << "rejected";
  EXPECT_TRUE(AllClose(p.chosen.tokens, F32({3, 2, 2}), 0, 0)) << "chosen completion lengths, <|end|> included";
  EXPECT_TRUE(AllClose(p.rejected.tokens, F32({2, 4, 3}), 0, 0)) << "rejected completion lengths";
  EXPECT_TRUE(p.chosen.sum.requires_grad()) << "the policy's log-probs carry the gradient the loss needs";
}

// ------------------------------------------------------------------------------------ DPO loss

TEST_F(DpoLossTest, IsLn2WhenThePolicyEqualsTheReference) {
  // h = 0: -log sigmoid(0) = ln 2 = 0.6931472, and so are cDPO and robust DPO at any eps.
  auto pc = torch::randn({4}) - 20, pr = torch::randn({4}) - 20;
  for (const auto& o : {Options("sigmoid"), Options("sigmoid", 0.1, 0.2), Options("robust", 0.1, 0.2)}) {
    auto out = llm::dpo_loss(pc, pr, pc.clone(), pr.clone(), o);
    ASSERT_EQ(out.losses.sizes(), (std::vector<int64_t>{4})) << "one loss per pair";
    EXPECT_TRUE(AllClose(out.losses, torch::full({4}, kLn2), 0, 1e-6))
        << o.loss_type << ", label_smoothing " << o.label_smoothing << ": ln 2 = 0.6931472 at the start";
    EXPECT_TRUE(AllClose(out.chosen_rewards, torch::zeros({4}), 0, 0)) << "no reward before any training";
    EXPECT_TRUE(AllClose(out.rejected_rewards, torch::zeros({4}), 0, 0));
  }
}

TEST_F(DpoLossTest, GivesTheGoldenValuesForAMarginOfTwo) {
  const Golden g;
  auto pc = g.pc.clone().requires_grad_(), pr = g.pr.clone().requires_grad_();  // the policy's, with gradient
  auto out = llm::dpo_loss(pc, pr, g.rc, g.rr, Options("sigmoid"));
  // -log sigmoid(0.2) = 0.5981389 (beta 0.1, from the formula in double); fp32 near 0.6 is good to ~1e-7.
  EXPECT_NEAR(out.losses.item<double>(), 0.5981389, 1e-6) << "sigmoid: -log sigmoid(beta h), h = 2";
  EXPECT_NEAR(out.losses.item<double>(), NegLogSigmoid(0.2), 1e-6) << "the same, from the formula";
  EXPECT_NEAR(out.chosen_rewards.item<double>(), 0.1, 1e-6) << "beta (log pi(c) - log pi_ref(c)) = 0.1 * 1";
  EXPECT_NEAR(out.rejected_rewards.item<double>(), -0.1, 1e-6) << "beta (log pi(r) - log pi_ref(r)) = 0.1 * -1";
  EXPECT_NEAR((out.chosen_rewards - out.rejected_rewards).item<double>(), 0.2, 1e-6) << "the margin, beta h";
  EXPECT_TRUE(out.losses.requires_grad()) << "the loss is differentiable in the policy's log-probs";
  EXPECT_FALSE(out.chosen_rewards.requires_grad() || out.rejected_rewards.requires_grad())
      << "the logged rewards are metrics: detached";
}

TEST_F(DpoLossTest, HingeIsReluOfOneMinusBetaH) {
  // h = 2: relu(1 - 0.2) = 0.8. h = 15 (rejected -20): relu(1 - 1.5) = 0, the margin is wide enough.
  auto out = llm::dpo_loss(F32({-5, -5}), F32({-7, -20}), F32({-6, -6}), F32({-6, -6}), Options("hinge"));
  EXPECT_TRUE(AllClose(out.losses, F32({0.8f, 0}), 0, 1e-6)) << "SLiC's hinge on beta h";
}

TEST_F(DpoLossTest, LabelSmoothingGivesConservativeAndRobustDpo) {
  const Golden g;
  // eps = 0.1, z = beta h = 0.2:
  //   cDPO    0.9 (-log sigmoid(0.2)) + 0.1 (-log sigmoid(-0.2))          = 0.6181388
  //   robust  (0.9 (-log sigmoid(0.2)) - 0.1 (-log sigmoid(-0.2))) / 0.8  = 0.5731388
  auto cdpo = llm::dpo_loss(g.pc, g.pr, g.rc, g.rr, Options("sigmoid", 0.1, 0.1));
  EXPECT_NEAR(cdpo.losses.item<double>(), 0.6181388, 1e-6)
      << "sigmoid with label_smoothing is conservative DPO (TRL-classic), not plain sigmoid (0.5981389)";
  auto robust = llm::dpo_loss(g.pc, g.pr, g.rc, g.rr, Options("robust", 0.1, 0.1));
  EXPECT_NEAR(robust.losses.item<double>(), 0.5731388, 1e-6) << "robust DPO, divided by 1 - 2 eps";
  auto robust0 = llm::dpo_loss(g.pc, g.pr, g.rc, g.rr, Options("robust", 0.1, 0.0));
  EXPECT_NEAR(robust0.losses.item<double>(), 0.5981389, 1e-6) << "robust with eps 0 is sigmoid";
}

TEST_F(DpoLossTest, IpoAveragesEachLogRatioOverItsTokens) {
  // Chosen ratio 1 over 4 tokens, rejected ratio -1 over 2: h' = 0.25 + 0.5 = 0.75,
  // loss (0.75 - 1 / (2 * 0.1))^2 = (0.75 - 5)^2 = 18.0625. Without the average: (2 - 5)^2 = 9.
  const Golden g;
  auto out = llm::dpo_loss(g.pc, g.pr, g.rc, g.rr, Options("ipo"), /*chosen_tokens=*/F32({4}),
                           /*rejected_tokens=*/F32({2}));
  EXPECT_NEAR(out.losses.item<double>(), 18.0625, 1e-5) << "IPO on length-averaged log-ratios";
  EXPECT_NEAR(out.chosen_rewards.item<double>(), 0.1, 1e-6) << "the logged rewards are not length-averaged";
}

// ------------------------------------------------------------------------ the trainer's loss_sum

TEST_F(DpoLossSumTest, ReturnsTheSummedLossesAndTrlsMetricSums) {
  llm::CausalLM policy(TinyConfig()), reference(TinyConfig());  // two different random models
  const auto pairs = Pairs();
  const auto batch = llm::with_reference_logprobs(reference, Batch(pairs));
  const auto pi = RowLogprobs(policy, pairs), ref = RowLogprobs(reference, pairs);
  EXPECT_TRUE(AllClose(batch.ref_chosen, torch::tensor(ref.chosen), 1e-5, 1e-5)) << "the reference's chosen log-probs";
  EXPECT_TRUE(AllClose(batch.ref_rejected, torch::tensor(ref.rejected), 1e-5, 1e-5));

  const double beta = 0.1;
  double loss = 0, chosen = 0, rejected = 0, correct = 0, logps_c = 0, logps_r = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const double c = beta * (pi.chosen[i] - ref.chosen[i]), r = beta * (pi.rejected[i] - ref.rejected[i]);
    loss += NegLogSigmoid(c - r);
    chosen += c, rejected += r, correct += c > r;
    logps_c += pi.chosen[i], logps_r += pi.rejected[i];
  }
  const auto out = llm::dpo_loss_sum(policy, batch, Options("sigmoid", beta));
  ASSERT_EQ(out.sum.dim(), 0) << "a scalar";
  EXPECT_NEAR(out.sum.item<double>(), loss, 1e-5) << "the SUM of the pairs' losses: the trainer divides by P";
  auto metric = [&](const std::string& key) {
    EXPECT_EQ(out.metrics.count(key), 1u) << "missing metric '" << key << "'";
    return out.metrics.count(key) ? out.metrics.at(key) : std::nan("");
  };
  // The log-probs are sums of ~10 fp32 terms near -3.5: ~1e-5.
  EXPECT_NEAR(metric("rewards/chosen"), chosen, 1e-5);
  EXPECT_NEAR(metric("rewards/rejected"), rejected, 1e-5);
  EXPECT_NEAR(metric("rewards/margins"), chosen - rejected, 1e-5);
  EXPECT_EQ(metric("rewards/accuracies"), correct) << "pairs whose chosen reward is above the rejected one";
  EXPECT_NEAR(metric("logps/chosen"), logps_c, 1e-4) << "the policy's summed log-probs";
  EXPECT_NEAR(metric("logps/rejected"), logps_r, 1e-4);
}

TEST_F(DpoLossSumTest, RpoAddsAlphaTimesTheChosenAnswersMeanTokenNllForEveryPair) {
  llm::CausalLM policy(TinyConfig()), reference(TinyConfig());
  const auto pairs = Pairs();
  const auto batch = llm::with_reference_logprobs(reference, Batch(pairs));
  // The NLL of the chosen answers measured row by row: minus their summed log-probs over their
  // token count (3 + 2 + 2 = 7 chosen completion tokens, the end tokens included).
  const auto pi = RowLogprobs(policy, pairs);
  double chosen_logp = 0, tokens = 0;
  for (size_t i = 0; i < pairs.size(); ++i) chosen_logp += pi.chosen[i], tokens += pairs[i].chosen.size();
  const double nll = -chosen_logp / tokens, P = static_cast<double>(pairs.size());

  auto rpo = Options("sigmoid");
  rpo.rpo_alpha = 0.5;
  const auto plain = llm::dpo_loss_sum(policy, batch, Options("sigmoid"));
  const auto with_nll = llm::dpo_loss_sum(policy, batch, rpo);
  EXPECT_NEAR(with_nll.sum.item<double>() - plain.sum.item<double>(), 0.5 * P * nll, 1e-4)
      << "alpha x the batch's mean NLL per chosen token, once per pair (the trainer divides by P)";
  ASSERT_EQ(with_nll.metrics.count("nll_loss"), 1u) << "TRL logs nll_loss when rpo_alpha is set";
  EXPECT_NEAR(with_nll.metrics.at("nll_loss"), P * nll, 1e-4) << "a sum over pairs, like the other metrics";
  EXPECT_EQ(plain.metrics.count("nll_loss"), 0u) << "rpo_alpha 0 is plain DPO";
  EXPECT_NEAR(with_nll.metrics.at("rewards/margins"), plain.metrics.at("rewards/margins"), 1e-6)
      << "the NLL term changes the loss, not the implicit rewards";

  // Its gradient is the SFT gradient of the chosen answers: with alpha 0.5 the step's loss is
  // DPO + 0.5 NLL, so d(sum)/d(params) differs from plain DPO's by 0.5 P d(nll).
  policy->zero_grad();
  with_nll.sum.backward();
  const auto g_rpo = policy->parameters()[0].grad().clone();
  policy->zero_grad();
  plain.sum.backward();
  const auto g_plain = policy->parameters()[0].grad().clone();
  EXPECT_GT((g_rpo - g_plain).abs().max().item<double>(), 1e-6) << "the NLL term must reach the gradient";
}

// ------------------------------------------------------------------------------------ training

TEST_F(DpoTrainTest, TrainerStepsRaiseTheMarginOfChosenOverRejected) {
  llm::CausalLM policy(TinyConfig());
  auto reference = lesson08::Copy(policy);  // pi_ref = pi at the start
  const auto pairs = Pairs();
  const auto batch = llm::with_reference_logprobs(reference, Batch(pairs));
  const auto options = Options("sigmoid", 0.1);

  llm::AdamW optimizer(lesson08::AllParams(*policy, 0.01));
  llm::Trainer trainer(optimizer, lesson08::ConstantLr(0.01));
  std::function<int64_t(const llm::DpoBatch&)> count = [](const llm::DpoBatch& b) { return b.pairs.num_pairs(); };
  std::function<llm::LossSum(const llm::DpoBatch&)> loss_sum = [&](const llm::DpoBatch& b) {
    return llm::dpo_loss_sum(policy, b, options);
  };
  std::vector<double> losses, margins;
  for (int step = 0; step < 6; ++step) {
    const auto r = trainer.step<llm::DpoBatch>({batch}, count, loss_sum);
    ASSERT_EQ(r.count, 3) << "the trainer averages over pairs";
    ASSERT_EQ(r.metrics.count("rewards/margins"), 1u);
    losses.push_back(r.loss);
    margins.push_back(r.metrics.at("rewards/margins"));
  }
  // Step 0 is measured before its update, with pi = pi_ref exactly.
  EXPECT_NEAR(losses[0], kLn2, 1e-6) << "the first step's loss is ln 2: the policy starts as the reference";
  EXPECT_NEAR(margins[0], 0.0, 1e-7) << "and no margin";
  for (size_t s = 1; s < margins.size(); ++s) {
    EXPECT_GT(margins[s], margins[s - 1]) << "step " << s << ": every step widens the margin on this batch";
  }
  EXPECT_LT(losses.back(), kLn2 - 0.01) << "the loss falls below ln 2";

  // Measured independently after training: beta ((pi(c) - ref(c)) - (pi(r) - ref(r))) > 0 for every pair.
  const auto pi = RowLogprobs(policy, pairs), ref = RowLogprobs(reference, pairs);
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_GT((pi.chosen[i] - ref.chosen[i]) - (pi.rejected[i] - ref.rejected[i]), 0.0)
        << "pair " << i << ": the policy now prefers its chosen answer more than the reference does";
  }
}

}  // namespace
