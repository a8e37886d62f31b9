// Lesson 07, advanced: what ignored positions may not touch, label smoothing's exact definition,
// z-loss's mask and normaliser, logits of 1e4 and bf16, the gradient, clear errors; frozen and
// aliased parameters; the AdamW mistakes (decay order, L2 instead of decoupled decay, eps placement,
// step counts), state loading errors; Lion's momentum order; schedule edge cases and validation.
// Grade with:  ctest --preset default -R lesson07.advanced
#include "optim_fixtures.h"

#include <llm/common/testing.h>
#include <llm/train/adamw.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/lion.h>
#include <llm/train/optimizer.h>
#include <llm/train/schedule.h>

#include <cmath>

namespace {

using lesson07::DeepCopy;
using lesson07::F32;
using lesson07::FirstDifference;
using lesson07::Ids;
using lesson07::kReductions;
using lesson07::OneGroup;
using lesson07::OptimTest;
using lesson07::ParamWithGrad;
using lesson07::ReductionName;
using lesson07::TinyNet;
using lesson07::TorchCrossEntropy;
using lesson07::VaryingLr;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class CrossEntropyAdvanced : public OptimTest {};
class ParamGroupsAdvanced : public OptimTest {};
class AdamWAdvanced : public OptimTest {};
class LionAdvanced : public OptimTest {};
class ScheduleAdvanced : public OptimTest {};

llm::CrossEntropyOptions Options(llm::Reduction reduction, double label_smoothing = 0.0, double z_loss = 0.0) {
  llm::CrossEntropyOptions o;
  o.reduction = reduction;
  o.label_smoothing = label_smoothing;
  o.z_loss = z_loss;
  return o;
}

// ------------------------------------------------------------------------------------ cross-entropy

TEST_F(CrossEntropyAdvanced, TheMeanDividesByTheCountedPositionsNotByN) {
  // Rows 1 and 3 are ignored (prompt or padding). Counted:
  //   row 0: logits (0, 0, 0), target 1      -> -log(1/3) = ln 3
  //   row 2: logits (ln 3, 0, 0), target 0   -> p = 3/5, -log(3/5) = ln(5/3)
  // mean = (ln 3 + ln 5/3) / 2 = ln(5) / 2 = 0.8047; dividing by all 4 rows would give 0.4024.
  const float ln3 = std::log(3.0f);
  auto logits = F32({0, 0, 0, 5, -5, 10, ln3, 0, 0, 30, 1, -2}).view({4, 3});
  auto targets = Ids({1, -100, 0, -100});
  // 1e-6: fp32 arithmetic on values near 1.
  EXPECT_NEAR(llm::cross_entropy(logits, targets).item<double>(), std::log(5.0) / 2, 1e-6) << "mean";
  EXPECT_NEAR(llm::cross_entropy(logits, targets, Options(llm::Reduction::kSum)).item<double>(), std::log(5.0), 1e-6)
      << "sum";
}

TEST_F(CrossEntropyAdvanced, LogitsAtIgnoredPositionsChangeNothingEvenWithSmoothingAndZLoss) {
  constexpr int64_t N = 8, V = 6;
  auto logits = torch::randn({N, V});
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  auto ignored = Ids({1, 4, 5});
  targets.index_fill_(0, ignored, -100);
  auto changed = logits.clone();
  changed.index_copy_(0, ignored, torch::randn({3, V}) * 50);  // wild logits where nothing counts
  for (auto reduction : kReductions) {
    auto o = Options(reduction, /*label_smoothing=*/0.2, /*z_loss=*/1e-3);
    auto a = llm::cross_entropy(logits, targets, o), b = llm::cross_entropy(changed, targets, o);
    // 1e-6 leaves room for an implementation that rounds differently (a global max); a smoothing or
    // z-loss term left in at ignored rows moves the loss by ~1.
    EXPECT_TRUE(AllClose(b, a, 1e-6, 1e-6)) << ReductionName(reduction);
    if (reduction == llm::Reduction::kNone) {
      EXPECT_TRUE(AllClose(b.index_select(0, ignored), torch::zeros({3}), 0, 0)) << "ignored positions give 0";
    }
  }
}

TEST_F(CrossEntropyAdvanced, LabelSmoothingSpreadsEpsOverAllVClassesIncludingTheTarget) {
  // logits (ln 2, 0, 0): p = (1/2, 1/4, 1/4), -log p = (ln 2, 2 ln 2, 2 ln 2); target 0, eps 0.3.
  //   PyTorch, q = 0.7 onehot + 0.1:    0.7 ln 2 + 0.1 * 5 ln 2 = 1.2 ln 2
  //   eps / (V - 1) off the target:     0.7 ln 2 + 0.15 * 4 ln 2 = 1.3 ln 2
  //   nll not scaled by (1 - eps):      ln 2 + 0.1 * 5 ln 2     = 1.5 ln 2
  auto logits = F32({std::log(2.0f), 0, 0}).view({1, 3});
  const double ln2 = std::log(2.0);
  EXPECT_NEAR(llm::cross_entropy(logits, Ids({0}), Options(llm::Reduction::kMean, 0.3)).item<double>(), 1.2 * ln2,
              1e-6);
  // eps = 1: the target no longer matters, the loss is the mean of -log p over the classes, 5/3 ln 2.
  for (int64_t target : {0, 1, 2}) {
    EXPECT_NEAR(llm::cross_entropy(logits, Ids({target}), Options(llm::Reduction::kMean, 1.0)).item<double>(),
                5.0 / 3.0 * ln2, 1e-6)
        << "label_smoothing 1, target " << target;
  }
}

TEST_F(CrossEntropyAdvanced, ZLossCountsOnlyTheCountedPositionsWithTheSameNormaliser) {
  constexpr int64_t N = 8, V = 6;
  constexpr double z = 1e-3;
  auto logits = torch::randn({N, V}) * 3;
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  targets.index_fill_(0, Ids({0, 3, 6}), -100);
  auto counted = targets.ne(-100);
  // In float64 from the definition: z * logsumexp(row)^2 at each counted row.
  auto lse2 = torch::logsumexp(logits.to(torch::kFloat64), -1).pow(2) * counted.to(torch::kFloat64);  // (N,)
  for (auto reduction : kReductions) {
    auto with_z = llm::cross_entropy(logits, targets, Options(reduction, 0.1, z));
    auto without = llm::cross_entropy(logits, targets, Options(reduction, 0.1, 0.0));
    torch::Tensor expected = z * lse2;
    if (reduction == llm::Reduction::kSum) expected = expected.sum();
    if (reduction == llm::Reduction::kMean) expected = expected.sum() / counted.sum().item<double>();
    // 2e-6: the difference of two fp32 losses of size ~3.
    EXPECT_TRUE(AllClose(with_z - without, expected, 0, 2e-6)) << ReductionName(reduction);
  }
}

TEST_F(CrossEntropyAdvanced, StaysFiniteAndExactForLogitsOf1e4) {
  // exp(1e4) overflows fp32 (which ends near exp(88)); after subtracting the row max nothing does.
  //   row 0: (1e4, 0, -1e4) target 0           -> 0
  //   row 1: (1e4, 1e4 - 1, 0) target 1        -> 1 + log(1 + e^-1) = 1.3132617
  //   row 2: (1e4, -1e4, 0) target 1           -> 2e4
  auto logits = F32({1e4, 0, -1e4, 1e4, 1e4 - 1, 0, 1e4, -1e4, 0}).view({3, 3}).requires_grad_();
  auto targets = Ids({0, 1, 1});
  auto none = llm::cross_entropy(logits, targets, Options(llm::Reduction::kNone));
  ASSERT_TRUE(torch::isfinite(none).all().item<bool>()) << none;
  // atol 2e-3: fp32 numbers near 1e4 are 2^-10 ~ 1e-3 apart.
  EXPECT_NEAR(none[0].item<double>(), 0.0, 2e-3);
  EXPECT_NEAR(none[1].item<double>(), 1.0 + std::log1p(std::exp(-1.0)), 2e-3);
  EXPECT_NEAR(none[2].item<double>(), 2e4, 4e-3);
  auto mean = llm::cross_entropy(logits, targets);
  mean.backward();
  EXPECT_TRUE(torch::isfinite(logits.grad()).all().item<bool>()) << "the gradient must be finite too";
  EXPECT_TRUE(AllClose(mean, TorchCrossEntropy(logits.detach(), targets, Options(llm::Reduction::kMean)), 1e-6, 2e-3));
}

TEST_F(CrossEntropyAdvanced, Bf16LogitsGiveTheFp32AnswerOfTheSameNumbers) {
  // Mixed precision hands the loss bf16 logits. It must upcast before log-sum-exp: bf16 numbers
  // near 8 are 2^-4 apart, so a bf16 log-sum-exp is off by ~1e-2, while fp32 on the same values
  // agrees with torch's fp32 result up to summation order (~1e-6).
  constexpr int64_t N = 16, V = 50;
  auto logits = (torch::randn({N, V}) * 4).to(torch::kBFloat16);
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  targets[3] = -100;
  for (auto reduction : kReductions) {
    auto o = Options(reduction, 0.1);
    auto out = llm::cross_entropy(logits, targets, o);
    EXPECT_EQ(out.scalar_type(), torch::kFloat32) << ReductionName(reduction) << ": the loss is reported in fp32";
    auto expected = TorchCrossEntropy(logits.to(torch::kFloat32), targets, o);
    EXPECT_TRUE(AllClose(out, expected, 1e-5, 1e-5)) << ReductionName(reduction);
  }
}

TEST_F(CrossEntropyAdvanced, GradientIsSoftmaxMinusTheTargetDistributionOverTheCount) {
  // d loss / d z = (softmax(z) - q + 2 z_loss lse softmax(z)) / count at counted rows, 0 at ignored
  // rows, with q = (1 - eps) onehot(y) + eps / V.
  constexpr int64_t N = 6, V = 5;
  constexpr double eps = 0.1, z = 1e-3;
  auto logits = (torch::randn({N, V}) * 2).requires_grad_();
  auto targets = Ids({2, -100, 0, 4, -100, 1});
  auto counted = targets.ne(-100).to(torch::kFloat64).unsqueeze(1);  // (N, 1)
  llm::cross_entropy(logits, targets, Options(llm::Reduction::kMean, eps, z)).backward();

  auto z64 = logits.detach().to(torch::kFloat64);
  auto softmax = torch::softmax(z64, -1);
  auto q = torch::one_hot(targets.clamp_min(0), V).to(torch::kFloat64) * (1 - eps) + eps / V;
  auto lse = torch::logsumexp(z64, -1, /*keepdim=*/true);
  auto expected = (softmax - q + 2 * z * lse * softmax) * counted / counted.sum();
  // 1e-6: fp32 gradients of size <= 0.25.
  EXPECT_TRUE(AllClose(logits.grad(), expected, 1e-5, 1e-6)) << "mean, label smoothing and z-loss";

  // And equal to torch's own gradient without z-loss, for the sum.
  auto ours = logits.detach().clone().requires_grad_(), theirs = logits.detach().clone().requires_grad_();
  llm::cross_entropy(ours, targets, Options(llm::Reduction::kSum, eps)).backward();
  TorchCrossEntropy(theirs, targets, Options(llm::Reduction::kSum, eps)).backward();
  EXPECT_TRUE(AllClose(ours.grad(), theirs.grad(), 1e-5, 1e-6)) << "sum, label smoothing";
}

TEST_F(CrossEntropyAdvanced, AllPositionsIgnoredGivesNaNForTheMeanLikePyTorch) {
  auto logits = torch::randn({3, 4});
  auto targets = Ids({-100, -100, -100});
  for (double eps : {0.0, 0.1}) {
    EXPECT_TRUE(std::isnan(llm::cross_entropy(logits, targets, Options(llm::Reduction::kMean, eps)).item<double>()))
        << "0 / 0, label_smoothing " << eps << "; torch gives "
        << TorchCrossEntropy(logits, targets, Options(llm::Reduction::kMean, eps)).item<double>();
    EXPECT_EQ(llm::cross_entropy(logits, targets, Options(llm::Reduction::kSum, eps)).item<double>(), 0.0);
    EXPECT_TRUE(
        AllClose(llm::cross_entropy(logits, targets, Options(llm::Reduction::kNone, eps)), torch::zeros({3}), 0, 0));
  }
}

TEST_F(CrossEntropyAdvanced, RejectsBadTargetsAndOptionsNamingTheBadValue) {
  auto logits = torch::randn({3, 5});
  EXPECT_TRUE(ThrowsWith([&] { llm::cross_entropy(logits, Ids({0, 9, 1})); }, {"9", "0..4"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::cross_entropy(logits, Ids({0, -3, 1})); }, {"-3", "0..4"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        auto o = Options(llm::Reduction::kMean);
        o.ignore_index = -1;  // -100 is then an ordinary, out-of-range target
        llm::cross_entropy(logits, Ids({0, -100, 1}), o);
      },
      {"-100"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::cross_entropy(logits, Ids({0, 1, 2}), Options(llm::Reduction::kMean, 1.5));
      },
      {"label_smoothing", "1.5"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::cross_entropy(logits, Ids({0, 1, 2}), Options(llm::Reduction::kMean, -0.1));
      },
      {"label_smoothing", "-0.1"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::cross_entropy(logits, Ids({0, 1, 2}), Options(llm::Reduction::kMean, 0.0, -1.0));
      },
      {"z_loss", "-1"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::cross_entropy(logits, F32({0, 1, 2})); }, {"integer"}));
}

TEST_F(CrossEntropyAdvanced, RejectsWrongShapesNamingThem) {
  // (B, T, V) logits must be flattened to (B T, V) by the caller; mismatched N is a bug upstream.
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::cross_entropy(torch::randn({2, 3, 5}), torch::zeros({2, 3}, torch::kLong));
      },
      {"[2, 3, 5]", "[2, 3]"}));
  EXPECT_TRUE(ThrowsWith(
      [] {
        llm::cross_entropy(torch::randn({4, 5}), torch::zeros({3}, torch::kLong));
      },
      {"[4, 5]", "[3]"}));
}

