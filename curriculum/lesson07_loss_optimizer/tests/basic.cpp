// Lesson 07, basic: cross-entropy against torch's and PyTorch's measured values, z-loss, the two
// parameter groups, AdamW equal to torch::optim::AdamW bit for bit and resuming from its state,
// Lion's golden step, and the warmup + cosine / WSD / constant learning-rate schedules.
// Grade with:  ctest --preset default -R lesson07.basic
#include "optim_fixtures.h"

#include <llm/common/testing.h>
#include <llm/train/adamw.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/lion.h>
#include <llm/train/optimizer.h>
#include <llm/train/schedule.h>

#include <algorithm>
#include <cmath>
#include <memory>

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

constexpr int64_t N = 12, V = 7;  // positions, vocabulary

class CrossEntropyTest : public OptimTest {};
class ParamGroupsTest : public OptimTest {};
class AdamWTest : public OptimTest {};
class LionTest : public OptimTest {};
class ScheduleTest : public OptimTest {};

llm::CrossEntropyOptions Options(llm::Reduction reduction, double label_smoothing = 0.0, int64_t ignore_index = -100) {
  llm::CrossEntropyOptions o;
  o.reduction = reduction;
  o.label_smoothing = label_smoothing;
  o.ignore_index = ignore_index;
  return o;
}

// Random targets with a few positions set to `ignore_index`.
torch::Tensor TargetsWithIgnored(int64_t ignore_index) {
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  targets.index_put_({torch::rand({N}) < 0.3}, ignore_index);
  targets[1] = ignore_index;  // at least one, whatever the draw
  return targets;
}

// An example measured with torch.nn.functional.cross_entropy in PyTorch 1.13 (Python, Debian's
// python3-torch, the same ATen as LibTorch 1.13): row 1 is ignored.
torch::Tensor MeasuredLogits() {
  return F32({2, .5, -1, 0, .1, .2, .3, .4, 1, -1, .5, 2}).view({3, 4});
}
torch::Tensor MeasuredTargets() {
  return Ids({0, -100, 3});
}

// ------------------------------------------------------------------------------------ cross-entropy

TEST_F(CrossEntropyTest, MatchesTorchForMeanSumAndNone) {
  auto logits = torch::randn({N, V}) * 2;
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  for (auto reduction : kReductions) {
    auto ours = llm::cross_entropy(logits, targets, Options(reduction));
    auto theirs = TorchCrossEntropy(logits, targets, Options(reduction));
    ASSERT_EQ(ours.sizes(), theirs.sizes()) << ReductionName(reduction);
    // fp32 on both sides; log_softmax + gather vs logsumexp - z_y differ by a few ulps.
    EXPECT_TRUE(AllClose(ours, theirs, /*rtol=*/1e-5, /*atol=*/1e-6)) << ReductionName(reduction);
  }
}

TEST_F(CrossEntropyTest, MatchesTorchWithIgnoredPositions) {
  auto logits = torch::randn({N, V}) * 2;
  for (int64_t ignore_index : {-100, -1}) {  // PyTorch / Hugging Face's -100 and nanochat's -1
    auto targets = TargetsWithIgnored(ignore_index);
    for (auto reduction : kReductions) {
      auto o = Options(reduction, 0.0, ignore_index);
      auto ours = llm::cross_entropy(logits, targets, o);
      EXPECT_TRUE(AllClose(ours, TorchCrossEntropy(logits, targets, o), 1e-5, 1e-6))
          << ReductionName(reduction) << ", ignore_index " << ignore_index;
    }
  }
}

TEST_F(CrossEntropyTest, MatchesTorchWithLabelSmoothingWithAndWithoutIgnoredPositions) {
  auto logits = torch::randn({N, V}) * 2;
  for (bool with_ignored : {false, true}) {
    auto targets = with_ignored ? TargetsWithIgnored(-100) : torch::randint(0, V, {N}, torch::kLong);
    for (double eps : {0.1, 0.3}) {
      for (auto reduction : kReductions) {
        auto o = Options(reduction, eps);
        auto ours = llm::cross_entropy(logits, targets, o);
        EXPECT_TRUE(AllClose(ours, TorchCrossEntropy(logits, targets, o), 1e-5, 1e-6))
            << ReductionName(reduction) << ", label_smoothing " << eps << (with_ignored ? ", with" : ", without")
            << " ignored positions";
      }
    }
  }
}

