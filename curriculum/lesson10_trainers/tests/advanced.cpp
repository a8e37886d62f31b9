// Lesson 10, advanced: non-finite gradients, nested autocast and a CausalLM under it, checkpoints
// that are corrupted, truncated, left half-written or from another model, a run killed with
// SIGKILL (in a step, and while saving) that resumes bit for bit, and two data-parallel processes
// on c10d/Gloo that train exactly like one process on the whole batch.
// Grade with:  ctest --preset default -R lesson10.advanced
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

#include <sys/resource.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

using lesson10::AllParams;
using lesson10::EntryNames;
using lesson10::FirstDifference;
using lesson10::ForkChild;
using lesson10::ItemCount;
using lesson10::ItemLossSum;
using lesson10::Items;
using lesson10::kClasses;
using lesson10::kIgnore;
using lesson10::kIn;
using lesson10::MakeItems;
using lesson10::Options;
using lesson10::Outcome;
using lesson10::ReadText;
using lesson10::RecordingSgd;
using lesson10::RunRanks;
using lesson10::Scalars;
using lesson10::TempDir;
using lesson10::TinyConfig;
using lesson10::TrainTest;
using lesson10::Values;
using lesson10::WaitAll;
using lesson10::WriteText;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class ClipGradNormAdvanced : public TrainTest {};
class AutocastAdvanced : public TrainTest {};
class TrainerStepAdvanced : public TrainTest {};
class TrainLoopAdvanced : public TrainTest {};
class CheckpointAdvanced : public TrainTest {};
class ResumeTest : public TrainTest {};
class DataParallelTest : public TrainTest {};

torch::Tensor WithGrad(const torch::Tensor& grad) {
  auto p = torch::zeros_like(grad).requires_grad_();
  p.mutable_grad() = grad.clone();
  return p;
}

// ------------------------------------------------------------------------ token batches for a CausalLM

// A micro-batch of next-token prediction: ids (B, T), targets (B, T) = the next ids, with the first
// `prompt` positions of every row ignored (a prompt, as in SFT): micro-batches of unequal counts.
struct Tokens {
  torch::Tensor ids, targets;
};
constexpr int64_t kB = 2, kT = 10;

Tokens MakeTokens(uint64_t seed, int64_t prompt, int64_t vocab) {
  auto gen = lesson10::Gen(seed);
  auto row = torch::randint(0, vocab, {kB, kT + 1}, gen, torch::kLong);
  auto targets = row.narrow(1, 1, kT).clone();
  targets.narrow(1, 0, prompt).fill_(kIgnore);
  return {row.narrow(1, 0, kT).clone(), targets};
}

std::function<int64_t(const Tokens&)> TokenCount() {
  return [](const Tokens& b) { return b.targets.ne(kIgnore).sum().item<int64_t>(); };
}
std::function<llm::LossSum(const Tokens&)> TokenLossSum(llm::CausalLM& model) {
  return [model](const Tokens& b) mutable {
    auto logits = model(b.ids);  // (B, T, V)
    auto loss = F::cross_entropy(logits.reshape({-1, logits.size(-1)}), b.targets.reshape({-1}),
                                 F::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(torch::kSum));
    return llm::LossSum{loss, {}};
  };
}

// ------------------------------------------------------------------------------------- clipping

TEST_F(ClipGradNormAdvanced, ANaNGradientGivesANaNNormNotAnException) {
  std::vector<torch::Tensor> params = {WithGrad(torch::tensor({1.0f, std::numeric_limits<float>::quiet_NaN()})),
                                       WithGrad(torch::tensor({2.0f}))};
  double norm = 0;
  try {
    norm = llm::clip_grad_norm(params, 1.0);
  } catch (const std::exception& e) {
    FAIL() << "a non-finite norm is returned for the caller to act on (torch's error_if_nonfinite=false): " << e.what();
  }
  EXPECT_TRUE(std::isnan(norm)) << "got " << norm;
}

TEST_F(ClipGradNormAdvanced, ANonPositiveMaxNormIsAClearError) {
  std::vector<torch::Tensor> params = {WithGrad(torch::tensor({3.0f, 4.0f}))};
  EXPECT_TRUE(ThrowsWith([&] { llm::clip_grad_norm(params, 0.0); }, {"max_norm"}))
      << "0 would zero every gradient; 'no clipping' is the caller not calling it";
  EXPECT_TRUE(ThrowsWith([&] { llm::clip_grad_norm(params, -1.0); }, {"max_norm", "-1"}));
  EXPECT_TRUE(AllClose(params[0].grad(), torch::tensor({3.0f, 4.0f}), 0, 0)) << "the gradients are untouched";
}

// ------------------------------------------------------------------------------------- autocast