// ---------------------------------------------------------------------------------- param groups

TEST_F(ParamGroupsAdvanced, LeavesFrozenParametersOutAndDropsEmptyGroups) {
  torch::OrderedDict<std::string, torch::Tensor> named;
  named.insert("frozen.weight", torch::randn({4, 4}));  // requires_grad false: frozen (LoRA's base, lesson 11)
  named.insert("norm.weight", torch::ones({4}).requires_grad_());
  named.insert("frozen.bias", torch::randn({4}));
  auto groups = llm::decay_param_groups(named, 1e-3, 0.1);
  ASSERT_EQ(groups.size(), 1u) << "the decay group would be empty: dropped";
  EXPECT_EQ(groups[0].name, "no_decay");
  EXPECT_EQ(groups[0].names, (std::vector<std::string>{"norm.weight"})) << "frozen parameters are left out";
  EXPECT_EQ(groups[0].weight_decay, 0.0);

  torch::OrderedDict<std::string, torch::Tensor> all_frozen;
  all_frozen.insert("w", torch::randn({3, 3}));
  EXPECT_TRUE(llm::decay_param_groups(all_frozen, 1e-3, 0.1).empty()) << "nothing to train: no groups";
}

TEST_F(ParamGroupsAdvanced, HoldTheModulesOwnTensorsSoTheOptimizerTrainsTheModule) {
  // A copy (clone, or detach then requires_grad) would be trained instead of the module's weights.
  torch::nn::Linear linear(4, 3);
  auto groups = llm::decay_param_groups(linear->named_parameters(), 0.1, 0.1);
  const auto before = linear->weight.detach().clone();
  llm::AdamW opt(std::move(groups));
  linear(torch::randn({8, 4})).pow(2).sum().backward();
  opt.step();
  EXPECT_FALSE(torch::equal(linear->weight.detach(), before)) << "the module's weight did not move";
  EXPECT_NEAR((linear->weight.detach() - before).abs().max().item<double>(), 0.1, 0.02)
      << "one AdamW step moves each weight by about lr (0.1)";
}