TEST_F(CrossEntropyTest, GivesPyTorchsMeasuredValuesWithAndWithoutSmoothing) {
  // Measured with PyTorch 1.13 to 4-5 digits; the further digits are the formula's (LossNLL.cpp,
  // cross_entropy_loss_label_smoothing, computed in double).
  // The mean divides by the 2 counted rows, and the ignored row adds nothing to either term.
  struct Case {
    double eps, mean, sum, none0, none2;
  };
  for (const Case& c :
       {Case{0.0, 0.4187657, 0.8375315, 0.3423496, 0.4951819}, Case{0.1, 0.5687657, 1.1375315, 0.5048496, 0.6326819}}) {
    auto mean = llm::cross_entropy(MeasuredLogits(), MeasuredTargets(), Options(llm::Reduction::kMean, c.eps));
    auto sum = llm::cross_entropy(MeasuredLogits(), MeasuredTargets(), Options(llm::Reduction::kSum, c.eps));
    auto none = llm::cross_entropy(MeasuredLogits(), MeasuredTargets(), Options(llm::Reduction::kNone, c.eps));
    // 1e-6: fp32 rounding of values near 1 is ~1e-7; the wrong formulas are off by > 1e-2.
    EXPECT_NEAR(mean.item<double>(), c.mean, 1e-6) << "mean, label_smoothing " << c.eps;
    EXPECT_NEAR(sum.item<double>(), c.sum, 1e-6) << "sum, label_smoothing " << c.eps;
    EXPECT_TRUE(AllClose(none, torch::tensor({c.none0, 0.0, c.none2}), 0, 1e-6)) << "none, label_smoothing " << c.eps;
  }
}

TEST_F(CrossEntropyTest, ZLossAddsZTimesLogZSquared) {
  // logits (2, 1, 0): log Z = log(e^2 + e + 1) = 2.4076059; nll of target 0 = 2.4076059 - 2;
  // z-loss 1e-4 * 2.4076059^2 = 5.7966e-4 (from the formula; 1e-4 is PaLM's coefficient).
  auto logits = F32({2, 1, 0}).view({1, 3});
  auto targets = Ids({0});
  const double log_z = std::log(std::exp(2.0) + std::exp(1.0) + 1.0);
  auto o = Options(llm::Reduction::kMean);
  o.z_loss = 1e-4;
  const double with_z = llm::cross_entropy(logits, targets, o).item<double>();
  EXPECT_NEAR(log_z, 2.4076059, 1e-7) << "the test's own arithmetic";
  EXPECT_NEAR(with_z, (log_z - 2.0) + 1e-4 * log_z * log_z, 1e-6) << "nll + z_loss * logZ^2";
  o.z_loss = 0;
  const double without_z = llm::cross_entropy(logits, targets, o).item<double>();
  // The difference of two fp32 numbers near 0.41 is good to ~1e-7.
  EXPECT_NEAR(with_z - without_z, 5.7966e-4, 2e-7) << "the z-loss term alone";
}

