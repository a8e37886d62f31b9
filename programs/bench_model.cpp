// llm-bench-model: the speed of the lesson 03-05 model, measured.
//
//   training    one optimizer step of the trainer (lesson 10: forward, cross-entropy, backward, clip,
//               AdamW) of a preset model on random tokens, fp32 or bf16 autocast, tokens/s
//   generation  256 new tokens, greedy, batch 1, with and without the KV cache, tokens/s
//
//   llm-bench-model                          tiny preset, every core
//   llm-bench-model --preset small --threads 2 --dtype bfloat16
//
// The thread count is set explicitly (LibTorch here defaults to 1) and printed with the figures.
#include <llm/config/model_config.h>
#include <llm/eval/flops.h>
#include <llm/generate/generate.h>
#include <llm/model/causal_lm.h>
#include <llm/train/adamw.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/mixed_precision.h>
#include <llm/train/trainer.h>

#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <thread>

namespace {

// The machine's matmul peak for a dtype, GFLOP/s: the best of a few 1024^3 products.
double matmul_peak_gflops(torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({1024, 1024}).to(dtype), b = torch::randn({1024, 1024}).to(dtype);
  for (int i = 0; i < 3; ++i) torch::mm(a, b);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 8; ++i) torch::mm(a, b);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 8;
    best = std::max(best, 2.0 * 1024 * 1024 * 1024 / s / 1e9);
  }
  return best;
}

double seconds(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure training and generation speed of the Llama-style model (lessons 03-05)."};
  std::string preset = "tiny", dtype = "float32";
  bool train_only = false;
  std::string profile_path;
  int64_t threads = 0, gen_threads = 1, batch = 16, seq_len = 256, steps = 10, new_tokens = 256, prompt_len = 16;
  app.add_option("--preset", preset, "model size: tiny, small or medium")
      ->capture_default_str()
      ->check(CLI::IsMember(llm::ModelConfig::preset_names()));
  app.add_option("--threads", threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--dtype", dtype, "training precision: float32, or bfloat16 autocast with fp32 master weights")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_flag("--train-only", train_only, "measure training only (benchmarks/compare.py)");
  app.add_option("--profile", profile_path,
                 "write a LibTorch profile of one training step (Chrome trace JSON; benchmarks/profile_summary.py "
                 "sums it by operator)");
  app.add_option("--gen-threads", gen_threads,
                 "threads for the generation measurement; 1 by default: a batch-1 decoding step is a chain of tiny ops "
                 "that a second OpenMP thread only slows (measured: ~2,300 vs 1,100-1,800 tokens/s, tiny preset)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "training batch size B")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seq-len", seq_len, "training sequence length T")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "timed training steps (after 2 warm-up steps)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--new-tokens", new_tokens, "tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--prompt-len", prompt_len, "prompt length for generation")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    torch::set_num_threads(static_cast<int>(threads));
    torch::manual_seed(0);

    auto config = llm::ModelConfig::preset(preset);
    // Room for the longest sequence either measurement needs.
    config.max_position_embeddings = std::max({config.max_position_embeddings, seq_len, prompt_len + new_tokens});
    llm::CausalLM model(config);
    fmt::print("model: preset {} ({:.2f}M parameters), {} threads\n", preset, model->num_parameters() / 1e6, threads);

    // ---- training: the trainer's step, as llm pretrain runs it ----
    llm::AdamW optimizer(llm::decay_param_groups(model->named_parameters(), 1e-3, 0.1), {0.9, 0.95, 1e-8});
    llm::TrainerOptions options;
    options.bf16 = llm::uses_bf16_autocast(dtype);
    options.schedule = {"constant", 1e-3, 1e-3, 0, 1 << 30, 0.0};
    llm::Trainer trainer(optimizer, options);
    const std::vector<torch::Tensor> batch_of_one = {torch::randint(0, config.vocab_size, {batch, seq_len + 1})};
    std::function<int64_t(const torch::Tensor&)> count = [&](const torch::Tensor&) { return batch * seq_len; };
    llm::CrossEntropyOptions ce;
    ce.reduction = llm::Reduction::kSum;
    std::function<llm::LossSum(const torch::Tensor&)> loss_sum = [&](const torch::Tensor& ids) {
      auto logits = model(ids.narrow(1, 0, seq_len));
      return llm::LossSum{
          llm::cross_entropy(logits.reshape({-1, config.vocab_size}), ids.narrow(1, 1, seq_len).reshape({-1}), ce), {}};
    };
    auto step = [&] { trainer.step(batch_of_one, count, loss_sum); };
    step(), step();  // warm-up: allocations, thread pools
    const double train_s = seconds([&] {
      for (int64_t i = 0; i < steps; ++i) step();
    });
    const double tokens_per_s = batch * seq_len * steps / train_s;
    fmt::print("training   B {} x T {}, {}, AdamW: {:9.0f} tokens/s  ({:.3f} s/step)\n", batch, seq_len, dtype,
               tokens_per_s, train_s / steps);
    // Model FLOPs per token, lesson 12's count (flops.h): 6N over the matmul weights (nanochat's N:
    // no embedding lookup) plus 12 L H D T for attention's score and value products.
    const double flops_per_token = llm::training_flops_per_token(config, seq_len);
    const double peak = matmul_peak_gflops(options.bf16 ? torch::kBFloat16 : torch::kFloat32);
    fmt::print("           {:.1f} MFLOP/token -> {:.0f} GFLOP/s; the {} matmul peak here {:.0f} GFLOP/s: MFU {:.0f}%\n",
               flops_per_token / 1e6, flops_per_token * tokens_per_s / 1e9, dtype, peak,
               100 * flops_per_token * tokens_per_s / 1e9 / peak);
    if (!profile_path.empty()) {
      {
        torch::autograd::profiler::RecordProfile profile(profile_path);
        step();
      }
      fmt::print("profile of one step: {}\n", profile_path);
    }

    if (train_only) return 0;

    // ---- generation ----
    torch::set_num_threads(static_cast<int>(gen_threads));
    llm::GenerationConfig gen;
    gen.max_new_tokens = new_tokens;
    gen.sampling.temperature = 0;
    std::vector<std::vector<int64_t>> prompt(1);
    for (int64_t i = 0; i < prompt_len; ++i) prompt[0].push_back(i % config.vocab_size);
    std::vector<std::vector<int64_t>> with_cache, without_cache;
    const double cached_s = seconds([&] { with_cache = llm::generate(model, prompt, gen); });
    gen.use_cache = false;
    const double uncached_s = seconds([&] { without_cache = llm::generate(model, prompt, gen); });
    const double n = static_cast<double>(with_cache[0].size());
    fmt::print("generation {} new tokens after {} prompt tokens, greedy, B 1, {} thread(s):\n", with_cache[0].size(),
               prompt_len, gen_threads);
    fmt::print("  with the KV cache     {:9.0f} tokens/s  ({:.3f} s)\n", n / cached_s, cached_s);
    fmt::print("  without the cache     {:9.0f} tokens/s  ({:.3f} s)\n", n / uncached_s, uncached_s);
    fmt::print("  speed-up              {:9.1f}x   (target >= 10x); same tokens: {}\n", uncached_s / cached_s,
               with_cache == without_cache ? "yes" : "NO");
  } catch (const std::exception& e) {
    fmt::print(stderr, "llm-bench-model: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
