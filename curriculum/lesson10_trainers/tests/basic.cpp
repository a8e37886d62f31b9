// Lesson 10, basic: global-norm clipping against torch's, the bf16 autocast guard, one trainer step
// (token-normalised gradient accumulation, the scheduled learning rate, clipping, the non-finite
// stop), the training loop's hooks, checkpoints that round-trip and prune, and gradient buckets.
// Grade with:  ctest --preset default -R lesson10.basic
#include "trainer_fixtures.h"

#include <llm/common/safetensors.h>
#include <llm/common/testing.h>
#include <llm/model/causal_lm.h>
#include <llm/train/adamw.h>
#include <llm/train/checkpoint.h>
#include <llm/train/data_parallel.h>
#include <llm/train/grad_clip.h>
#include <llm/train/mixed_precision.h>
#include <llm/train/trainer.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

using lesson10::AllParams;
using lesson10::Concat;
using lesson10::EntryNames;
using lesson10::FirstDifference;
using lesson10::ItemCount;
using lesson10::ItemLossSum;
using lesson10::Items;
using lesson10::kClasses;
using lesson10::kIn;
using lesson10::MakeItems;
using lesson10::Options;
using lesson10::ReadText;
using lesson10::RecordingSgd;
using lesson10::TempDir;
using lesson10::TinyConfig;
using lesson10::TorchCE;
using lesson10::TrainTest;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class ClipGradNormTest : public TrainTest {};
class AutocastTest : public TrainTest {};
class TrainerStepTest : public TrainTest {};
class TrainLoopTest : public TrainTest {};
class CheckpointTest : public TrainTest {};
class BucketTest : public TrainTest {};

torch::Tensor WithGrad(const torch::Tensor& grad) {
  auto p = torch::zeros_like(grad).requires_grad_();
  p.mutable_grad() = grad.clone();
  return p;
}

// ------------------------------------------------------------------------------------- clipping

TEST_F(ClipGradNormTest, MatchesTorchsClipGradNormOnRandomGradients) {
  const std::vector<std::vector<int64_t>> shapes = {{3, 4}, {5}, {2, 2, 2}};
  std::vector<torch::Tensor> ours, theirs;
  for (const auto& shape : shapes) {
    ours.push_back(WithGrad(torch::randn(shape) * 3));
    theirs.push_back(WithGrad(ours.back().grad()));
  }
  double total = 0;
  for (const auto& p : ours) total += p.grad().pow(2).sum().item<double>();
  const double max_norm = 0.5 * std::sqrt(total);  // half the norm: clipping is active

  const double expected = torch::nn::utils::clip_grad_norm_(theirs, max_norm);
  const double norm = llm::clip_grad_norm(ours, max_norm);
  // The same fp32 reductions, perhaps in another order.
  EXPECT_NEAR(norm, expected, 1e-6 * expected) << "the returned norm is the global norm before clipping";
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_TRUE(AllClose(ours[i].grad(), theirs[i].grad(), /*rtol=*/1e-6, /*atol=*/1e-7))
        << "parameter " << i << ": every gradient is scaled by the same max_norm / (total + 1e-6)";
  }
}

TEST_F(ClipGradNormTest, GivesTheGoldenNormAndClippedGradients) {
  // Measured with torch.nn.utils.clip_grad_norm_, PyTorch 1.13: grads [3, 4] and [12, 0, 0], max_norm 1 ->
  // total sqrt(25 + 144) = 13.
  std::vector<torch::Tensor> params = {WithGrad(torch::tensor({3.0f, 4.0f})),
                                       WithGrad(torch::tensor({12.0f, 0.0f, 0.0f}))};
  const double norm = llm::clip_grad_norm(params, 1.0);
  EXPECT_NEAR(norm, 13.0, 1e-5) << "the norm of the per-parameter norms (5 and 12), returned before clipping";
  // The measured gradients, to 4 decimals.
  EXPECT_TRUE(AllClose(params[0].grad(), torch::tensor({0.2308f, 0.3077f}), /*rtol=*/0, /*atol=*/5e-5));
  EXPECT_TRUE(AllClose(params[1].grad(), torch::tensor({0.9231f, 0.0f, 0.0f}), /*rtol=*/0, /*atol=*/5e-5));
}