TEST_F(CrossEntropyTest, ReturnsAFloat32ScalarOrOneValuePerPosition) {
  auto logits = torch::randn({N, V});
  auto targets = torch::randint(0, V, {N}, torch::kLong);
  auto mean = llm::cross_entropy(logits, targets);  // the default: mean, no smoothing, ignore -100
  EXPECT_EQ(mean.dim(), 0) << "mean is a scalar";
  EXPECT_EQ(mean.scalar_type(), torch::kFloat32);
  EXPECT_EQ(llm::cross_entropy(logits, targets, Options(llm::Reduction::kSum)).dim(), 0) << "sum is a scalar";
  auto none = llm::cross_entropy(logits, targets, Options(llm::Reduction::kNone));
  ASSERT_EQ(none.sizes(), (std::vector<int64_t>{N})) << "none gives one loss per position";
  EXPECT_EQ(none.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(AllClose(mean, none.mean(), 1e-6, 1e-7)) << "with nothing ignored, mean is the mean of none";
}

// ---------------------------------------------------------------------------------- param groups

TEST_F(ParamGroupsTest, DecaysMatricesButNotVectorsAndCarriesTheNames) {
  torch::OrderedDict<std::string, torch::Tensor> named;
  named.insert("embed.weight", torch::randn({10, 4}).requires_grad_());
  named.insert("layer.bias", torch::randn({4}).requires_grad_());
  named.insert("layer.weight", torch::randn({4, 4}).requires_grad_());
  named.insert("norm.weight", torch::ones({4}).requires_grad_());
  auto groups = llm::decay_param_groups(named, /*lr=*/3e-4, /*weight_decay=*/0.1);
  ASSERT_EQ(groups.size(), 2u) << "one group with decay, one without";
  for (const auto& g : groups) {
    ASSERT_TRUE(g.name == "decay" || g.name == "no_decay") << "group name '" << g.name << "'";
    const bool decay = g.name == "decay";
    EXPECT_EQ(g.lr, 3e-4) << g.name;
    EXPECT_EQ(g.weight_decay, decay ? 0.1 : 0.0) << g.name;
    ASSERT_EQ(g.names.size(), g.params.size()) << g.name;
    auto names = g.names;
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, decay ? (std::vector<std::string>{"embed.weight", "layer.weight"})
                           : (std::vector<std::string>{"layer.bias", "norm.weight"}))
        << "nanoGPT: decay exactly the parameters with dim >= 2";
    for (size_t i = 0; i < g.names.size(); ++i) {
      EXPECT_TRUE(g.params[i].is_same(named[g.names[i]]))
          << g.name << "[" << i << "] is not the tensor named '" << g.names[i] << "'";
    }
  }
}

// ----------------------------------------------------------------------------------------- AdamW

TEST_F(AdamWTest, GivesPyTorchsMeasuredValuesForTwoSteps) {
  // Measured with torch.optim.AdamW, PyTorch 1.13: lr 0.1, wd 0.1, betas (0.9, 0.999), eps 1e-8.
  auto p = ParamWithGrad({1, -2, 0.5}, {0.5, -1, 0});
  llm::AdamW opt(OneGroup({"p"}, {p}, 0.1, 0.1), {0.9, 0.999, 1e-8});
  opt.step();
  // 1e-6: the measured values carry fp32 rounding (~1e-7); decaying after the update is off by 1e-3.
  EXPECT_TRUE(AllClose(p, F32({0.89000005f, -1.88f, 0.495f}), 0, 1e-6)) << "after step 1";
  p.mutable_grad() = F32({0.1, 0.2, -0.3});
  opt.step();
  EXPECT_TRUE(AllClose(p, F32({0.80079597f, -1.81009734f, 0.56446368f}), 0, 1e-6)) << "after step 2";
}

TEST_F(AdamWTest, EqualsTorchAdamWBitForBitOverAThousandSteps) {
  constexpr int64_t kSteps = 1000;
  constexpr double kDecay = 0.1;
  const llm::AdamWOptions options{/*beta1=*/0.9, /*beta2=*/0.95, /*eps=*/1e-8};  // nanoGPT's betas
  auto ours = TinyNet::Random();
  auto theirs = ours.Clone();
  llm::AdamW opt(ours.Groups(VaryingLr(0), kDecay), options);

  auto torch_options = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(VaryingLr(0))
                                                            .betas(std::make_tuple(options.beta1, options.beta2))
                                                            .eps(options.eps)
                                                            .weight_decay(weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{theirs.w1, theirs.w2}, torch_options(kDecay));
  groups.emplace_back(std::vector<torch::Tensor>{theirs.b1, theirs.gain}, torch_options(0.0));
  torch::optim::AdamW reference(std::move(groups));

  const auto start = ours.Clone();
  for (int64_t step = 0; step < kSteps; ++step) {
    opt.set_lr(VaryingLr(step));
    for (auto& g : reference.param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(VaryingLr(step));
    }
    opt.zero_grad();
    for (auto& p : theirs.Params()) p.mutable_grad() = torch::Tensor();
    ours.Backward(step);
    theirs.Backward(step);
    opt.step();
    reference.step();
    // Same operations in the same order give the same bits (the reference manages it): any
    // difference means a different formula or order, e.g. decay after the update or eps elsewhere.
    const auto difference = FirstDifference(ours.Params(), theirs.Params());
    ASSERT_EQ(difference, "") << "after step " << step + 1 << " of " << kSteps << ", compared with torch::optim::AdamW";
  }
  EXPECT_NE(FirstDifference(ours.Params(), start.Params()), "") << "the parameters never moved";
}

