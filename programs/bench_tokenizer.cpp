// llm-bench-tokenizer: the tokenizer's speed targets, measured.
//
//   training  byte-level BPE to a 4,096-token vocabulary on the built-in corpus, one core (target <= 10 s)
//   encoding  GPT-2's vocabulary on the built-in corpus, one core (target >= 2 MB/s); first pass with
//             an empty piece cache, then a second pass with a warm one
//
// Prints the median of --repeats runs of each.
#include "tokenizer_source.h"

#include <llm/common/paths.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/bpe_trainer.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace {

double median_seconds(int repeats, const std::function<void()>& fn) {
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure BPE training time and encoding throughput (one thread)."};
  std::string corpus_path = std::string(llm::kSourceDir) + "/data/austen/train.txt";
  std::string gpt2_dir = std::string(llm::kSourceDir) + "/.cache/gpt2";
  int64_t vocab_size = 4096;
  int repeats = 5;
  app.add_option("--corpus", corpus_path, "text to train on and encode")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  app.add_option("--gpt2", gpt2_dir, "directory with GPT-2's encoder.json and vocab.bpe")
      ->capture_default_str()
      ->check(CLI::ExistingDirectory);
  app.add_option("--vocab-size", vocab_size, "vocabulary to train")
      ->capture_default_str()
      ->check(CLI::Range(257, 1 << 20));
  app.add_option("--repeats", repeats, "runs per measurement (the median is reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  try {
    const std::string corpus = llm::read_file(corpus_path);
    const double mb = corpus.size() / 1e6;
    fmt::print("corpus: {} ({:.2f} MB), one thread, median of {} runs\n", corpus_path, mb, repeats);

    llm::BpeTrainingOptions options;
    options.vocab_size = vocab_size;
    int64_t trained_vocab = 0;
    const double train_s =
        median_seconds(repeats, [&] { trained_vocab = llm::train_bpe(corpus, options).vocab_size(); });
    fmt::print("train BPE to {:>5} tokens        {:8.3f} s      (target <= 10 s)\n", trained_vocab, train_s);

    // Cold: a freshly loaded tokenizer, so every distinct piece goes through BPE once. Warm: the
    // same tokenizer again, every piece found in its cache.
    std::vector<double> cold;
    size_t n_tokens = 0;
    for (int i = 0; i < repeats; ++i) {
      auto fresh = llm::load_gpt2_files(gpt2_dir + "/encoder.json", gpt2_dir + "/vocab.bpe");
      cold.push_back(median_seconds(1, [&] { n_tokens = fresh.encode(corpus).size(); }));
    }
    std::sort(cold.begin(), cold.end());
    auto gpt2 = llm::load_gpt2_files(gpt2_dir + "/encoder.json", gpt2_dir + "/vocab.bpe");
    gpt2.encode(corpus);
    const double warm_s = median_seconds(repeats, [&] { n_tokens = gpt2.encode(corpus).size(); });
    fmt::print("encode, GPT-2 vocab, cold cache  {:8.1f} MB/s   (target >= 2 MB/s)\n", mb / cold[cold.size() / 2]);
    fmt::print("encode, GPT-2 vocab, warm cache  {:8.1f} MB/s\n", mb / warm_s);
    fmt::print("GPT-2 tokens: {} ({:.3f} bytes/token)\n", n_tokens, corpus.size() / static_cast<double>(n_tokens));
  } catch (const std::exception& e) {
    fmt::print(stderr, "llm-bench-tokenizer: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
