// The sampling options llm generate and llm chat share: the command-line flags and what they set
// in lesson 05's GenerationConfig.
#pragma once

#include <llm/generate/generate.h>

#include <CLI/CLI.hpp>

#include <cstdint>

namespace llm::cli {

struct SamplingOptions {
  double temperature = 0.8, top_p = 1.0, repetition_penalty = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 1234;

  void apply(GenerationConfig& gen) const {
    gen.sampling.temperature = temperature;
    gen.sampling.top_k = top_k;
    gen.sampling.top_p = top_p;
    gen.sampling.repetition_penalty = repetition_penalty;
  }
};

inline void add_sampling_options(CLI::App& app, SamplingOptions& o) {
  app.add_option("--temperature", o.temperature, "0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  app.add_option("--top-k", o.top_k, "keep the k most likely tokens; 0 = off")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", o.top_p, "nucleus sampling mass; 1 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--repetition-penalty", o.repetition_penalty, "1 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 100.0));
  app.add_option("--seed", o.seed, "random seed of the sampler")->capture_default_str();
}

}  // namespace llm::cli