// ----------------------------------------------------------------------------------------- AdamW

TEST_F(AdamWAdvanced, DecayShrinksTheOldParameterWithThisStepsLrBeforeTheAdamStep) {
  // p = (2, -4), g = (1, -1), lr 0.5, wd 0.5. Step 1's Adam update is lr * sign(g) = (0.5, -0.5).
  //   decay first (PyTorch):     p * (1 - 0.25) - (0.5, -0.5)   = (1.0, -2.5)
  //   decay after the update:    (p - (0.5, -0.5)) * 0.75       = (1.125, -2.625)
  //   decay without lr (1 - wd): p * 0.5 - (0.5, -0.5)          = (0.5, -1.5)
  auto p = ParamWithGrad({2, -4}, {1, -1});
  llm::AdamW opt(OneGroup({"p"}, {p}, 0.5, 0.5));
  opt.step();
  EXPECT_TRUE(AllClose(p, F32({1.0f, -2.5f}), 0, 1e-6));
}

TEST_F(AdamWAdvanced, WithAZeroGradientOnlyTheDecayMovesTheParameter) {
  // Decoupled decay is p *= 1 - lr wd whatever the gradient. L2 regularisation (adding wd * p to
  // the gradient) would instead take a full Adam step of lr towards 0: (0.89, -1.88, 0.395).
  auto p = ParamWithGrad({1, -2, 0.5}, {0, 0, 0});
  llm::AdamW opt(OneGroup({"p"}, {p}, 0.1, 0.1));
  opt.step();
  // 1e-6: fp32 numbers near 2 are 2.4e-7 apart; L2 would be off by 0.1.
  EXPECT_TRUE(AllClose(p, F32({0.99f, -1.98f, 0.495f}), 0, 1e-6)) << "p * (1 - 0.1 * 0.1)";
  opt.step();
  EXPECT_TRUE(AllClose(p, F32({0.9801f, -1.9602f, 0.49005f}), 0, 1e-6)) << "p * 0.99^2";
}

