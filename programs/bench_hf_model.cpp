// llm-bench-hf-model: a downloaded model folder through the code of lessons 01-05, measured.
//
//   load      load_hf_folder in the files' dtype (bf16 for today's models): seconds, the process's
//             resident memory before and after (VmRSS) and at its peak (VmHWM), against the bytes
//             of the safetensors files
//   prefill   one forward pass over a prompt of --prompt-tokens random ids, filling the KV cache
//   decode    --new-tokens greedy tokens, one at a time, with the KV cache
//
//   llm-bench-hf-model --model DIR --threads 2
//   llm-bench-hf-model --model DIR --profile /tmp/decode.json     also a LibTorch profile of 4 decode
//                                                                 steps (benchmarks/profile_summary.py)
//
// Prints one JSON object (benchmarks/hf_model.sh runs it beside the PyTorch-eager peer).
#include <llm/cli/command.h>
#include <llm/cli/hf_folder.h>
#include <llm/cli/run.h>
#include <llm/model/kv_cache.h>

#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <string>

namespace {

// A line of /proc/self/status such as "VmRSS:  123456 kB", in bytes.
int64_t status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1)) * 1024;
  }
  return -1;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Load a Hugging Face model folder and measure prefill and decode speed with the KV cache."};
  std::string model_dir, dtype = "auto", profile_path;
  int64_t threads = 2, prompt_tokens = 512, new_tokens = 64;
  app.add_option("--model", model_dir, "a model folder")->required()->check(CLI::ExistingDirectory);
  app.add_option("--dtype", dtype, "auto (as stored), float32 or bfloat16")->capture_default_str();
  app.add_option("--threads", threads, "compute threads")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--prompt-tokens", prompt_tokens, "prefill length")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--new-tokens", new_tokens, "decode steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--profile", profile_path, "write a LibTorch profile of 4 decode steps (Chrome trace JSON)");
  CLI11_PARSE(app, argc, argv);
  return llm::cli::run_command("llm-bench-hf-model", [&] {
    llm::cli::configure_threads(threads);
    torch::NoGradGuard no_grad;
    const int64_t rss_before = status_bytes("VmRSS");
    auto start = std::chrono::steady_clock::now();
    auto m = llm::cli::load_hf_folder(model_dir, {dtype});
    const double load_s = seconds_since(start);
    const int64_t rss_loaded = status_bytes("VmRSS"), hwm_loaded = status_bytes("VmHWM");

    const int64_t T = prompt_tokens, V = m.tokenizer.vocab_size();
    auto prompt = torch::randint(0, V, {1, T}, torch::kLong);
    const auto cache_dtype = m.model->parameters().front().scalar_type();
    llm::KVCache cache(m.config, 1, T + new_tokens + (profile_path.empty() ? 0 : 4), cache_dtype);
    m.model->forward(prompt.narrow(1, 0, std::min<int64_t>(8, T)), 0, {}, &cache);  // warm-up: first-call allocations
    cache.reset();
    start = std::chrono::steady_clock::now();
    auto logits = m.model->forward(prompt, 0, {}, &cache, {}, /*logits_to_keep=*/1);  // (1, 1, V), as generate()
    const double prefill_s = seconds_since(start);
    start = std::chrono::steady_clock::now();
    auto next = logits.select(1, 0).argmax(-1, /*keepdim=*/true);  // (1, 1)
    for (int64_t step = 0; step < new_tokens; ++step) {
      logits = m.model->forward(next, T + step, {}, &cache);
      next = logits.select(1, 0).argmax(-1, /*keepdim=*/true);
    }
    const double decode_s = seconds_since(start);
    if (!profile_path.empty()) {  // after the timed steps, so the profiler costs them nothing
      torch::autograd::profiler::RecordProfile profile(profile_path);
      for (int64_t step = 0; step < 4; ++step) {
        logits = m.model->forward(next, T + new_tokens + step, {}, &cache);
        next = logits.select(1, 0).argmax(-1, /*keepdim=*/true);
      }
    }

    nlohmann::json r = {{"program", "ours (LibTorch, lessons 01-05)"},
                        {"model", model_dir},
                        {"architecture", m.architecture},
                        {"parameters", m.config.num_parameters()},
                        {"dtype", std::string(c10::toString(cache_dtype))},
                        {"threads", threads},
                        {"weight_bytes", m.weight_bytes},
                        {"load_seconds", load_s},
                        {"rss_before_load_bytes", rss_before},
                        {"rss_after_load_bytes", rss_loaded},
                        {"peak_rss_after_load_bytes", hwm_loaded},
                        {"peak_rss_bytes", status_bytes("VmHWM")},
                        {"prefill_tokens", T},
                        {"prefill_tokens_per_second", T / prefill_s},
                        {"decode_tokens", new_tokens},
                        {"decode_tokens_per_second", new_tokens / decode_s}};
    fmt::print("{}\n", r.dump());
    return 0;
  });
}