TEST_F(ClipGradNormTest, SkipsParametersWithoutAGradientAndReturnsZeroWhenNoneHasOne) {
  auto with = WithGrad(torch::tensor({3.0f, 4.0f}));
  auto without = torch::ones({4}).requires_grad_();  // unused in this step: no gradient
  std::vector<torch::Tensor> params = {without, with};
  EXPECT_NEAR(llm::clip_grad_norm(params, 1.0), 5.0, 1e-5);
  EXPECT_TRUE(AllClose(with.grad(), torch::tensor({0.6f, 0.8f}), /*rtol=*/1e-5, /*atol=*/1e-6)) << "[3, 4] / 5";
  EXPECT_FALSE(without.grad().defined()) << "a parameter without a gradient must not be given one";

  std::vector<torch::Tensor> none = {torch::ones({2}).requires_grad_(), torch::ones({3}).requires_grad_()};
  EXPECT_EQ(llm::clip_grad_norm(none, 1.0), 0.0) << "no gradient at all: the norm is 0 (torch's clip_grad_norm_)";
  EXPECT_FALSE(none[0].grad().defined());
}

TEST_F(ClipGradNormTest, NeverScalesSmallGradientsUp) {
  auto p = WithGrad(torch::tensor({0.3f, 0.4f}));  // norm 0.5
  std::vector<torch::Tensor> params = {p};
  EXPECT_NEAR(llm::clip_grad_norm(params, 1.0), 0.5, 1e-6);
  // coef = min(1, 1 / 0.500001) = 1 exactly.
  EXPECT_TRUE(AllClose(p.grad(), torch::tensor({0.3f, 0.4f}), /*rtol=*/0, /*atol=*/0))
      << "the coefficient is clamped at 1: a gradient below max_norm is left as it is";
}

// ------------------------------------------------------------------------------------- autocast

TEST_F(AutocastTest, InsideTheGuardMatmulsRunInBf16AndTheLossInFp32) {
  torch::nn::Linear linear(8, 5);
  auto x = torch::randn({4, 8});
  auto targets = torch::tensor({0, 3, 4, 1}, torch::kLong);
  llm::AutocastGuard guard(true);
  EXPECT_TRUE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(torch::matmul(x, torch::randn({8, 3})).scalar_type(), torch::kBFloat16) << "matmul is on the bf16 list";
  auto logits = linear(x);
  EXPECT_EQ(logits.scalar_type(), torch::kBFloat16) << "linear is on the bf16 list";
  EXPECT_EQ(linear->weight.scalar_type(), torch::kFloat32) << "the master weights stay fp32";
  EXPECT_EQ(torch::nn::functional::cross_entropy(logits, targets).scalar_type(), torch::kFloat32)
      << "CPU autocast computes cross_entropy_loss in fp32";
}

TEST_F(AutocastTest, LeavingTheGuardTurnsAutocastOffAgain) {
  auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  ASSERT_FALSE(at::autocast::is_cpu_enabled());
  {
    llm::AutocastGuard guard(true);
    ASSERT_EQ(torch::matmul(a, b).scalar_type(), torch::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled()) << "the destructor restores the state from before the guard";
  EXPECT_EQ(at::autocast::get_autocast_cpu_dtype(), at::kBFloat16);
  EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32) << "after the guard, matmuls are fp32 again";
}

TEST_F(AutocastTest, ADisabledGuardLeavesEveryOpInFp32) {
  torch::nn::Linear linear(8, 5);
  auto x = torch::randn({4, 8});
  llm::AutocastGuard guard(false);  // the fp32 run takes the same code path
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat32);
  EXPECT_EQ(torch::matmul(x, torch::randn({8, 3})).scalar_type(), torch::kFloat32);
}

// -------------------------------------------------------------------------------- trainer step

// Three micro-batches of 8 items each, of which 7, 1 and 3 are trained: a token of the second
// weighs 7 times one of the first in a mean of means.
std::vector<Items> UnequalMicroBatches() {
  return {MakeItems(8, 7, 11), MakeItems(8, 1, 12), MakeItems(8, 3, 13)};
}

// The gradient (and loss) of the mean over every trained item of `batches` taken as one batch, and of
// the mean of the micro-batches' means (what the 2024 Hugging Face trainer computed).
struct Reference {
  std::vector<torch::Tensor> grads, mean_of_means_grads;
  double loss = 0, mean_of_means = 0, norm = 0;
};