TEST_F(AdamWAdvanced, EpsIsAddedAfterTheBiasCorrectedSquareRoot) {
  // Gradients the size of eps make its place visible. With m_hat = g and sqrt(v_hat) = |g| (steps 1
  // and 2 with the same g), each step is lr * g / (|g| + eps):
  //   g = 1e-8 -> 0.5 lr,  -3e-8 -> -0.75 lr,  1e-7 -> (10/11) lr,  1e-9 -> (1/11) lr
  // eps inside the square root, sqrt(v_hat + eps) = 1e-4, would give ~1e-4 lr; eps added before
  // dividing by sqrt(1 - b2^t) would give g / (|g| + 31.6 eps) at step 1.
  auto p = ParamWithGrad({0, 0, 0, 0}, {1e-8, -3e-8, 1e-7, 1e-9});
  constexpr double lr = 0.1;
  llm::AdamW opt(OneGroup({"p"}, {p}, lr, 0.0), {0.9, 0.999, 1e-8});
  auto step = -lr * F32({0.5, -0.75, 10.0 / 11, 1.0 / 11});
  opt.step();
  EXPECT_TRUE(AllClose(p, step, /*rtol=*/1e-4, /*atol=*/0)) << "step 1";
  opt.step();
  EXPECT_TRUE(AllClose(p, 2 * step, 1e-4, 0)) << "step 2";
}