TEST_F(AutocastAdvanced, NestedGuardsRestoreEachOuterRegionsState) {
  auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  auto dtype = [&] { return torch::matmul(a, b).scalar_type(); };
  {
    llm::AutocastGuard outer(true);
    EXPECT_EQ(dtype(), torch::kBFloat16);
    {
      llm::AutocastGuard inner(false);  // e.g. an fp32 evaluation inside a bf16 region
      EXPECT_FALSE(at::autocast::is_cpu_enabled());
      EXPECT_EQ(dtype(), torch::kFloat32);
      {
        llm::AutocastGuard innermost(true);
        EXPECT_EQ(dtype(), torch::kBFloat16);
      }
      EXPECT_FALSE(at::autocast::is_cpu_enabled()) << "leaving the innermost guard restores the inner (disabled) state";
      EXPECT_EQ(dtype(), torch::kFloat32);
    }
    EXPECT_TRUE(at::autocast::is_cpu_enabled()) << "leaving the inner guard restores the outer (enabled) state, "
                                                   "not 'off'";
    EXPECT_EQ(dtype(), torch::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(dtype(), torch::kFloat32);
}

TEST_F(AutocastAdvanced, ANewRegionSeesWeightsUpdatedSinceTheLastOne) {
  // Autocast caches the bf16 copy of an fp32 weight that is a matmul operand as it is (a leaf that
  // requires grad, e.g. h @ W) for the rest of the region; the optimizer then changes the weight in
  // place. The cache must be cleared when the outermost region ends, or the next step's forward
  // computes with the old weight.
  auto weight = torch::randn({8, 4}).requires_grad_();
  auto x = torch::randn({3, 8});
  {
    llm::AutocastGuard guard(true);
    torch::mm(x, weight);
  }
  {
    torch::NoGradGuard no_grad;
    weight.mul_(-1);  // an "optimizer step"
  }
  torch::Tensor out;
  {
    llm::AutocastGuard guard(true);
    out = torch::mm(x, weight);
  }
  auto expected = torch::mm(x.to(torch::kBFloat16), weight.detach().to(torch::kBFloat16));
  // The same bf16 product: equal up to bf16 rounding of the output (2^-9 relative).
  EXPECT_TRUE(AllClose(out, expected, /*rtol=*/1e-2, /*atol=*/1e-2))
      << "the second region used a stale bf16 copy of the weight: call at::autocast::clear_cache() when "
         "decrement_nesting() returns 0";
}

TEST_F(AutocastAdvanced, TheDtypeSettingChoosesTheRegionAndAnUnknownOneIsNamed) {
  auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  for (const auto& [name, expected] : std::vector<std::pair<std::string, torch::Dtype>>{
           {"float32", torch::kFloat32}, {"bfloat16", torch::kBFloat16}}) {
    llm::AutocastGuard guard(llm::uses_bf16_autocast(name));
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), expected) << "train.dtype " << name;
  }
  EXPECT_TRUE(ThrowsWith([] { llm::uses_bf16_autocast("float16"); }, {"float16", "float32", "bfloat16"}))
      << "name the bad value and the valid ones";
}

TEST_F(AutocastAdvanced, ACausalLMUnderTheGuardGivesFp32LogitsNearTheFp32OnesAndFp32Gradients) {
  const auto config = TinyConfig();
  llm::CausalLM model(config);
  auto ids = torch::randint(0, config.vocab_size, {2, 12});
  torch::Tensor fp32;
  {
    torch::NoGradGuard no_grad;
    fp32 = model(ids);
  }
  torch::Tensor logits, loss;
  {
    llm::AutocastGuard guard(true);
    logits = model(ids);
    loss = llm::causal_lm_loss(logits, ids);
  }
  ASSERT_EQ(logits.sizes(), fp32.sizes());
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32) << "lesson 05 returns the logits in fp32";
  EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
  // bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2% per value) through a dozen matmuls
  // of a 2-layer model whose logits are at most ~0.4: measured max error 1.4e-3, so 2e-2 is wide
  // enough for any rounding and still far below the logits' spread.
  EXPECT_TRUE(AllClose(logits, fp32, /*rtol=*/5e-2, /*atol=*/2e-2)) << "bf16 matmuls, fp32 everything that matters";
  EXPECT_FALSE(AllClose(logits, fp32, 0, 0)) << "the forward must really have run in bf16";
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kFloat32) << p.key() << ": the master weight stays fp32";
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat32) << p.key() << ": gradients land in fp32";
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
}

// --------------------------------------------------------------------------------- trainer step

std::vector<Items> SomeMicroBatches() {
  return {MakeItems(8, 5, 21), MakeItems(8, 2, 22)};
}

TEST_F(TrainerStepAdvanced, AnInfiniteGradientWithAFiniteLossThrowsNamingTheStepAndTakesNoStep) {
  torch::nn::Linear model(kIn, kClasses);
  RecordingSgd optimizer(AllParams(*model));
  const auto batches = SomeMicroBatches();
  for (const double clip : {1.0, 0.0}) {
    llm::Trainer trainer(optimizer, Options(clip));
    trainer.set_step_count(3);
    // sqrt(w - w) is 0 (the loss stays finite) but its derivative at 0 is infinite.
    std::function<llm::LossSum(const Items&)> loss_sum = [&](const Items& b) {
      auto w = model->weight;
      return llm::LossSum{lesson10::TorchCE(model(b.x), b.targets, true) + torch::sqrt(w - w.detach()).sum(), {}};
    };
    const auto before = llm::capture_parameters(*model);
    EXPECT_TRUE(ThrowsWith([&] { trainer.step<Items>(batches, ItemCount(), loss_sum); }, {"step 3"}))
        << "grad_clip " << clip << ": an infinite gradient norm stops the run, naming the step";
    try {
      trainer.step<Items>(batches, ItemCount(), loss_sum);
    } catch (const llm::NonFiniteError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "grad_clip " << clip << ": expected llm::NonFiniteError, got: " << e.what();
    }
    EXPECT_EQ(optimizer.lrs.size(), 0u) << "grad_clip " << clip << ": optimizer.step() must not be called";
    EXPECT_EQ(FirstDifference(llm::capture_parameters(*model), before), "");
    EXPECT_EQ(trainer.step_count(), 3);
  }
}

TEST_F(TrainerStepAdvanced, AStepWithNoTrainedItemsIsAnErrorNotADivergence) {
  torch::nn::Linear model(kIn, kClasses);
  RecordingSgd optimizer(AllParams(*model));
  llm::Trainer trainer(optimizer, Options(1.0));
  const std::vector<Items> nothing = {MakeItems(8, 0, 31), MakeItems(8, 0, 32)};  // every target ignored
  try {
    trainer.step<Items>(nothing, ItemCount(), ItemLossSum(model));
    ADD_FAILURE() << "N = 0 must throw";
  } catch (const llm::NotImplemented& e) {
    ADD_FAILURE() << e.what();
  } catch (const llm::NonFiniteError& e) {
    ADD_FAILURE() << "N = 0 is a data bug upstream, to be reported as such before dividing by it, not as a "
                     "non-finite loss: "
                  << e.what();
  } catch (const std::exception&) {
  }
  EXPECT_EQ(optimizer.lrs.size(), 0u) << "no optimizer step";
  EXPECT_EQ(trainer.step_count(), 0);
}