Reference ReferenceGradients(const torch::nn::Linear& model, const std::vector<Items>& batches) {
  Reference ref;
  torch::nn::Linear big(kIn, kClasses), split(kIn, kClasses);
  llm::testing::CopyParameters(*model, *big);
  llm::testing::CopyParameters(*model, *split);
  const auto all = Concat(batches);
  auto loss = TorchCE(big(all.x), all.targets, /*sum=*/false);
  loss.backward();
  ref.loss = loss.item<double>();
  double squares = 0;
  for (const auto& p : big->parameters()) {
    ref.grads.push_back(p.grad().clone());
    squares += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  }
  ref.norm = std::sqrt(squares);
  auto means = torch::zeros({});
  for (const auto& b : batches) means = means + TorchCE(split(b.x), b.targets, /*sum=*/false);
  means = means / static_cast<double>(batches.size());
  means.backward();
  ref.mean_of_means = means.item<double>();
  for (const auto& p : split->parameters()) ref.mean_of_means_grads.push_back(p.grad().clone());
  return ref;
}

TEST_F(TrainerStepTest, AccumulatesTheGradientOfTheWholeBatchsTokenMean) {
  torch::nn::Linear model(kIn, kClasses);
  const auto batches = UnequalMicroBatches();
  const auto ref = ReferenceGradients(model, batches);
  // The test's own premise: with 7, 1 and 3 trained items the two losses' gradients are far apart.
  ASSERT_GT((ref.grads[0] - ref.mean_of_means_grads[0]).abs().max().item<double>(), 1e-2);

  RecordingSgd optimizer(AllParams(*model));
  llm::Trainer trainer(optimizer, Options(/*grad_clip=*/0));
  trainer.step<Items>(batches, ItemCount(), ItemLossSum(model));
  ASSERT_EQ(optimizer.grads.size(), 1u) << "one step() call per optimizer step";
  ASSERT_EQ(optimizer.grads[0].size(), ref.grads.size());
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    ASSERT_TRUE(optimizer.grads[0][i].defined()) << "parameter " << i << " has no gradient at the step";
    // fp32 sums of 11 items in another grouping: rounding ~1e-7.
    EXPECT_TRUE(AllClose(optimizer.grads[0][i], ref.grads[i], /*rtol=*/1e-5, /*atol=*/1e-6))
        << "parameter " << i << ": backward(loss_sum_i / N) with N counted over ALL micro-batches; averaging "
        << "each micro-batch's mean weighs the items of short micro-batches more (the 2024 accumulation bug)";
  }
}

TEST_F(TrainerStepTest, ReportsTheTokenMeanLossOverAllMicroBatchesAndTheirCount) {
  torch::nn::Linear model(kIn, kClasses);
  const auto batches = UnequalMicroBatches();
  const auto ref = ReferenceGradients(model, batches);
  ASSERT_GT(std::abs(ref.loss - ref.mean_of_means), 1e-2) << "the test's premise: the two means differ";
  RecordingSgd optimizer(AllParams(*model));
  llm::Trainer trainer(optimizer, Options(/*grad_clip=*/0));
  const auto r = trainer.step<Items>(batches, ItemCount(), ItemLossSum(model));
  EXPECT_EQ(r.count, 11) << "N = 7 + 1 + 3 trained items";
  EXPECT_NEAR(r.loss, ref.loss, 1e-5 * ref.loss)
      << "the loss of the step is sum of all item losses / N (not " << ref.mean_of_means << ", the mean of the means)";
  EXPECT_TRUE(std::isfinite(r.seconds) && r.seconds >= 0) << "seconds of wall time, got " << r.seconds;
}

