// llm-bench-memory: what lessons 11 and 12 claim about memory, measured. One measurement per
// process (peak resident memory is a per-process high-water mark); benchmarks/memory.sh runs them
// side by side and prints the table.
//
//   attention   forward + backward of one attention call at a long sequence: lesson 03's (the
//               (B, H, T, T) weights kept for backward) or lesson 11's tiled one (the logsumexp only).
//               Peak resident memory above the inputs, and the time.
//   training    a few training steps of a preset model (fp32, AdamW, lesson 10's trainer): peak
//               resident memory above the process before the model existed, against lesson 12's
//               estimate_training_memory; optionally with LoRA (lesson 11) on every projection.
//   nf4         bytes per parameter of a weight in NF4, with and without double quantisation, and
//               the round-trip error, against fp32.
//
//   llm-bench-memory attention --impl tiled --seq 4096
//   llm-bench-memory training --preset small --batch 8 --seq 256
#include <llm/config/model_config.h>
#include <llm/eval/memory.h>
#include <llm/model/causal_lm.h>
#include <llm/model/scaled_dot_product.h>
#include <llm/model/tiled_attention.h>
#include <llm/peft/lora.h>
#include <llm/peft/nf4.h>
#include <llm/train/adamw.h>
#include <llm/train/cross_entropy.h>
#include <llm/train/trainer.h>

#include <fmt/format.h>
#include <sys/resource.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <fstream>
#include <string>

namespace {

// Current and peak resident set size of this process, bytes (Linux /proc/self/status).
std::pair<double, double> rss_bytes() {
  std::ifstream in("/proc/self/status");
  double now = 0, peak = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) now = std::stod(line.substr(6)) * 1024;
    if (line.rfind("VmHWM:", 0) == 0) peak = std::stod(line.substr(6)) * 1024;
  }
  return {now, peak};
}

int attention(const std::string& impl, int64_t B, int64_t H, int64_t T, int64_t D) {
  torch::manual_seed(0);
  auto q = torch::randn({B, H, T, D}, torch::requires_grad());
  auto k = torch::randn({B, H, T, D}, torch::requires_grad());
  auto v = torch::randn({B, H, T, D}, torch::requires_grad());
  auto g = torch::randn({B, H, T, D});
  const double base = rss_bytes().first;
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor y;
  if (impl == "naive") {
    llm::AttentionOptions o;
    o.causal = true;
    y = llm::scaled_dot_product_attention(q, k, v, o).out;
  } else if (impl == "tiled") {
    y = llm::tiled_attention(q, k, v, {});
  } else {
    fmt::print(stderr, "llm-bench-memory: --impl must be naive or tiled, got '{}'\n", impl);
    return 2;
  }
  y.backward(g);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double peak = rss_bytes().second;
  fmt::print(
      "{{\"bench\": \"attention\", \"impl\": \"{}\", \"B\": {}, \"H\": {}, \"T\": {}, \"D\": {}, "
      "\"peak_above_inputs_mb\": {:.1f}, \"seconds\": {:.3f}, \"scores_mb\": {:.1f}}}\n",
      impl, B, H, T, D, (peak - base) / 1e6, seconds, 4.0 * B * H * T * T / 1e6);
  return 0;
}