TEST_F(TrainerStepAdvanced, TheBf16OptionRunsEveryForwardUnderAutocast) {
  torch::nn::Linear model(kIn, kClasses);
  RecordingSgd optimizer(AllParams(*model));
  const auto batches = SomeMicroBatches();
  for (const bool bf16 : {true, false}) {
    auto options = Options(1.0);
    options.bf16 = bf16;
    llm::Trainer trainer(optimizer, options);
    std::vector<torch::Dtype> logits_dtypes;
    std::function<llm::LossSum(const Items&)> loss_sum = [&](const Items& b) {
      auto logits = model(b.x);
      logits_dtypes.push_back(logits.scalar_type());
      return llm::LossSum{lesson10::TorchCE(logits, b.targets, true), {}};
    };
    trainer.step<Items>(batches, ItemCount(), loss_sum);
    const auto expected = bf16 ? torch::kBFloat16 : torch::kFloat32;
    EXPECT_EQ(logits_dtypes, std::vector<torch::Dtype>(batches.size(), expected))
        << "bf16 " << bf16 << ": every micro-batch's forward runs inside AutocastGuard(options.bf16)";
    EXPECT_FALSE(at::autocast::is_cpu_enabled()) << "autocast is off again after the step";
    for (const auto& g : optimizer.grads.back()) {
      EXPECT_EQ(g.scalar_type(), torch::kFloat32) << "gradients of the fp32 master weights are fp32";
    }
  }
}

// --------------------------------------------------------------------------------- train loop

struct LoopRig {
  torch::Tensor w = torch::zeros({1}).requires_grad_();
  RecordingSgd optimizer{std::vector<llm::ParamGroup>{llm::ParamGroup{"w", {"w"}, {w}, 0.1, 0.0}}};
  llm::Trainer trainer{optimizer, Options(/*grad_clip=*/0)};
  std::vector<int64_t> steps, evals, saves;

  int64_t Run(int64_t max_steps, int64_t eval_interval, int64_t checkpoint_interval) {
    llm::LoopOptions o;
    o.max_steps = max_steps;
    o.eval_interval = eval_interval;
    o.checkpoint_interval = checkpoint_interval;
    llm::LoopHooks h;
    h.on_step = [this](const llm::StepResult& r) { return steps.push_back(r.step), true; };
    h.on_eval = [this](int64_t done) { evals.push_back(done); };
    h.on_checkpoint = [this](int64_t done) { saves.push_back(done); };
    std::function<std::vector<int>()> next = [] { return std::vector<int>{0}; };
    std::function<int64_t(const int&)> count = [](const int&) { return int64_t{1}; };
    std::function<llm::LossSum(const int&)> loss_sum = [this](const int&) {
      return llm::LossSum{(w - 1).pow(2).sum(), {}};
    };
    return llm::train_loop<int>(trainer, o, next, count, loss_sum, h);
  }
};

using Steps = std::vector<int64_t>;

TEST_F(TrainLoopAdvanced, AResumedLoopContinuesFromTheSetStepCount) {
  LoopRig rig;
  rig.trainer.set_step_count(7);
  EXPECT_EQ(rig.Run(/*max_steps=*/10, /*eval_interval=*/5, /*checkpoint_interval=*/4), 3) << "steps 7, 8 and 9";
  EXPECT_EQ(rig.steps, (Steps{7, 8, 9}));
  EXPECT_EQ(rig.evals, (Steps{10})) << "intervals count total steps, not steps of this call";
  EXPECT_EQ(rig.saves, (Steps{8, 10}));
  EXPECT_EQ(rig.optimizer.lrs.size(), 3u);

  LoopRig done;
  done.trainer.set_step_count(10);
  EXPECT_EQ(done.Run(10, 5, 4), 0) << "a finished run takes no step";
  EXPECT_EQ(done.steps, Steps{});
  EXPECT_EQ(done.evals, Steps{}) << "nothing new to evaluate";
  EXPECT_EQ(done.saves, Steps{}) << "nothing new to save";
}

TEST_F(TrainLoopAdvanced, EvaluationInTheLoopRunsWithoutGradientsInEvalModeAndTrainingResumesInTrainMode) {
  torch::nn::Linear model(kIn, kClasses);
  torch::nn::Dropout dropout(0.5);
  model->register_module("dropout", dropout);
  RecordingSgd optimizer(AllParams(*model));
  llm::Trainer trainer(optimizer, Options(0));
  std::vector<std::string> problems;
  std::function<llm::LossSum(const Items&)> loss_sum = [&](const Items& b) {
    if (!model->is_training() || !dropout->is_training()) problems.push_back("a training step ran in eval mode");
    if (!torch::GradMode::is_enabled()) problems.push_back("a training step ran without gradients");
    return llm::LossSum{lesson10::TorchCE(dropout(model(b.x)), b.targets, true), {}};
  };
  int evaluations = 0;
  llm::LoopHooks hooks;
  hooks.on_eval = [&](int64_t) {
    const auto batch = MakeItems(8, 8, 41);
    const double loss = llm::evaluate(*model, [&] {
      if (model->is_training() || dropout->is_training()) problems.push_back("evaluation ran in train mode");
      if (torch::GradMode::is_enabled()) problems.push_back("evaluation recorded gradients");
      auto out = lesson10::TorchCE(dropout(model(batch.x)), batch.targets, false);
      if (out.requires_grad()) problems.push_back("evaluation built an autograd graph");
      return out.item<double>();
    });
    EXPECT_TRUE(std::isfinite(loss));
    ++evaluations;
  };
  llm::LoopOptions o;
  o.max_steps = 4;
  o.eval_interval = 2;
  std::function<std::vector<Items>()> next = [] { return SomeMicroBatches(); };
  llm::train_loop<Items>(trainer, o, next, ItemCount(), loss_sum, hooks);
  EXPECT_EQ(evaluations, 2) << "after steps 2 and 4";
  EXPECT_EQ(problems, std::vector<std::string>{});
  EXPECT_TRUE(model->is_training()) << "evaluate() restores the training flag";
}

