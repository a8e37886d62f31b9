// Shared by lesson 10's suites: a tiny model, token-classification micro-batches with ignored
// targets, an optimizer that records what each step saw, a temporary directory, and forked child
// processes (data-parallel ranks, runs that are killed) that report back through files.
#pragma once

#include <llm/common/safetensors.h>
#include <llm/common/testing.h>
#include <llm/config/model_config.h>
#include <llm/train/optimizer.h>
#include <llm/train/trainer.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace lesson10 {

constexpr int64_t kIgnore = -100;  // the ignore_index of PyTorch, Hugging Face and lesson 07

// Small enough to train a dozen steps in well under a second, large enough to have GQA and two
// layers.
inline llm::ModelConfig TinyConfig(double dropout = 0.0) {
  llm::ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.multiple_of = 8;
  c.dropout = dropout;
  return c;
}

class TrainTest : public llm::testing::SeededTest {};

inline at::Generator Gen(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// ---------------------------------------------------------------------------- token classification

// A micro-batch of items for a linear classifier: x (n, kIn), targets (n,) with kIgnore where an
// item is not trained (padding, a prompt token).
struct Items {
  torch::Tensor x, targets;
};

constexpr int64_t kIn = 6, kClasses = 5;

// n items of which exactly `trained` have a target (the others kIgnore), from a fixed seed.
inline Items MakeItems(int64_t n, int64_t trained, uint64_t seed) {
  auto gen = Gen(seed);
  auto x = torch::randn({n, kIn}, gen) * 2;
  auto targets = torch::randint(0, kClasses, {n}, gen, torch::kLong);
  auto order = torch::randperm(n, gen, torch::kLong);
  targets.index_put_({order.narrow(0, trained, n - trained)}, kIgnore);
  return {x, targets};
}

inline int64_t CountItems(const Items& b) {
  return b.targets.ne(kIgnore).sum().item<int64_t>();
}

// Concatenation of micro-batches: the "one big batch" they split.
inline Items Concat(const std::vector<Items>& parts) {
  std::vector<torch::Tensor> xs, ts;
  for (const auto& p : parts) xs.push_back(p.x), ts.push_back(p.targets);
  return {torch::cat(xs), torch::cat(ts)};
}

// Torch's own cross-entropy (the independent reference), mean over the trained items or their sum.
inline torch::Tensor TorchCE(const torch::Tensor& logits, const torch::Tensor& targets, bool sum) {
  namespace F = torch::nn::functional;
  auto options = F::CrossEntropyFuncOptions().ignore_index(kIgnore);
  if (sum) options.reduction(torch::kSum);
  return F::cross_entropy(logits, targets, options);
}

// ---------------------------------------------------------------------------- optimizers

// Plain SGD that records, at every step(), the learning rate and a copy of every gradient: what the
// trainer handed the optimizer, whatever it does with the gradients afterwards. SGD (unlike Adam)
// is not invariant to the gradient's scale, so a gradient twice too large shows in the weights.
class RecordingSgd : public llm::Optimizer {
 public:
  using llm::Optimizer::Optimizer;

  void step() override {
    torch::NoGradGuard no_grad;
    lrs.push_back(groups_.front().lr);
    std::vector<torch::Tensor> seen;
    for (auto& g : groups_) {
      for (auto& p : g.params) {
        seen.push_back(p.grad().defined() ? p.grad().detach().clone() : torch::Tensor());
        if (p.grad().defined()) p.sub_(p.grad() * g.lr);
      }
    }
    grads.push_back(std::move(seen));
  }
  llm::OptimizerState state_dict() const override {
    return {{"steps", torch::tensor(static_cast<int64_t>(lrs.size()))}};
  }
  void load_state_dict(const llm::OptimizerState&) override {}

  std::vector<double> lrs;                        // one per step() call
  std::vector<std::vector<torch::Tensor>> grads;  // per step(), per parameter in group order
};

inline std::vector<llm::ParamGroup> AllParams(torch::nn::Module& module, double lr = 0.1) {
  llm::ParamGroup g{"all", {}, {}, lr, 0.0};
  for (auto& item : module.named_parameters()) {
    g.names.push_back(item.key());
    g.params.push_back(item.value());
  }
  return {g};
}

// A schedule that changes every step, so using the wrong step's learning rate shows.
inline llm::ScheduleOptions VaryingSchedule() {
  llm::ScheduleOptions s;
  s.kind = "cosine";
  s.peak_lr = 0.1;
  s.min_lr = 0.01;
  s.warmup_steps = 3;
  s.total_steps = 12;
  return s;
}

inline llm::TrainerOptions Options(double grad_clip, llm::ScheduleOptions schedule = VaryingSchedule()) {
  llm::TrainerOptions o;
  o.grad_clip = grad_clip;
  o.schedule = schedule;
  return o;
}

// The functions the trainer takes, for a linear classifier on Items.
inline std::function<int64_t(const Items&)> ItemCount() {
  return CountItems;
}
inline std::function<llm::LossSum(const Items&)> ItemLossSum(torch::nn::Linear& model) {
  return [model](const Items& b) mutable { return llm::LossSum{TorchCE(model(b.x), b.targets, /*sum=*/true), {}}; };
}

// ---------------------------------------------------------------------------- files and processes

// A fresh directory under the system's temporary directory, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "llm-lesson10-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline std::vector<std::string> EntryNames(const std::string& dir) {
  std::vector<std::string> names;
  if (!std::filesystem::is_directory(dir)) return names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Forks a child that runs fn() and exits: 0 when it returned, 1 (its error written to error_file)
// when it threw. The child never returns into GoogleTest.
inline pid_t ForkChild(const std::function<void()>& fn, const std::string& error_file) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  int code = 0;
  try {
    fn();
  } catch (const std::exception& e) {
    WriteText(error_file, e.what());
    code = 1;
  } catch (...) {
    WriteText(error_file, "an exception that is not a std::exception");
    code = 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

// Waits for every child until `timeout`; kills (SIGKILL) and reaps the ones still running then.
// Returns their wait statuses; -1 for a child that had to be killed at the deadline.
inline std::vector<int> WaitAll(const std::vector<pid_t>& pids, std::chrono::seconds timeout) {
  std::vector<int> status(pids.size(), 0);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t remaining = pids.size();
  while (remaining > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int s = 0;
      if (waitpid(pids[i], &s, WNOHANG) == pids[i]) done[i] = true, status[i] = s, --remaining;
    }
    if (remaining == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (done[i]) continue;
        kill(pids[i], SIGKILL);
        waitpid(pids[i], nullptr, 0);
        status[i] = -1;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return status;
}

// "" for a child that exited with code 0, else what happened to it (with its error message).
inline std::string Outcome(int status, const std::string& error_file) {
  if (status == -1) return "still running at the deadline (a collective waiting for a rank that never came?), killed";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFSIGNALED(status))
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("exited with code {}: {}", WEXITSTATUS(status), ReadText(error_file));
}

// Runs fn(rank) in `world` forked processes, as data-parallel ranks do. Empty when every rank
// succeeded, else one line per rank that did not.
inline std::string RunRanks(const TempDir& dir, int64_t world, const std::function<void(int64_t rank)>& fn,
                            std::chrono::seconds timeout = std::chrono::seconds(60)) {
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < world; ++r) pids.push_back(ForkChild([&, r] { fn(r); }, dir / fmt::format("error_{}", r)));
  const auto statuses = WaitAll(pids, timeout);
  std::string failures;
  for (int64_t r = 0; r < world; ++r) {
    const std::string outcome = Outcome(statuses[r], dir / fmt::format("error_{}", r));
    if (!outcome.empty()) failures += fmt::format("rank {}: {}\n", r, outcome);
  }
  return failures;
}

// Doubles through a safetensors file (children report their numbers to the parent this way).
inline torch::Tensor Scalars(const std::vector<double>& values) {
  return torch::tensor(values, torch::kFloat64);
}
inline std::vector<double> Values(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Empty when the two maps hold the same names with bit-identical tensors, else the first difference.
inline std::string FirstDifference(const llm::TensorMap& a, const llm::TensorMap& b) {
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end()) return "'" + name + "' is missing from the second";
    if (t.sizes() != it->second.sizes() || t.scalar_type() != it->second.scalar_type()) {
      return "'" + name + "' differs in shape or dtype";
    }
    if (!torch::equal(t, it->second)) {
      return fmt::format("'{}' differs, max abs diff {:.3g}", name,
                         (t.to(torch::kFloat64) - it->second.to(torch::kFloat64)).abs().max().item<double>());
    }
  }
  for (const auto& [name, t] : b) {
    if (a.find(name) == a.end()) return "'" + name + "' is missing from the first";
  }
  return "";
}

}  // namespace lesson10