TEST_F(AdamWAdvanced, SkipsParametersWithoutAGradientAndCountsStepsPerParameter) {
  auto a = ParamWithGrad({1, 2}, {1, -1});
  auto b = F32({3, 4}).requires_grad_();  // no gradient yet (an unused branch, a frozen-then-thawed layer)
  llm::AdamW opt(OneGroup({"a", "b"}, {a, b}, 0.1, 0.5));
  opt.step();
  EXPECT_TRUE(torch::equal(b.detach(), F32({3, 4}))) << "no gradient: no update and no decay";
  for (const auto& [key, value] : opt.state_dict()) EXPECT_NE(key.rfind("b.", 0), 0u) << "state for b: " << key;
  // b's first gradient starts b's own count at step 1: decay, then a step of lr * sign(g).
  // A shared count (step 2) would give a step of 0.74 lr: (0.1 / 0.19) / sqrt(0.001 / 0.001999).
  b.mutable_grad() = F32({1, -1});
  opt.step();
  EXPECT_TRUE(AllClose(b, F32({3 * 0.95f - 0.1f, 4 * 0.95f + 0.1f}), 0, 1e-6)) << "b's first step";
  auto state = opt.state_dict();
  ASSERT_TRUE(state.count("a.step") && state.count("b.step")) << "state keys are '<name>.step'";
  EXPECT_EQ(state.at("a.step").item<int64_t>(), 2);
  EXPECT_EQ(state.at("b.step").item<int64_t>(), 1);
}

TEST_F(AdamWAdvanced, SetLrChangesTheLearningRateOfEveryGroup) {
  auto net = TinyNet::Random();
  llm::AdamW opt(net.Groups(/*lr=*/1.0, /*weight_decay=*/0.0));
  opt.set_lr(0.02);
  for (const auto& g : opt.groups()) EXPECT_EQ(g.lr, 0.02) << g.name;
  const auto before = net.Clone();
  net.Backward(0);
  opt.step();
  // First step: every element moves by lr * |g| / (|g| + eps). rtol 1e-3: eps / |g| and fp32 rounding.
  for (size_t i = 0; i < before.Params().size(); ++i) {
    auto moved = (net.Params()[i] - before.Params()[i]).abs().detach();
    auto grad_nonzero = net.Params()[i].grad().abs() > 1e-4;  // eps / |g| <= 1e-4
    EXPECT_TRUE(
        AllClose(moved.masked_select(grad_nonzero), torch::full({grad_nonzero.sum().item<int64_t>()}, 0.02), 1e-3, 0))
        << "parameter " << i;
  }
}