TEST_F(TrainerStepTest, DividesEveryMetricsSumByTheTokenCount) {
  torch::nn::Linear model(kIn, kClasses);
  const auto batches = UnequalMicroBatches();
  RecordingSgd optimizer(AllParams(*model));
  llm::Trainer trainer(optimizer, Options(/*grad_clip=*/0));
  double correct = 0;
  std::function<llm::LossSum(const Items&)> loss_sum = [&](const Items& b) {
    auto logits = model(b.x);
    auto trained = b.targets.ne(lesson10::kIgnore);
    const double right = (logits.argmax(-1).eq(b.targets) & trained).sum().item<double>();
    correct += right;
    return llm::LossSum{TorchCE(logits, b.targets, /*sum=*/true),
                        {{"correct", right}, {"items", trained.sum().item<double>()}}};
  };
  const auto r = trainer.step<Items>(batches, ItemCount(), loss_sum);
  ASSERT_EQ(r.metrics.count("correct"), 1u);
  ASSERT_EQ(r.metrics.count("items"), 1u);
  EXPECT_NEAR(r.metrics.at("correct"), correct / 11.0, 1e-12) << "a metric is reported as its sum / N";
  EXPECT_NEAR(r.metrics.at("items"), 1.0, 1e-12) << "the per-item count summed over the step, / N, is 1";
}

TEST_F(TrainerStepTest, UsesEachStepsScheduledLearningRateAndCountsTheSteps) {
  torch::nn::Linear model(kIn, kClasses);
  RecordingSgd optimizer(AllParams(*model));
  const auto schedule = lesson10::VaryingSchedule();
  llm::Trainer trainer(optimizer, Options(/*grad_clip=*/0, schedule));
  const auto batches = UnequalMicroBatches();
  EXPECT_EQ(trainer.step_count(), 0);
  for (int64_t s = 0; s < 5; ++s) {
    const auto r = trainer.step<Items>(batches, ItemCount(), ItemLossSum(model));
    const double expected = llm::learning_rate_at(schedule, s);
    EXPECT_EQ(r.step, s) << "StepResult::step is this step's number, 0 for the first";
    EXPECT_EQ(trainer.step_count(), s + 1);
    ASSERT_EQ(optimizer.lrs.size(), static_cast<size_t>(s + 1));
    EXPECT_DOUBLE_EQ(optimizer.lrs[s], expected) << "step " << s << " must run at learning_rate_at(schedule, " << s
                                                 << "), set on the optimizer before its step()";
    EXPECT_DOUBLE_EQ(r.lr, expected) << "step " << s;
  }
  trainer.set_step_count(9);  // a resumed run
  const auto r = trainer.step<Items>(batches, ItemCount(), ItemLossSum(model));
  EXPECT_EQ(r.step, 9);
  EXPECT_DOUBLE_EQ(optimizer.lrs.back(), llm::learning_rate_at(schedule, 9)) << "the schedule follows the step count";
  EXPECT_EQ(trainer.step_count(), 10);
}

TEST_F(TrainerStepTest, ClipsTheGlobalGradientAndReportsItsNormBeforeClipping) {
  torch::nn::Linear model(kIn, kClasses);
  const auto batches = UnequalMicroBatches();
  const auto ref = ReferenceGradients(model, batches);
  for (const double clip : {0.25 * ref.norm, 0.0}) {
    torch::nn::Linear copy(kIn, kClasses);
    llm::testing::CopyParameters(*model, *copy);
    RecordingSgd optimizer(AllParams(*copy));
    llm::Trainer trainer(optimizer, Options(clip));
    const auto r = trainer.step<Items>(batches, ItemCount(), ItemLossSum(copy));
    const std::string what = clip > 0 ? "grad_clip a quarter of the norm" : "grad_clip 0 (off)";
    EXPECT_NEAR(r.grad_norm, ref.norm, 1e-5 * ref.norm) << what << ": the reported norm is the one before clipping";
    const double coef = clip > 0 ? clip / (ref.norm + 1e-6) : 1.0;
    ASSERT_EQ(optimizer.grads.size(), 1u);
    for (size_t i = 0; i < ref.grads.size(); ++i) {
      EXPECT_TRUE(AllClose(optimizer.grads[0][i], ref.grads[i] * coef, /*rtol=*/1e-5, /*atol=*/1e-7))
          << what << ", parameter " << i
          << (clip > 0 ? ": the step sees the gradient scaled to max_norm" : ": 0 measures the norm, scales nothing");
    }
  }
}