TEST_F(AdamWTest, FirstStepsMoveEachParameterByLrWhateverTheGradientsScale) {
  // With bias correction m_hat = g and sqrt(v_hat) = |g| at step 1 (and again at step 2 when g
  // repeats), so each step is lr * g / (|g| + eps) = lr * sign(g) up to eps / |g| <= 1e-5.
  // Without it the first step is lr * 0.1 / sqrt(0.001) = 3.2 lr.
  auto g = torch::logspace(-3, 3, 12).view({3, 4}) * torch::tensor({1.0f, -1.0f}).repeat({6}).view({3, 4});
  auto p = torch::zeros({3, 4}).requires_grad_();
  p.mutable_grad() = g.clone();
  constexpr double lr = 0.01;
  llm::AdamW opt(OneGroup({"p"}, {p}, lr, 0.0));
  opt.step();
  EXPECT_TRUE(AllClose(p, -lr * torch::sign(g), /*rtol=*/1e-4, /*atol=*/0)) << "after step 1";
  opt.step();
  EXPECT_TRUE(AllClose(p, -2 * lr * torch::sign(g), 1e-4, 0)) << "after step 2 with the same gradient";
}

TEST_F(AdamWTest, ResumesBitExactlyFromItsStateDict) {
  constexpr int64_t kBefore = 30, kAfter = 30;
  const llm::AdamWOptions options{0.9, 0.95, 1e-8};
  auto train = [](llm::Optimizer& opt, const TinyNet& net, int64_t from, int64_t to) {
    for (int64_t step = from; step < to; ++step) {
      opt.set_lr(VaryingLr(step));
      opt.zero_grad();
      net.Backward(step);
      opt.step();
    }
  };
  auto a = TinyNet::Random();
  llm::AdamW run(a.Groups(VaryingLr(0), 0.1), options);
  train(run, a, 0, kBefore);
  // The checkpoint: the weights and the optimizer state, copied as a file would hold them.
  auto saved = DeepCopy(run.state_dict());
  auto b = a.Clone();
  train(run, a, kBefore, kBefore + kAfter);  // the uninterrupted run

  llm::AdamW resumed(b.Groups(VaryingLr(0), 0.1), options);
  resumed.load_state_dict(saved);
  train(resumed, b, kBefore, kBefore + kAfter);
  EXPECT_EQ(FirstDifference(b.Params(), a.Params()), "")
      << "the resumed run must equal the uninterrupted one: moments and step counts restored exactly";
  auto expected = run.state_dict(), actual = resumed.state_dict();
  EXPECT_EQ(actual.size(), expected.size());
  for (const auto& [key, value] : expected) {
    ASSERT_TRUE(actual.count(key)) << "resumed state has no '" << key << "'";
    EXPECT_TRUE(torch::equal(actual.at(key), value)) << key;
  }
}

TEST_F(AdamWTest, ZeroGradLeavesGradientsUndefinedAndAStepWithoutThemChangesNothing) {
  auto net = TinyNet::Random();
  llm::AdamW opt(net.Groups(1e-2, 0.1));
  net.Backward(0);
  opt.step();
  opt.zero_grad();
  for (const auto& p : net.Params()) EXPECT_FALSE(p.grad().defined()) << "undefined, not zeros";
  // No gradient: the parameter is skipped, decay included (as torch::optim::AdamW).
  const auto before = net.Clone();
  opt.step();
  EXPECT_EQ(FirstDifference(net.Params(), before.Params()), "");
}

// ------------------------------------------------------------------------------------------ Lion