TEST_F(AdamWAdvanced, SetLrScalesEachGroupByItsOwnLrScale) {
  // A group's lr is the schedule's lr x its lr_scale (PyTorch's per-group base lr under LambdaLR):
  // scale 0 holds a group still (no step and no decay), scale 10 steps ten times as far.
  auto still = F32({1, -2}).requires_grad_(), fast = F32({3, 4}).requires_grad_();
  still.mutable_grad() = F32({0.5, -0.5});
  fast.mutable_grad() = F32({0.5, -0.5});
  std::vector<llm::ParamGroup> groups = {llm::ParamGroup{"still", {"still"}, {still}, 1.0, 0.1, 0.0},
                                         llm::ParamGroup{"fast", {"fast"}, {fast}, 1.0, 0.0, 10.0}};
  llm::AdamW opt(std::move(groups));
  opt.set_lr(0.01);
  EXPECT_EQ(opt.groups()[0].lr, 0.0) << "lr_scale 0";
  EXPECT_DOUBLE_EQ(opt.groups()[1].lr, 0.1) << "lr_scale 10";
  opt.step();
  EXPECT_TRUE(torch::equal(still.detach(), F32({1, -2}))) << "lr 0: neither an update nor decay";
  // First step of lr * sign(g) (bias correction), with lr = 0.01 x 10.
  EXPECT_TRUE(AllClose(fast, F32({3 - 0.1f, 4 + 0.1f}), 0, 1e-6)) << "the lr_scale 10 group's first step";
}

TEST_F(AdamWAdvanced, StateDictHoldsEachParametersMomentsAndStepByName) {
  auto net = TinyNet::Random();
  llm::AdamW opt(net.Groups(1e-2, 0.1), {0.9, 0.95, 1e-8});
  net.Backward(0);
  const auto g = net.w1.grad().clone();
  opt.step();
  auto state = opt.state_dict();
  EXPECT_EQ(state.size(), 12u) << "exp_avg, exp_avg_sq and step for each of the 4 parameters";
  ASSERT_TRUE(state.count("w1.exp_avg") && state.count("w1.exp_avg_sq") && state.count("w1.step"));
  EXPECT_TRUE(AllClose(state.at("w1.exp_avg"), 0.1 * g, 1e-6, 1e-9)) << "m = (1 - b1) g after step 1";
  EXPECT_TRUE(AllClose(state.at("w1.exp_avg_sq"), 0.05 * g * g, 1e-5, 1e-12)) << "v = (1 - b2) g^2 after step 1";
  EXPECT_EQ(state.at("w1.step").item<int64_t>(), 1);
}

TEST_F(AdamWAdvanced, LoadStateDictRejectsMissingMisshapenAndUnknownEntries) {
  auto net = TinyNet::Random();
  llm::AdamW opt(net.Groups(1e-2, 0.1));
  net.Backward(0);
  opt.step();
  const auto good = DeepCopy(opt.state_dict());
  llm::AdamW fresh(net.Clone().Groups(1e-2, 0.1));
  EXPECT_NO_THROW(fresh.load_state_dict(good));

  auto missing = good;
  missing.erase("w1.exp_avg_sq");
  EXPECT_TRUE(ThrowsWith([&] { fresh.load_state_dict(missing); }, {"w1.exp_avg_sq"}));
  auto misshapen = good;
  misshapen["w1.exp_avg"] = torch::zeros({2, 2});
  EXPECT_TRUE(ThrowsWith([&] { fresh.load_state_dict(misshapen); }, {"w1.exp_avg", "[2, 2]", "[6, 4]"}));
  auto unknown = good;
  unknown["w9.exp_avg"] = torch::zeros({2});
  unknown["w9.exp_avg_sq"] = torch::zeros({2});
  unknown["w9.step"] = torch::tensor(1, torch::kLong);
  EXPECT_TRUE(ThrowsWith([&] { fresh.load_state_dict(unknown); }, {"w9.exp_avg"}))
      << "a state for parameters this optimizer does not have is a mismatched checkpoint: name the keys";
  auto no_step = good;
  no_step.erase("w2.step");
  EXPECT_TRUE(ThrowsWith([&] { fresh.load_state_dict(no_step); }, {"w2.step"})) << "moments without their step count";
}