// -------------------------------------------------------------------------------- checkpoints

// A checkpoint with a state in every field: a trained tiny model, AdamW's moments, the generator.
struct Saved {
  llm::ModelConfig config = TinyConfig();
  llm::CausalLM model{config};
  llm::Checkpoint checkpoint;

  Saved() {
    llm::AdamW optimizer(llm::decay_param_groups(model->named_parameters(), 1e-2, 0.1));
    auto ids = torch::randint(0, config.vocab_size, {2, 8});
    llm::causal_lm_loss(model(ids), ids).backward();
    optimizer.step();
    checkpoint.model = llm::capture_parameters(*model);
    checkpoint.optimizer = optimizer.state_dict();
    checkpoint.rng_state = llm::capture_rng_state();
    checkpoint.state.data_cursor = 345;
    checkpoint.state.world_size = 1;
    checkpoint.state.model_config = llm::config_to_json(config);
  }
  std::string Save(const std::string& root, int64_t step, int64_t keep = 5) {
    checkpoint.state.step = step;
    return llm::save_checkpoint(root, checkpoint, keep);
  }
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "  " + l + "\n";
  return out;
}

TEST_F(CheckpointAdvanced, ResumeIgnoresALeftoverTemporaryAndAnIncompleteDirectory) {
  TempDir dir;
  const auto root = dir / "checkpoints";
  Saved saved;
  saved.Save(root, 4);
  const auto good = saved.Save(root, 8);
  // A save killed just before its rename: whole, COMPLETE included, but still under its temporary name.
  fs::copy(good, root + "/.tmp-step_00000012");
  WriteText(root + "/.tmp-step_00000012/junk", "left over");
  // A save written in place and killed: no COMPLETE.
  fs::copy(good, root + "/step_00000010");
  fs::remove(root + "/step_00000010/COMPLETE");

  const auto latest = llm::load_latest_checkpoint(root);
  ASSERT_TRUE(latest.checkpoint.has_value()) << "skipped:\n" << Joined(latest.skipped);
  EXPECT_EQ(fs::path(latest.dir).filename().string(), "step_00000008") << "the newest complete checkpoint";
  EXPECT_EQ(latest.checkpoint->state.step, 8);
  EXPECT_NE(Joined(latest.skipped).find("step_00000010"), std::string::npos)
      << "the incomplete step_ directory is reported as skipped, by name:\n"
      << Joined(latest.skipped);
  EXPECT_TRUE(ThrowsWith([&] { llm::load_checkpoint(root + "/step_00000010"); }, {"COMPLETE"}))
      << "load_checkpoint says what is missing";

  // The next save of step 12 starts from a clean temporary directory.
  const auto written = saved.Save(root, 12);
  EXPECT_EQ(EntryNames(written),
            (std::vector<std::string>{"COMPLETE", "model.safetensors", "optimizer.safetensors", "trainer_state.json"}))
      << "remove a leftover temporary directory before writing into it";
  EXPECT_EQ(llm::load_checkpoint(written).state.step, 12);
}

TEST_F(CheckpointAdvanced, ACorruptedOrTruncatedFileIsNamedAndResumeFallsBackToTheLastGoodOne) {
  TempDir dir;
  const auto root = dir / "checkpoints";
  Saved saved;
  saved.Save(root, 4);
  const auto truncated = saved.Save(root, 8);
  const auto flipped = saved.Save(root, 12);
  {
    // One bit of the last weight: the file still parses, only its checksum tells.
    std::string bytes = ReadText(flipped + "/model.safetensors");
    bytes.back() = static_cast<char>(bytes.back() ^ 0x10);
    WriteText(flipped + "/model.safetensors", bytes);
    const std::string opt = ReadText(truncated + "/optimizer.safetensors");
    WriteText(truncated + "/optimizer.safetensors", opt.substr(0, opt.size() / 2));  // a copy that stopped half-way
  }
  EXPECT_TRUE(ThrowsWith([&] { llm::load_checkpoint(flipped); }, {"model.safetensors"}))
      << "a flipped bit is caught by the recorded checksum, and the error names the file";
  EXPECT_TRUE(ThrowsWith([&] { llm::load_checkpoint(truncated); }, {"optimizer.safetensors"}))
      << "a truncated file is caught by its recorded size, and the error names the file";

  const auto latest = llm::load_latest_checkpoint(root);
  ASSERT_TRUE(latest.checkpoint.has_value()) << "skipped:\n" << Joined(latest.skipped);
  EXPECT_EQ(fs::path(latest.dir).filename().string(), "step_00000004") << "both newer ones are damaged";
  EXPECT_EQ(FirstDifference(latest.checkpoint->model, saved.checkpoint.model), "");
  ASSERT_EQ(latest.skipped.size(), 2u) << Joined(latest.skipped);
  const std::string skipped = Joined(latest.skipped);
  EXPECT_NE(skipped.find("model.safetensors"), std::string::npos) << "say why each was skipped:\n" << skipped;
  EXPECT_NE(skipped.find("optimizer.safetensors"), std::string::npos) << skipped;
}

TEST_F(CheckpointAdvanced, AnUnknownFormatVersionIsRefused) {
  TempDir dir;
  Saved saved;
  const auto written = saved.Save(dir / "checkpoints", 4);
  auto state = nlohmann::json::parse(ReadText(written + "/trainer_state.json"));
  ASSERT_EQ(state.value("format", -1), llm::kCheckpointFormat);
  state["format"] = llm::kCheckpointFormat + 1;  // written by a newer program
  WriteText(written + "/trainer_state.json", state.dump(2));
  EXPECT_TRUE(ThrowsWith([&] { llm::load_checkpoint(written); }, {"trainer_state.json", "format"}))
      << "a layout this program does not know is refused, not half-read";
}