TEST_F(LionTest, GivesTheHandWorkedGoldenStep) {
  // Worked by hand from google/automl's Lion.step: p = (1, -1, 0.5), m = 0, g = (0.3, -0.2, 0), lr 0.1,
  // wd 0.1, betas (0.9, 0.99).
  //   p * (1 - 0.01) - 0.1 * sign(0.1 g) = (0.89, -0.89, 0.495);  m = 0.01 g = (0.003, -0.002, 0)
  auto p = ParamWithGrad({1, -1, 0.5}, {0.3, -0.2, 0});
  llm::Lion opt(OneGroup({"p"}, {p}, 0.1, 0.1), {0.9, 0.99});
  opt.step();
  EXPECT_TRUE(AllClose(p, F32({0.89f, -0.89f, 0.495f}), 0, 1e-6)) << "parameter (fp32 rounding ~1e-7)";
  auto state = opt.state_dict();
  ASSERT_TRUE(state.count("p.exp_avg")) << "Lion's state holds '<name>.exp_avg'";
  EXPECT_TRUE(AllClose(state.at("p.exp_avg"), F32({0.003f, -0.002f, 0}), 0, 1e-8)) << "momentum, with beta2";
}

TEST_F(LionTest, MovesEveryElementByExactlyLr) {
  auto p = torch::randn({5, 4}).requires_grad_();
  const auto start = p.detach().clone();
  constexpr double lr = 0.01;
  llm::Lion opt(OneGroup({"p"}, {p}, lr, 0.0));
  p.mutable_grad() = torch::randn({5, 4}) * torch::logspace(-4, 2, 4);  // sizes from 1e-4 to 1e2
  opt.step();
  // Only the sign counts: every element moves by lr, against its gradient. atol: fp32 spacing near |p| ~ 3.
  EXPECT_TRUE(AllClose(start - p.detach(), lr * torch::sign(p.grad()), 0, 1e-6)) << "step 1";
  const auto after_one = p.detach().clone();
  p.mutable_grad() = torch::randn({5, 4});
  opt.step();
  EXPECT_TRUE(AllClose((after_one - p.detach()).abs(), torch::full({5, 4}, lr), 0, 1e-6)) << "step 2";
}

// ------------------------------------------------------------------------------------- schedules

llm::ScheduleOptions Schedule(const std::string& kind, double peak, double min, int64_t warmup, int64_t total,
                              double decay_fraction = 0.2) {
  llm::ScheduleOptions o;
  o.kind = kind;
  o.peak_lr = peak;
  o.min_lr = min;
  o.warmup_steps = warmup;
  o.total_steps = total;
  o.decay_fraction = decay_fraction;
  return o;
}

TEST_F(ScheduleTest, CosineGivesNanoGPTsValues) {
  // nanoGPT train.py get_lr, worked by hand: lr 6e-4, W 10, S 100, min 6e-5.
  //   0 -> 6e-4 * 1/11 = 5.4545e-5,  9 -> 6e-4 * 10/11 = 5.4545e-4,  10 -> 6e-4 (the peak),
  //   55 -> halfway down the cosine: (6e-4 + 6e-5) / 2 = 3.3e-4,  100 -> 6e-5
  const auto o = Schedule("cosine", 6e-4, 6e-5, 10, 100);
  // 1e-12: double arithmetic on values ~1e-4.
  EXPECT_NEAR(llm::learning_rate_at(o, 0), 6e-4 / 11, 1e-12) << "step 0";
  EXPECT_NEAR(llm::learning_rate_at(o, 9), 6e-4 * 10 / 11, 1e-12) << "step 9";
  EXPECT_NEAR(llm::learning_rate_at(o, 10), 6e-4, 1e-12) << "step 10";
  EXPECT_NEAR(llm::learning_rate_at(o, 55), 3.3e-4, 1e-12) << "step 55";
  EXPECT_NEAR(llm::learning_rate_at(o, 100), 6e-5, 1e-12) << "step 100";
  EXPECT_NEAR(llm::learning_rate_at(o, 32), 6e-5 + 5.4e-4 * 0.5 * (1 + std::cos(M_PI * 22 / 90)), 1e-12) << "step 32";
}