// ------------------------------------------------------------------------------------------ Lion

TEST_F(LionAdvanced, MomentumIsUpdatedAfterTheSignStepWithBeta2) {
  // p = 0, lr 0.1, betas (0.9, 0.99), g1 = (1, 1, 0), g2 = (-0.5, -0.085, 0).
  // Step 1: c = 0.1 g1 -> p = (-0.1, -0.1, 0); m = 0.01 g1 = (0.01, 0.01, 0).
  // Step 2: c = 0.9 m + 0.1 g2 = (-0.041, +0.0005, 0) -> p = (0, -0.2, 0); m = 0.99 m + 0.01 g2.
  // Momentum with beta1 (m = 0.1 g1) makes c_0 = +0.04: p_0 = -0.2. Updating m before the step
  // (c = 0.9 (0.99 m + 0.01 g2) + 0.1 g2) makes c_1 = -0.000355: p_1 = 0. Element 2: sign(0) = 0.
  auto p = ParamWithGrad({0, 0, 0}, {1, 1, 0});
  llm::Lion opt(OneGroup({"p"}, {p}, 0.1, 0.0), {0.9, 0.99});
  opt.step();
  EXPECT_TRUE(AllClose(p, F32({-0.1f, -0.1f, 0}), 0, 1e-7)) << "step 1";
  p.mutable_grad() = F32({-0.5, -0.085, 0});
  opt.step();
  EXPECT_TRUE(AllClose(p, F32({0, -0.2f, 0}), 0, 1e-7)) << "step 2";
  EXPECT_TRUE(AllClose(opt.state_dict().at("p.exp_avg"), F32({0.0099f - 0.005f, 0.0099f - 0.00085f, 0}), 0, 1e-8))
      << "m = 0.99 m + 0.01 g2";
}

TEST_F(LionAdvanced, AZeroDirectionLeavesTheParameterWhereItIs) {
  // sign(0) = 0: a parameter with zero gradient and zero momentum does not move (c >= 0 ? 1 : -1 would).
  auto p = ParamWithGrad({0.5, -0.5, 2}, {0, 0, 0});
  llm::Lion opt(OneGroup({"p"}, {p}, 0.1, 0.0));
  opt.step();
  EXPECT_TRUE(torch::equal(p.detach(), F32({0.5, -0.5, 2})));
}

TEST_F(LionAdvanced, ResumesBitExactlyFromItsStateDict) {
  constexpr int64_t kBefore = 20, kAfter = 20;
  auto train = [](llm::Optimizer& opt, const TinyNet& net, int64_t from, int64_t to) {
    for (int64_t step = from; step < to; ++step) {
      opt.set_lr(VaryingLr(step) / 10);
      opt.zero_grad();
      net.Backward(step);
      opt.step();
    }
  };
  auto a = TinyNet::Random();
  llm::Lion run(a.Groups(1e-3, 1.0));
  train(run, a, 0, kBefore);
  auto saved = DeepCopy(run.state_dict());
  auto b = a.Clone();
  train(run, a, kBefore, kBefore + kAfter);
  llm::Lion resumed(b.Groups(1e-3, 1.0));
  resumed.load_state_dict(saved);
  train(resumed, b, kBefore, kBefore + kAfter);
  EXPECT_EQ(FirstDifference(b.Params(), a.Params()), "") << "the resumed run must equal the uninterrupted one";

  auto misshapen = saved;
  misshapen["w1.exp_avg"] = torch::zeros({4, 6});
  EXPECT_TRUE(ThrowsWith([&] { resumed.load_state_dict(misshapen); }, {"w1.exp_avg", "[4, 6]", "[6, 4]"}));
}

// ------------------------------------------------------------------------------------- schedules

llm::ScheduleOptions Schedule(const std::string& kind, int64_t warmup, int64_t total, double decay_fraction = 0.2) {
  llm::ScheduleOptions o;
  o.kind = kind;
  o.peak_lr = 1e-3;
  o.min_lr = 1e-4;
  o.warmup_steps = warmup;
  o.total_steps = total;
  o.decay_fraction = decay_fraction;
  return o;
}