TEST_F(TrainerStepTest, ANonFiniteLossThrowsNamingTheStepAndTakesNoStep) {
  torch::nn::Linear model(kIn, kClasses);
  llm::AdamW optimizer(AllParams(*model, /*lr=*/0.01));
  llm::Trainer trainer(optimizer, Options(/*grad_clip=*/1.0));
  const auto batches = UnequalMicroBatches();
  trainer.step<Items>(batches, ItemCount(), ItemLossSum(model));  // step 0 is fine
  const auto weights = llm::capture_parameters(*model);
  llm::TensorMap state;
  for (const auto& [k, v] : optimizer.state_dict()) state[k] = v.clone();

  auto bad = batches;
  bad[1].x = bad[1].x.clone();
  bad[1].x.index_put_({bad[1].targets.ne(lesson10::kIgnore)}, std::numeric_limits<float>::quiet_NaN());
  try {
    trainer.step<Items>(bad, ItemCount(), ItemLossSum(model));
    ADD_FAILURE() << "a NaN loss must throw llm::NonFiniteError";
  } catch (const llm::NonFiniteError& e) {
    EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos) << "name the step; got: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected llm::NonFiniteError, got: " << e.what();
  }
  EXPECT_EQ(FirstDifference(llm::capture_parameters(*model), weights), "")
      << "check the loss and norm BEFORE optimizer.step(): the weights stay those of the last good step";
  llm::TensorMap after;
  for (const auto& [k, v] : optimizer.state_dict()) after[k] = v;
  EXPECT_EQ(FirstDifference(after, state), "") << "no optimizer step: its moments and step counts are unchanged";
  EXPECT_EQ(trainer.step_count(), 1) << "a step that was not taken is not counted";
}

// --------------------------------------------------------------------------------- train loop

// A one-parameter problem and a log of every hook call, for the loop's control flow.
struct LoopRig {
  torch::Tensor w = torch::zeros({1}).requires_grad_();
  RecordingSgd optimizer{std::vector<llm::ParamGroup>{llm::ParamGroup{"w", {"w"}, {w}, 0.1, 0.0}}};
  llm::Trainer trainer{optimizer, Options(/*grad_clip=*/0)};
  std::vector<int64_t> steps, evals, saves;  // r.step of every on_step; steps_done of every eval / save
  std::vector<std::string> errors;           // hooks called at the wrong moment
  int64_t stop_after = -1;                   // on_step returns false when r.step + 1 == this

  std::function<std::vector<int>()> next = [] { return std::vector<int>{0}; };
  std::function<int64_t(const int&)> count = [](const int&) { return int64_t{1}; };
  std::function<llm::LossSum(const int&)> loss_sum = [this](const int&) {
    return llm::LossSum{(w - 1).pow(2).sum(), {}};
  };

  llm::LoopHooks Hooks() {
    llm::LoopHooks h;
    h.on_step = [this](const llm::StepResult& r) {
      steps.push_back(r.step);
      if (trainer.step_count() != r.step + 1) errors.push_back(fmt::format("on_step of step {} called late", r.step));
      return r.step + 1 != stop_after;
    };
    h.on_eval = [this](int64_t done) {
      evals.push_back(done);
      if (trainer.step_count() != done)
        errors.push_back(fmt::format("on_eval({}) after step {}", done, trainer.step_count()));
    };
    h.on_checkpoint = [this](int64_t done) {
      saves.push_back(done);
      if (trainer.step_count() != done) {
        errors.push_back(fmt::format("on_checkpoint({}) after step {}", done, trainer.step_count()));
      }
    };
    return h;
  }
  int64_t Run(int64_t max_steps, int64_t eval_interval, int64_t checkpoint_interval) {
    llm::LoopOptions o;
    o.max_steps = max_steps;
    o.eval_interval = eval_interval;
    o.checkpoint_interval = checkpoint_interval;
    return llm::train_loop<int>(trainer, o, next, count, loss_sum, Hooks());
  }
};

using Steps = std::vector<int64_t>;