TEST_F(CheckpointAdvanced, CheckResumableNamesEveryDifferingFieldWithBothValuesAndTheWorldSize) {
  TempDir dir;
  Saved saved;
  const auto loaded = llm::load_checkpoint(saved.Save(dir / "checkpoints", 4));
  const auto same = llm::config_to_json(TinyConfig());
  EXPECT_NO_THROW(llm::check_resumable(loaded.state, same, /*world_size=*/1)) << "the same run";

  auto other = TinyConfig();
  other.hidden_size = 48;
  other.num_hidden_layers = 3;
  other.mlp_type = "gelu";
  EXPECT_TRUE(ThrowsWith([&] { llm::check_resumable(loaded.state, llm::config_to_json(other), 1); },
                         {"hidden_size", "32", "48", "num_hidden_layers", "3", "mlp_type", "swiglu", "gelu"}))
      << "every differing field, with the checkpoint's value and this run's";
  EXPECT_TRUE(ThrowsWith([&] { llm::check_resumable(loaded.state, same, /*world_size=*/2); }, {"1", "2"}))
      << "the data cursor and the batch split were counted for 1 process";
}

TEST_F(CheckpointAdvanced, ACheckpointOfAnotherArchitectureIsRefusedByName) {
  TempDir dir;
  Saved saved;
  auto loaded = llm::load_checkpoint(saved.Save(dir / "checkpoints", 4));
  llm::CausalLM same(TinyConfig());
  EXPECT_NO_THROW(llm::restore_parameters(*same, loaded.model, "step_00000004"));
  EXPECT_EQ(FirstDifference(llm::capture_parameters(*same), saved.checkpoint.model), "");

  auto wider = TinyConfig();
  wider.hidden_size = 48;
  llm::CausalLM wide(wider);
  EXPECT_TRUE(ThrowsWith([&] { llm::restore_parameters(*wide, loaded.model, "step_00000004"); },
                         {"step_00000004", "model.embed_tokens.weight", "[64, 32]", "[64, 48]"}));

  auto missing = loaded.model;
  missing.erase("lm_head.weight");
  EXPECT_TRUE(ThrowsWith([&] { llm::restore_parameters(*same, missing, "ckpt"); }, {"lm_head.weight"}));
  auto extra = loaded.model;
  extra["model.layers.2.mlp.up_proj.weight"] = torch::zeros({56, 32});
  EXPECT_TRUE(
      ThrowsWith([&] { llm::restore_parameters(*same, extra, "ckpt"); }, {"model.layers.2.mlp.up_proj.weight"}));
}

TEST_F(CheckpointAdvanced, TheSavedGeneratorStateRepeatsTheSameRandomDraws) {
  TempDir dir;
  Saved saved;
  saved.checkpoint.rng_state = llm::capture_rng_state();
  const auto expected = torch::rand({6});
  const auto mask = torch::dropout(torch::ones({32}), 0.5, /*train=*/true);
  const auto written = saved.Save(dir / "checkpoints", 4);
  torch::rand({100});  // the run goes on (or a new process starts from another seed)
  torch::manual_seed(999);
  const auto loaded = llm::load_checkpoint(written);
  llm::restore_rng_state(loaded.rng_state);
  EXPECT_TRUE(torch::equal(torch::rand({6}), expected)) << "the draws after the restore are the saved run's";
  EXPECT_TRUE(torch::equal(torch::dropout(torch::ones({32}), 0.5, true), mask)) << "and so are its dropout masks";
}

// ------------------------------------------------------------------------------------- resume

constexpr int64_t kResumeSteps = 12;

llm::ScheduleOptions ResumeSchedule() {
  llm::ScheduleOptions s;
  s.kind = "cosine";
  s.peak_lr = 3e-3;
  s.min_lr = 3e-4;
  s.warmup_steps = 3;
  s.total_steps = kResumeSteps;
  return s;
}

// Micro-batch number i of the data stream: a pure function of the cursor (lesson 06's loaders).
Tokens StreamBatch(int64_t i, int64_t vocab) {
  return MakeTokens(1000 + static_cast<uint64_t>(i), i % 4 * 2, vocab);
}

// One training run of a tiny CausalLM with dropout (so the generator matters), AdamW with decay
// groups, warmup + cosine, two micro-batches a step, clipping.
struct TokenRun {
  llm::ModelConfig config = TinyConfig(/*dropout=*/0.1);
  llm::CausalLM model{nullptr};
  std::unique_ptr<llm::AdamW> optimizer;
  std::unique_ptr<llm::Trainer> trainer;
  int64_t cursor = 0, tokens_seen = 0;
  std::map<int64_t, double> losses;  // step -> loss

  explicit TokenRun(uint64_t seed) {
    torch::manual_seed(seed);
    model = llm::CausalLM(config);
    optimizer = std::make_unique<llm::AdamW>(llm::decay_param_groups(model->named_parameters(), 3e-3, 0.1));
    llm::TrainerOptions o;
    o.grad_clip = 1.0;
    o.schedule = ResumeSchedule();
    trainer = std::make_unique<llm::Trainer>(*optimizer, o);
  }