TEST_F(ScheduleAdvanced, WithoutWarmupStartsAtThePeak) {
  for (const std::string kind : {"cosine", "wsd", "constant"}) {
    EXPECT_NEAR(llm::learning_rate_at(Schedule(kind, 0, 100), 0), 1e-3, 1e-15) << kind;
  }
  const auto cosine = Schedule("cosine", 0, 100);
  EXPECT_NEAR(llm::learning_rate_at(cosine, 50), 5.5e-4, 1e-15) << "halfway from 0 to S";
  EXPECT_NEAR(llm::learning_rate_at(cosine, 100), 1e-4, 1e-15);
}

TEST_F(ScheduleAdvanced, WarmupAsLongAsTrainingLeavesNothingToDecayAndNeverDividesByZero) {
  // W = S = 10: steps 0..9 warm up; at S the schedule has ended (min), as it does for any S.
  for (const std::string kind : {"cosine", "wsd"}) {
    const auto o = Schedule(kind, 10, 10);
    for (int64_t step = 0; step < 10; ++step) {
      EXPECT_NEAR(llm::learning_rate_at(o, step), 1e-3 * static_cast<double>(step + 1) / 11, 1e-15) << kind << step;
    }
    for (int64_t step : {10, 11, 50}) {
      const double lr = llm::learning_rate_at(o, step);
      EXPECT_TRUE(std::isfinite(lr)) << kind << " step " << step;
      EXPECT_NEAR(lr, 1e-4, 1e-15) << kind << " step " << step;
    }
  }
}

TEST_F(ScheduleAdvanced, WsdRoundsTheDecayLengthAndNeverStartsDecayingInsideWarmup) {
  // decay fraction 0.127 of S = 100: D = round(12.7) = 13 (not 12), so the decay starts at 87.
  const auto o = Schedule("wsd", 10, 100, 0.127);
  EXPECT_NEAR(llm::learning_rate_at(o, 86), 1e-3, 1e-15);
  EXPECT_NEAR(llm::learning_rate_at(o, 87), 1e-3, 1e-15) << "the decay starts from the peak";
  EXPECT_NEAR(llm::learning_rate_at(o, 88), 1e-4 + 9e-4 * 12 / 13, 1e-15) << "12 of 13 decay steps left";
  EXPECT_NEAR(llm::learning_rate_at(o, 100), 1e-4, 1e-15);
  // decay fraction 0.8 with W = 50: S - D = 20 lies inside warmup, so the decay starts at W instead.
  const auto late = Schedule("wsd", 50, 100, 0.8);
  EXPECT_NEAR(llm::learning_rate_at(late, 49), 1e-3 * 50 / 51, 1e-15) << "warmup is untouched";
  EXPECT_NEAR(llm::learning_rate_at(late, 50), 1e-3, 1e-15) << "the peak at W";
  EXPECT_NEAR(llm::learning_rate_at(late, 75), 5.5e-4, 1e-15) << "halfway from W to S";
}

TEST_F(ScheduleAdvanced, RejectsBadOptionsNamingTheBadValue) {
  auto with = [](auto change) {
    auto o = Schedule("cosine", 10, 100);
    change(o);
    return [o] { llm::learning_rate_at(o, 0); };
  };
  EXPECT_TRUE(ThrowsWith(with([](auto& o) { o.kind = "linear"; }), {"'linear'", "cosine", "wsd", "constant"}));
  EXPECT_TRUE(ThrowsWith(with([](auto& o) { o.min_lr = 2e-3; }), {"min_lr"}));
  EXPECT_TRUE(ThrowsWith(with([](auto& o) { o.peak_lr = 0; }), {"peak_lr"}));
  EXPECT_TRUE(ThrowsWith(with([](auto& o) { o.warmup_steps = 150; }), {"warmup_steps", "150", "100"}));
  EXPECT_TRUE(ThrowsWith(with([](auto& o) { o.total_steps = 0; }), {"total_steps"}));
  EXPECT_TRUE(ThrowsWith(with([](auto& o) { o.decay_fraction = 1.5; }), {"decay_fraction", "1.5"}));
  EXPECT_TRUE(ThrowsWith([] { llm::learning_rate_at(Schedule("cosine", 10, 100), -1); }, {"step", "-1"}));
}

}  // namespace