int training(const std::string& preset, int64_t B, int64_t T, int64_t lora_r, int64_t steps) {
  torch::manual_seed(0);
  const double base = rss_bytes().first;
  auto config = llm::ModelConfig::preset(preset);
  config.max_position_embeddings = std::max(config.max_position_embeddings, T);
  llm::CausalLM model(config);
  int64_t trainable = -1;
  if (lora_r > 0) {
    llm::LoraConfig lc;
    lc.r = lora_r;
    lc.alpha = 2.0 * lora_r;
    lc.target_modules = llm::llama_projections();
    llm::apply_lora(*model, lc);
    trainable = llm::count_parameters(*model).first;
  }
  llm::AdamW optimizer(llm::decay_param_groups(model->named_parameters(), 1e-3, 0.1), {});
  llm::TrainerOptions to;
  to.grad_clip = 1.0;
  llm::Trainer trainer(optimizer, to);
  auto ids = torch::randint(0, config.vocab_size, {B, T + 1});
  std::vector<torch::Tensor> batch = {ids};
  std::function<int64_t(const torch::Tensor&)> count = [&](const torch::Tensor&) { return B * T; };
  std::function<llm::LossSum(const torch::Tensor&)> loss_sum = [&](const torch::Tensor& b) {
    auto logits = model(b.narrow(1, 0, T));
    llm::CrossEntropyOptions ce;
    ce.reduction = llm::Reduction::kSum;
    return llm::LossSum{
        llm::cross_entropy(logits.reshape({-1, config.vocab_size}), b.narrow(1, 1, T).reshape({-1}), ce), {}};
  };
  for (int64_t s = 0; s < steps; ++s) trainer.step(batch, count, loss_sum);
  const double peak = rss_bytes().second;
  const auto est = llm::estimate_training_memory(config, B, T, trainable);
  fmt::print(
      "{{\"bench\": \"training\", \"preset\": \"{}\", \"B\": {}, \"T\": {}, \"lora_r\": {}, \"parameters\": {}, "
      "\"trainable\": {}, \"measured_mb\": {:.1f}, \"estimate_mb\": {:.1f}, \"weights_mb\": {:.1f}, "
      "\"gradients_mb\": {:.1f}, \"optimizer_mb\": {:.1f}, \"activations_mb\": {:.1f}, \"ratio\": {:.3f}}}\n",
      preset, B, T, lora_r, config.num_parameters(), trainable < 0 ? config.num_parameters() : trainable,
      (peak - base) / 1e6, est.total() / 1e6, est.weights / 1e6, est.gradients / 1e6, est.optimizer / 1e6,
      est.activations / 1e6, (peak - base) / static_cast<double>(est.total()));
  return 0;
}

int nf4(int64_t out, int64_t in) {
  torch::manual_seed(0);
  auto w = torch::randn({out, in}) * 0.02;
  for (bool dq : {false, true}) {
    llm::Nf4Options o;
    o.double_quant = dq;
    auto q = llm::quantize_nf4(w, o);
    auto back = llm::dequantize_nf4(q);
    const double rel = ((back - w).norm() / w.norm()).item<double>();
    fmt::print(
        "{{\"bench\": \"nf4\", \"shape\": [{}, {}], \"double_quant\": {}, \"bytes\": {}, \"fp32_bytes\": {}, "
        "\"bytes_per_parameter\": {:.4f}, \"ratio_to_fp32\": {:.2f}, \"relative_error\": {:.4f}}}\n",
        out, in, dq ? "true" : "false", q.bytes(), 4 * w.numel(), static_cast<double>(q.bytes()) / w.numel(),
        4.0 * w.numel() / q.bytes(), rel);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Memory of attention, training and NF4 weights, measured (one measurement per process).",
               "llm-bench-memory"};
  app.require_subcommand(1);
  int64_t threads = 2;
  app.add_option("--threads", threads, "intra-op threads")->check(CLI::PositiveNumber);
  std::string impl = "tiled";
  int64_t B = 1, H = 4, T = 4096, D = 64;                      // attention
  int64_t train_B = 16, train_T = 256, lora_r = 0, steps = 3;  // training
  int64_t out = 4096, in = 4096;                               // nf4
  std::string preset = "tiny";
  auto* a = app.add_subcommand("attention", "forward + backward of one causal attention call");
  a->add_option("--impl", impl, "naive (lesson 03) or tiled (lesson 11)");
  a->add_option("--batch", B)->check(CLI::PositiveNumber);
  a->add_option("--heads", H)->check(CLI::PositiveNumber);
  a->add_option("--seq", T)->check(CLI::PositiveNumber);
  a->add_option("--head-dim", D)->check(CLI::PositiveNumber);
  auto* t = app.add_subcommand("training", "a few training steps against lesson 12's estimate");
  t->add_option("--preset", preset, "tiny, small or medium");
  t->add_option("--batch", train_B)->check(CLI::PositiveNumber);
  t->add_option("--seq", train_T)->check(CLI::PositiveNumber);
  t->add_option("--lora", lora_r, "LoRA rank on every projection (0: full training)");
  t->add_option("--steps", steps)->check(CLI::PositiveNumber);
  auto* n = app.add_subcommand("nf4", "bytes per parameter of an NF4 weight");
  n->add_option("--out", out)->check(CLI::PositiveNumber);
  n->add_option("--in", in)->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(static_cast<int>(threads));
  if (a->parsed()) return attention(impl, B, H, T, D);
  if (t->parsed()) return training(preset, train_B, train_T, lora_r, steps);
  return nf4(out, in);
}