  llm::Checkpoint Capture(int64_t done) const {
    llm::Checkpoint c;
    c.model = llm::capture_parameters(*model);
    c.optimizer = optimizer->state_dict();
    c.rng_state = llm::capture_rng_state();
    c.state.step = done;
    c.state.data_cursor = cursor;
    c.state.tokens_seen = tokens_seen;
    c.state.world_size = 1;
    c.state.model_config = llm::config_to_json(config);
    return c;
  }
  void Restore(const llm::Checkpoint& c) {
    llm::check_resumable(c.state, llm::config_to_json(config), 1);
    llm::restore_parameters(*model, c.model, "checkpoint");
    optimizer->load_state_dict(c.optimizer);
    llm::restore_rng_state(c.rng_state);
    trainer->set_step_count(c.state.step);
    cursor = c.state.data_cursor;
    tokens_seen = c.state.tokens_seen;
  }
  // Trains to kResumeSteps; after_step runs inside on_step (a place to die).
  void Train(int64_t checkpoint_interval, std::function<void(int64_t)> on_checkpoint,
             std::function<void(const llm::StepResult&)> after_step = {}) {
    std::function<std::vector<Tokens>()> next = [this] {
      std::vector<Tokens> mbs;
      for (int k = 0; k < 2; ++k) mbs.push_back(StreamBatch(cursor++, config.vocab_size));
      return mbs;
    };
    llm::LoopHooks hooks;
    hooks.on_step = [&](const llm::StepResult& r) {
      losses[r.step] = r.loss;
      tokens_seen += r.count;
      if (after_step) after_step(r);
      return true;
    };
    hooks.on_checkpoint = std::move(on_checkpoint);
    llm::LoopOptions o;
    o.max_steps = kResumeSteps;
    o.checkpoint_interval = checkpoint_interval;
    llm::train_loop<Tokens>(*trainer, o, next, TokenCount(), TokenLossSum(model), hooks);
  }
};

// The uninterrupted run, then a resume from `root`'s latest checkpoint (which must be step 4) in this
// process: the resumed steps' losses must equal the uninterrupted run's bit for bit.
void ExpectBitIdenticalResume(const TokenRun& full, const std::string& root) {
  const auto latest = llm::load_latest_checkpoint(root);
  ASSERT_TRUE(latest.checkpoint.has_value()) << "no checkpoint loads; skipped:\n" << Joined(latest.skipped);
  ASSERT_EQ(fs::path(latest.dir).filename().string(), "step_00000004")
      << "the last checkpoint the killed run completed";
  TokenRun resumed(/*seed=*/999);  // another initialisation: everything must come from the checkpoint
  resumed.Restore(*latest.checkpoint);
  resumed.Train(/*checkpoint_interval=*/4,
                [&](int64_t done) { llm::save_checkpoint(root, resumed.Capture(done), /*keep=*/2); });
  ASSERT_EQ(resumed.losses.size(), 8u) << "steps 4 to 11";
  for (const auto& [step, loss] : resumed.losses) {
    EXPECT_EQ(loss, full.losses.at(step))
        << "step " << step << ": a resumed run must be bit-identical to the uninterrupted one (the weights, AdamW's "
        << "moments and steps, the generator for dropout, the step for the schedule, the data cursor)";
  }
  EXPECT_EQ(FirstDifference(llm::capture_parameters(*resumed.model), llm::capture_parameters(*full.model)), "")
      << "the final weights";
  EXPECT_EQ(resumed.tokens_seen, full.tokens_seen);
  std::vector<std::string> kept;
  for (const auto& path : llm::list_checkpoints(root)) kept.push_back(fs::path(path).filename().string());
  EXPECT_EQ(kept, (std::vector<std::string>{"step_00000012", "step_00000008"})) << "the resumed run saves at 8 and 12, "
                                                                                   "keeping 2";
}

TEST_F(ResumeTest, ARunKilledWithSigkillMidRunResumesBitIdentically) {
  torch::set_num_threads(1);  // the same reduction order in every run
  TempDir dir;
  const auto root = dir / "checkpoints";
  TokenRun full(kSeed);
  full.Train(/*checkpoint_interval=*/0, {});
  ASSERT_EQ(full.losses.size(), static_cast<size_t>(kResumeSteps));

  const pid_t child = ForkChild(
      [&] {
        TokenRun run(kSeed);
        run.Train(
            /*checkpoint_interval=*/4, [&](int64_t done) { llm::save_checkpoint(root, run.Capture(done), /*keep=*/2); },
            [](const llm::StepResult& r) {
              if (r.step == 6) raise(SIGKILL);  // a crash in step 7 of 12, after the step-4 checkpoint
            });
      },
      dir / "error");
  const int status = WaitAll({child}, std::chrono::seconds(60))[0];
  ASSERT_TRUE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the run should have died of SIGKILL in its step 7; it " << Outcome(status, dir / "error");
  ExpectBitIdenticalResume(full, root);
}