TEST_F(ScheduleTest, CosineStaysAtMinLrAfterTheLastStep) {
  // Hugging Face's cosine is not clamped: at step 120 it has risen back to 0.117 of the peak.
  const auto o = Schedule("cosine", 6e-4, 6e-5, 10, 100);
  for (int64_t step : {101, 120, 190, 1000}) EXPECT_EQ(llm::learning_rate_at(o, step), 6e-5) << "step " << step;
}

TEST_F(ScheduleTest, WarmupStartsAboveZeroAndReachesThePeakExactlyAtW) {
  // nanoGPT's (s + 1) / (W + 1): Hugging Face's s / W wastes step 0 at lr 0; nanochat's (s + 1) / W
  // reaches the peak one step early.
  for (const std::string kind : {"cosine", "wsd", "constant"}) {
    const auto o = Schedule(kind, 1e-3, 1e-4, 20, 200);
    EXPECT_NEAR(llm::learning_rate_at(o, 0), 1e-3 / 21, 1e-15) << kind << ": step 0 already learns";
    EXPECT_NEAR(llm::learning_rate_at(o, 19), 1e-3 * 20 / 21, 1e-15) << kind << ": still below the peak at W - 1";
    EXPECT_NEAR(llm::learning_rate_at(o, 20), 1e-3, 1e-15) << kind << ": the peak at W";
  }
}

TEST_F(ScheduleTest, WsdHoldsThePeakThenDecaysLinearlyToMinOverTheLastFraction) {
  // peak 1e-3, min 1e-4, W 10, S 100, decay fraction 0.2: D = 20 steps of decay starting at 80.
  const auto o = Schedule("wsd", 1e-3, 1e-4, 10, 100, 0.2);
  auto lr = [&](int64_t step) { return llm::learning_rate_at(o, step); };
  EXPECT_NEAR(lr(9), 1e-3 * 10 / 11, 1e-15) << "last warmup step";
  EXPECT_NEAR(lr(10), 1e-3, 1e-15) << "end of warmup";
  EXPECT_NEAR(lr(50), 1e-3, 1e-15) << "stable phase";
  EXPECT_NEAR(lr(79), 1e-3, 1e-15) << "last stable step";
  EXPECT_NEAR(lr(80), 1e-3, 1e-15) << "the decay starts from the peak at S - D = 80";
  EXPECT_NEAR(lr(81), 1e-4 + 9e-4 * 19 / 20, 1e-15) << "one step into the decay";
  EXPECT_NEAR(lr(90), 5.5e-4, 1e-15) << "halfway through the decay";
  EXPECT_NEAR(lr(99), 1e-4 + 9e-4 / 20, 1e-15) << "one step before the end";
  EXPECT_NEAR(lr(100), 1e-4, 1e-15) << "min at S";
  EXPECT_NEAR(lr(150), 1e-4, 1e-15) << "min after S";
}

TEST_F(ScheduleTest, ConstantHoldsThePeakAfterWarmup) {
  const auto o = Schedule("constant", 1e-3, 1e-4, 5, 50);
  EXPECT_NEAR(llm::learning_rate_at(o, 2), 1e-3 * 3 / 6, 1e-15) << "warmup";
  for (int64_t step : {5, 6, 30, 49, 50, 80}) EXPECT_EQ(llm::learning_rate_at(o, step), 1e-3) << "step " << step;
}

TEST_F(ScheduleTest, RisesDuringWarmupAndNeverRisesAfterIt) {
  for (const auto& o : {Schedule("cosine", 6e-4, 6e-5, 10, 100), Schedule("wsd", 6e-4, 6e-5, 10, 100, 0.3)}) {
    for (int64_t step = 1; step <= 10; ++step) {
      EXPECT_GT(llm::learning_rate_at(o, step), llm::learning_rate_at(o, step - 1)) << o.kind << " step " << step;
    }
    for (int64_t step = 11; step <= 130; ++step) {
      const double lr = llm::learning_rate_at(o, step);
      EXPECT_LE(lr, llm::learning_rate_at(o, step - 1)) << o.kind << " step " << step;
      EXPECT_GE(lr, 6e-5) << o.kind << " step " << step << " is below min_lr";
    }
  }
}

}  // namespace
