// Shared by lesson 05's suites: a tiny model configuration and a seeded fixture.
#pragma once

#include <llm/common/testing.h>
#include <llm/config/model_config.h>

#include <ATen/CPUGeneratorImpl.h>

namespace lesson05 {

// Small enough to run in milliseconds, large enough to have GQA (4 query heads, 2 kv heads),
// several layers and a vocabulary where ln(V) is far from 0.
inline llm::ModelConfig TinyConfig() {
  llm::ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.multiple_of = 8;
  return c;
}

// A CPU generator with a fixed seed: sampling tests are reproducible, never flaky.
inline at::Generator SeededGenerator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

class LmTest : public llm::testing::SeededTest {};

}  // namespace lesson05