TEST_F(ResumeTest, ARunKilledWhileWritingACheckpointLeavesNoBrokenStepDirectoryAndResumes) {
  torch::set_num_threads(1);
  TempDir dir;
  const auto root = dir / "checkpoints";
  TokenRun full(kSeed);
  full.Train(/*checkpoint_interval=*/0, {});

  const pid_t child = ForkChild(
      [&] {
        TokenRun run(kSeed);
        run.Train(/*checkpoint_interval=*/4, [&](int64_t done) {
          if (done == 8) {
            // From now on a write past the size of the step-4 model.safetensors raises SIGXFSZ, which we
            // turn into SIGKILL: the process dies in the middle of writing the (larger) optimizer
            // state, whatever order the files are written in.
            const auto limit = fs::file_size(root + "/step_00000004/model.safetensors");
            signal(SIGXFSZ, [](int) { raise(SIGKILL); });
            struct rlimit rl;
            getrlimit(RLIMIT_FSIZE, &rl);
            rl.rlim_cur = static_cast<rlim_t>(limit);
            setrlimit(RLIMIT_FSIZE, &rl);
          }
          llm::save_checkpoint(root, run.Capture(done), /*keep=*/2);
        });
      },
      dir / "error");
  const int status = WaitAll({child}, std::chrono::seconds(60))[0];
  ASSERT_TRUE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the run should have died of SIGKILL while saving step 8; it " << Outcome(status, dir / "error");
  for (const auto& name : EntryNames(root)) {
    if (llm::checkpoint_step(name) < 0) continue;
    try {
      llm::load_checkpoint(root + "/" + name);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the killed save left " << name << ", which does not load (" << e.what()
                    << "): write into a temporary directory and rename it to step_* only when it is whole";
    }
  }
  ExpectBitIdenticalResume(full, root);
}

// ------------------------------------------------------------------------------- data parallel

TEST_F(DataParallelTest, TorchrunsVariablesSetTheRanksThatJoinTheGroupAndMalformedOnesAreNamed) {
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(v);
  const auto single = llm::DistributedEnv::from_environment();
  EXPECT_EQ(single.rank, 0);
  EXPECT_EQ(single.world_size, 1) << "no variables: one process";
  struct Bad {
    std::vector<std::pair<const char*, const char*>> env;
    std::vector<std::string> needles;
  };
  const std::vector<Bad> cases = {
      Bad{{{"RANK", "one"}}, {"RANK", "one"}},
      Bad{{{"WORLD_SIZE", "0"}}, {"WORLD_SIZE", "0"}},
      Bad{{{"WORLD_SIZE", "2"}, {"RANK", "2"}}, {"RANK", "2"}},  // ranks are 0 and 1
      Bad{{{"MASTER_PORT", "70000"}}, {"MASTER_PORT", "70000"}},
  };
  for (const auto& bad : cases) {
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(v);
    for (const auto& [k, v] : bad.env) setenv(k, v, 1);
    EXPECT_TRUE(ThrowsWith([] { llm::DistributedEnv::from_environment(); }, bad.needles)) << bad.needles[0];
  }
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(v);

  TempDir dir;
  const auto failures = RunRanks(dir, 2, [&](int64_t rank) {
    setenv("RANK", std::to_string(rank).c_str(), 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "29533", 1);
    const auto env = llm::DistributedEnv::from_environment();
    auto group = llm::ProcessGroup::with_file_store(dir / "store", env.rank, env.world_size);
    auto p = torch::zeros({3}).requires_grad_();
    p.mutable_grad() = torch::full({3}, static_cast<float>(env.rank + 1));
    llm::all_reduce_gradients(*group, {p});
    llm::save_safetensors(
        dir / fmt::format("rank_{}.safetensors", rank),
        {{"env", Scalars({double(env.rank), double(env.world_size), double(env.local_rank), double(env.master_port)})},
         {"grad", p.grad()}});
  });
  ASSERT_EQ(failures, "");
  for (int64_t r = 0; r < 2; ++r) {
    const auto got = llm::load_safetensors(dir / fmt::format("rank_{}.safetensors", r)).tensors;
    EXPECT_EQ(Values(got.at("env")), (std::vector<double>{double(r), 2, double(r), 29533})) << "rank " << r;
    EXPECT_TRUE(AllClose(got.at("grad"), torch::full({3}, 3.0f), 0, 0)) << "rank " << r << ": 1 + 2";
  }
}

TEST_F(DataParallelTest, AllReduceSumsEveryGradientAndZeroFillsAMissingOne) {
  TempDir dir;
  // Rank r: a has gradient (r + 1) * base, b a rank-specific random one, c a gradient on rank 1 only
  // (a parameter its batch did not use on rank 0).
  auto grads = [](int64_t rank) {
    auto gen = lesson10::Gen(50 + static_cast<uint64_t>(rank));
    auto base = torch::arange(6, torch::kFloat32).view({3, 2});
    return std::vector<torch::Tensor>{base * static_cast<float>(rank + 1), torch::randn({4}, gen),
                                      rank == 1 ? torch::randn({5}, gen) : torch::Tensor()};
  };
  const auto failures = RunRanks(dir, 2, [&](int64_t rank) {
    auto group = llm::ProcessGroup::with_file_store(dir / "store", rank, 2);
    const auto g = grads(rank);
    std::vector<torch::Tensor> params = {torch::zeros({3, 2}).requires_grad_(), torch::zeros({4}).requires_grad_(),
                                         torch::zeros({5}).requires_grad_()};
    for (size_t i = 0; i < params.size(); ++i) {
      if (g[i].defined()) params[i].mutable_grad() = g[i].clone();
    }
    llm::all_reduce_gradients(*group, params, /*bucket_bytes=*/24);  // several buckets
    llm::TensorMap out;
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].grad().defined()) out[fmt::format("g{}", i)] = params[i].grad();
    }
    llm::save_safetensors(dir / fmt::format("rank_{}.safetensors", rank), out);
  });
  ASSERT_EQ(failures, "");
  const auto g0 = grads(0), g1 = grads(1);
  const std::vector<torch::Tensor> expected = {g0[0] + g1[0], g0[1] + g1[1], g1[2]};
  for (int64_t r = 0; r < 2; ++r) {
    const auto got = llm::load_safetensors(dir / fmt::format("rank_{}.safetensors", r)).tensors;
    for (size_t i = 0; i < expected.size(); ++i) {
      const auto key = fmt::format("g{}", i);
      ASSERT_EQ(got.count(key), 1u) << "rank " << r << ", parameter " << i
                                    << " has no gradient: give it zeros so every rank sends the same layout";
      // A sum of two fp32 numbers: exact up to one rounding.
      EXPECT_TRUE(AllClose(got.at(key), expected[i], /*rtol=*/1e-6, /*atol=*/1e-7))
          << "rank " << r << ", parameter " << i
          << ": the SUM over ranks (the trainer already divided by the global N)";
    }
  }
}

struct Net : torch::nn::Module {
  Net() {
    linear = register_module("linear", torch::nn::Linear(4, 3));
    scale = register_buffer("scale", torch::randn({3}));
  }
  torch::nn::Linear linear{nullptr};
  torch::Tensor scale;
};