TEST_F(TrainLoopTest, RunsToMaxStepsWithHooksAtTheirIntervalsAndOnceAtTheEnd) {
  {
    LoopRig rig;
    EXPECT_EQ(rig.Run(/*max_steps=*/10, /*eval_interval=*/4, /*checkpoint_interval=*/3), 10);
    EXPECT_EQ(rig.trainer.step_count(), 10);
    EXPECT_EQ(rig.steps, (Steps{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) << "on_step after every step";
    EXPECT_EQ(rig.evals, (Steps{4, 8, 10})) << "every 4 steps, and after the last";
    EXPECT_EQ(rig.saves, (Steps{3, 6, 9, 10})) << "every 3 steps, and after the last";
    EXPECT_EQ(rig.errors, std::vector<std::string>{});
  }
  {
    LoopRig rig;
    EXPECT_EQ(rig.Run(/*max_steps=*/8, /*eval_interval=*/4, /*checkpoint_interval=*/0), 8);
    EXPECT_EQ(rig.evals, (Steps{4, 8})) << "step 8 was just evaluated: not a second time at the end";
    EXPECT_EQ(rig.saves, (Steps{8})) << "checkpoint_interval 0: only after the last step";
    EXPECT_EQ(rig.errors, std::vector<std::string>{});
  }
}

TEST_F(TrainLoopTest, StopsWhenOnStepReturnsFalseAndStillEvaluatesAndSaves) {
  {
    LoopRig rig;
    rig.stop_after = 6;
    EXPECT_EQ(rig.Run(/*max_steps=*/20, /*eval_interval=*/4, /*checkpoint_interval=*/4), 6) << "steps taken";
    EXPECT_EQ(rig.steps, (Steps{0, 1, 2, 3, 4, 5})) << "no step after on_step returned false";
    EXPECT_EQ(rig.evals, (Steps{4, 6})) << "the state the run stops in is evaluated";
    EXPECT_EQ(rig.saves, (Steps{4, 6})) << "... and saved";
    EXPECT_EQ(rig.errors, std::vector<std::string>{});
  }
  {
    LoopRig rig;
    rig.stop_after = 8;  // on an interval: evaluated and saved once
    EXPECT_EQ(rig.Run(/*max_steps=*/20, /*eval_interval=*/4, /*checkpoint_interval=*/4), 8);
    EXPECT_EQ(rig.evals, (Steps{4, 8}));
    EXPECT_EQ(rig.saves, (Steps{4, 8}));
  }
}

// -------------------------------------------------------------------------------- checkpoints

// A checkpoint with a state in every field: a trained tiny model, AdamW's moments, the generator.
struct Saved {
  llm::ModelConfig config = TinyConfig();
  llm::CausalLM model{config};
  llm::Checkpoint checkpoint;

  explicit Saved(int64_t step = 12) {
    llm::AdamW optimizer(llm::decay_param_groups(model->named_parameters(), 1e-2, 0.1));
    auto ids = torch::randint(0, config.vocab_size, {2, 8});
    llm::causal_lm_loss(model(ids), ids).backward();
    optimizer.step();
    checkpoint.model = llm::capture_parameters(*model);
    checkpoint.optimizer = optimizer.state_dict();
    checkpoint.rng_state = llm::capture_rng_state();
    checkpoint.state.step = step;
    checkpoint.state.data_cursor = 345;
    checkpoint.state.tokens_seen = 6789;
    checkpoint.state.elapsed_seconds = 12.375;
    checkpoint.state.world_size = 2;
    checkpoint.state.model_config = llm::config_to_json(config);
    checkpoint.state.extra = {{"val_bpb_before", 1.25}, {"stage", "sft"}};
  }
};

TEST_F(CheckpointTest, SaveThenLoadGivesBackEveryPartOfTheState) {
  TempDir dir;
  Saved saved;
  const auto& c = saved.checkpoint;
  const auto written = llm::save_checkpoint(dir / "checkpoints", c, /*keep=*/3);
  torch::rand({10});  // the run goes on: the generator's state now differs from the saved one
  const auto loaded = llm::load_checkpoint(written);
  EXPECT_EQ(FirstDifference(loaded.model, c.model), "") << "model.safetensors: every weight, bit for bit";
  EXPECT_EQ(FirstDifference(loaded.optimizer, c.optimizer), "")
      << "optimizer.safetensors: every moment and step count, under the same names (and nothing else)";
  ASSERT_TRUE(loaded.rng_state.defined()) << "the generator's state";
  EXPECT_TRUE(torch::equal(loaded.rng_state, c.rng_state)) << "the generator's state, byte for byte";
  EXPECT_EQ(loaded.state.step, 12);
  EXPECT_EQ(loaded.state.data_cursor, 345);
  EXPECT_EQ(loaded.state.tokens_seen, 6789);
  EXPECT_EQ(loaded.state.elapsed_seconds, 12.375);
  EXPECT_EQ(loaded.state.world_size, 2);
  // Compared as JSON text: equal documents have equal dumps (keys sorted), and a failure prints both.
  EXPECT_EQ(loaded.state.model_config.dump(), c.state.model_config.dump());
  EXPECT_EQ(loaded.state.extra.dump(), c.state.extra.dump()) << "a stage's own values come back as they were";
}

TEST_F(CheckpointTest, WritesAStepDirectoryWithTheFourFilesAndNothingElse) {
  TempDir dir;
  Saved saved;
  const auto root = dir / "checkpoints";
  const auto written = llm::save_checkpoint(root, saved.checkpoint, /*keep=*/3);
  EXPECT_EQ(written, (std::filesystem::path(root) / "step_00000012").string());
  EXPECT_EQ(EntryNames(root), std::vector<std::string>{"step_00000012"}) << "no temporary directory is left behind";
  EXPECT_EQ(EntryNames(written),
            (std::vector<std::string>{"COMPLETE", "model.safetensors", "optimizer.safetensors", "trainer_state.json"}));
  // The weights alone, under the model's names: the next stage loads this file only.
  const auto weights = llm::load_safetensors(written + "/model.safetensors");
  EXPECT_EQ(FirstDifference(weights.tensors, llm::capture_parameters(*saved.model)), "");
  const auto state = nlohmann::json::parse(ReadText(written + "/trainer_state.json"));
  EXPECT_EQ(state.value("format", -1), llm::kCheckpointFormat);
  EXPECT_EQ(state.value("step", -1), 12);
  EXPECT_EQ(state.value("data_cursor", -1), 345);
}

TEST_F(CheckpointTest, KeepsOnlyTheNewestCheckpoints) {
  TempDir dir;
  Saved saved;
  const auto root = dir / "checkpoints";
  for (int64_t step : {2, 4, 6, 8}) {
    saved.checkpoint.state.step = step;
    llm::save_checkpoint(root, saved.checkpoint, /*keep=*/2);
  }
  EXPECT_EQ(EntryNames(root), (std::vector<std::string>{"step_00000006", "step_00000008"}))
      << "keep 2: after each save only the two newest complete checkpoints remain";
  EXPECT_TRUE(ThrowsWith([&] { llm::save_checkpoint(root, saved.checkpoint, /*keep=*/0); }, {"keep"}))
      << "keep 0 would delete the checkpoint just written";
}

// --------------------------------------------------------------------------------- buckets

TEST_F(BucketTest, PacksConsecutiveTensorsBySizeAndDtypeAndWritesTheResultsBack) {
  // 4-byte floats: 16 + 24 bytes fit a 48-byte bucket, 40 more do not; a float64 starts a new one;
  // a tensor larger than a bucket travels alone.
  std::vector<torch::Tensor> tensors = {
      torch::randn({4}), torch::randn({2, 3}), torch::randn({10}), torch::randn({3}, torch::kFloat64),
      torch::randn({5}), torch::randn({20}),   torch::randn({2})};
  std::vector<torch::Tensor> before;
  for (const auto& t : tensors) before.push_back(t.clone());
  std::vector<std::pair<int64_t, torch::Dtype>> seen;
  std::vector<torch::Tensor> contents;
  llm::for_each_bucket(tensors, /*bucket_bytes=*/48, [&](torch::Tensor& flat) {
    EXPECT_EQ(flat.dim(), 1) << "the collective sees one flat buffer";
    seen.emplace_back(flat.numel(), flat.scalar_type());
    contents.push_back(flat.clone());
    flat.mul_(2);  // what the collective returns
  });
  const std::vector<std::pair<int64_t, torch::Dtype>> expected = {{10, torch::kFloat32}, {10, torch::kFloat32},
                                                                  {3, torch::kFloat64},  {5, torch::kFloat32},
                                                                  {20, torch::kFloat32}, {2, torch::kFloat32}};
  ASSERT_EQ(seen, expected) << "buckets (elements, dtype) in order: [4 + 6], [10], [3 f64], [5], [20], [2]";
  EXPECT_TRUE(AllClose(contents[0], torch::cat({before[0], before[1].reshape({-1})}), 0, 0))
      << "a bucket holds its tensors flattened, in order";
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_TRUE(AllClose(tensors[i], before[i] * 2, 0, 0)) << "tensor " << i << ": the result is copied back";
    EXPECT_EQ(tensors[i].sizes(), before[i].sizes()) << "tensor " << i;
  }
}

}  // namespace