TEST_F(DataParallelTest, BroadcastGivesEveryRankRankZerosParametersAndBuffers) {
  TempDir dir;
  const auto failures = RunRanks(dir, 2, [&](int64_t rank) {
    torch::manual_seed(100 + static_cast<uint64_t>(rank));  // differently initialised ranks
    Net net;
    auto group = llm::ProcessGroup::with_file_store(dir / "store", rank, 2);
    llm::broadcast_parameters(*group, net, /*bucket_bytes=*/20);
    llm::save_safetensors(dir / fmt::format("rank_{}.safetensors", rank), llm::capture_parameters(net));
  });
  ASSERT_EQ(failures, "");
  torch::manual_seed(100);
  Net rank0;
  const auto expected = llm::capture_parameters(rank0);
  for (int64_t r = 0; r < 2; ++r) {
    const auto got = llm::load_safetensors(dir / fmt::format("rank_{}.safetensors", r)).tensors;
    EXPECT_EQ(FirstDifference(got, expected), "") << "rank " << r << " must hold rank 0's initial weights and buffers";
  }
}

// Micro-batch j of global step s. Ranks 0 and 1 take j = 0, 1 and j = 2, 3; the prompts mask 0, 2, 8
// and 9 of the 10 positions, so rank 0 trains 20 + 16 tokens and rank 1 only 4 + 2.
Tokens GlobalMicroBatch(int64_t step, int64_t j, int64_t vocab) {
  const int64_t prompts[] = {0, 2, 8, 9};
  return MakeTokens(2000 + static_cast<uint64_t>(10 * step + j), prompts[j], vocab);
}

constexpr int64_t kDpSteps = 3;
constexpr double kDpClip = 0.5;

TEST_F(DataParallelTest, TwoRanksOnHalvesOfTheBatchTrainExactlyLikeOneProcessOnAllOfIt) {
  torch::set_num_threads(1);
  const auto config = TinyConfig();
  llm::ScheduleOptions constant;
  constant.kind = "constant";
  constant.peak_lr = 0.5;
  constant.min_lr = 0.0;
  constant.warmup_steps = 0;
  constant.total_steps = kDpSteps;

  // One process, all four micro-batches a step. SGD, not Adam: Adam would hide a gradient twice too
  // large or too small, SGD moves the weights by it.
  torch::manual_seed(kSeed);
  llm::CausalLM single(config);
  RecordingSgd single_opt(AllParams(*single));
  llm::Trainer single_trainer(single_opt, Options(kDpClip, constant));
  std::vector<llm::StepResult> expected;
  for (int64_t s = 0; s < kDpSteps; ++s) {
    std::vector<Tokens> all;
    for (int64_t j = 0; j < 4; ++j) all.push_back(GlobalMicroBatch(s, j, config.vocab_size));
    expected.push_back(single_trainer.step<Tokens>(all, TokenCount(), TokenLossSum(single)));
  }
  ASSERT_GT(expected[0].grad_norm, kDpClip) << "the test's premise: clipping is active";

  TempDir dir;
  const auto failures = RunRanks(dir, 2, [&](int64_t rank) {
    torch::manual_seed(kSeed);
    llm::CausalLM model(config);
    RecordingSgd opt(AllParams(*model));
    auto group = llm::ProcessGroup::with_file_store(dir / "store", rank, 2);
    llm::Trainer trainer(opt, Options(kDpClip, constant), group.get());
    std::vector<double> results;
    for (int64_t s = 0; s < kDpSteps; ++s) {
      const std::vector<Tokens> mine = {GlobalMicroBatch(s, 2 * rank, config.vocab_size),
                                        GlobalMicroBatch(s, 2 * rank + 1, config.vocab_size)};
      const auto r = trainer.step<Tokens>(mine, TokenCount(), TokenLossSum(model));
      results.insert(results.end(), {r.loss, r.grad_norm, static_cast<double>(r.count)});
    }
    auto out = llm::capture_parameters(*model);
    out["results"] = Scalars(results);
    llm::save_safetensors(dir / fmt::format("rank_{}.safetensors", rank), out);
  });
  ASSERT_EQ(failures, "");

  const auto reference = llm::capture_parameters(*single);
  std::vector<llm::TensorMap> ranks;
  for (int64_t r = 0; r < 2; ++r) {
    auto got = llm::load_safetensors(dir / fmt::format("rank_{}.safetensors", r)).tensors;
    const auto results = Values(got.at("results"));
    got.erase("results");
    for (int64_t s = 0; s < kDpSteps; ++s) {
      EXPECT_EQ(static_cast<int64_t>(results[3 * s + 2]), expected[s].count)
          << "rank " << r << ", step " << s << ": N is the global count (all-reduced), 42";
      EXPECT_NEAR(results[3 * s], expected[s].loss, 1e-5 * expected[s].loss)
          << "rank " << r << ", step " << s << ": the loss is the global token mean";
      EXPECT_NEAR(results[3 * s + 1], expected[s].grad_norm, 1e-4 * expected[s].grad_norm)
          << "rank " << r << ", step " << s << ": the norm of the all-reduced (global) gradient, before clipping";
    }
    for (const auto& [name, t] : reference) {
      ASSERT_EQ(got.count(name), 1u) << name;
      // Sums of the same fp32 terms in another grouping, over 3 steps: measured max abs diff 7e-9,
      // while one SGD step moves a weight by ~1e-3 (a wrongly weighted rank moves it by 1e-4 more).
      EXPECT_TRUE(AllClose(got.at(name), t, /*rtol=*/1e-5, /*atol=*/1e-6))
          << "rank " << r << ", " << name << ": each rank divides by the GLOBAL N, the all-reduce SUMS, "
          << "and clipping sees the summed gradient";
    }
    ranks.push_back(std::move(got));
  }
  EXPECT_EQ(FirstDifference(ranks[0], ranks[1]), "") << "both ranks apply the same update: their weights never drift";
}

}  // namespace
