// Compare lesson 05's sampling rules on one prompt: the same model, the same seed, one rule changed
// at a time, so what each rule does to the text is visible side by side.
//
//   example_compare_sampling my-model "It is a truth universally acknowledged" [new_tokens]
//
// greedy         always the most likely token: deterministic, and prone to loops
// temperature    logits / T before sampling: T < 1 sharpens the distribution, T > 1 flattens it
// top-k, top-p   sample only from the k most likely tokens / the smallest set holding mass p
// repetition     tokens already in the text get their logits pushed down (CTRL's penalty)
// (Lesson 05 has no min-p.) Any model folder works: one from example_train_tiny, llm pretrain, or
// a downloaded Llama 3, Qwen or SmolLM2 (programs/lib's hf_folder.h reads it).
#include <llm/cli/hf_folder.h>
#include <llm/generate/generate.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <filesystem>
#include <set>

int usage(const std::string& problem) {
  fmt::print(stderr, "example_compare_sampling: {}\nusage: example_compare_sampling MODEL_DIR PROMPT [NEW_TOKENS]\n",
             problem);
  return 2;
}

int main(int argc, char** argv) try {
  if (argc < 3 || argc > 4) return usage("expected 2 or 3 arguments, got " + std::to_string(argc - 1));
  const std::string model_dir = argv[1], prompt_text = argv[2];
  char* end = nullptr;
  int64_t new_tokens = argc == 4 ? std::strtoll(argv[3], &end, 10) : 40;
  if (argc == 4 && (*end != '\0' || new_tokens < 1))
    return usage("NEW_TOKENS '" + std::string(argv[3]) + "' is not a whole number >= 1");
  if (!std::filesystem::is_directory(model_dir)) return usage("no model folder '" + model_dir + "'");

  // The model, its tokenizer and its end-of-text ids, in the dtype the folder stores.
  llm::cli::HfModel m = llm::cli::load_hf_folder(model_dir, {"auto"});
  std::vector<int64_t> prompt(m.tokenizer.options().prefix_ids.begin(), m.tokenizer.options().prefix_ids.end());
  for (llm::TokenId id : m.tokenizer.encode(prompt_text, /*allow_special=*/false)) prompt.push_back(id);
  if (prompt.empty()) return usage("the prompt is empty");
  const int64_t room = m.config.max_position_embeddings - static_cast<int64_t>(prompt.size());
  if (room < 1)
    return usage("the prompt has " + std::to_string(prompt.size()) + " tokens, the model's context is " +
                 std::to_string(m.config.max_position_embeddings));
  new_tokens = std::min(new_tokens, room);

  // One row per rule: {temperature (0 = greedy), top_k (0 = off), top_p (1 = off), repetition_penalty (1 = off)}.
  const std::pair<const char*, llm::SamplingOptions> rules[] = {
      {"greedy", {0.0, 0, 1.0, 1.0}},
      {"temperature 0.5", {0.5, 0, 1.0, 1.0}},
      {"temperature 1.0", {1.0, 0, 1.0, 1.0}},
      {"temperature 1.5", {1.5, 0, 1.0, 1.0}},
      {"top-k 10", {1.0, 10, 1.0, 1.0}},
      {"top-p 0.9", {1.0, 0, 0.9, 1.0}},
      {"top-k 40, top-p 0.95, temperature 0.8", {0.8, 40, 0.95, 1.0}},
      {"greedy, repetition penalty 1.3", {0.0, 0, 1.0, 1.3}},
  };
  const uint64_t seed = 42;
  fmt::print("{} new tokens after \"{}\", every row from seed {}\n\n", new_tokens, prompt_text, seed);
  for (const auto& [name, sampling] : rules) {
    llm::GenerationConfig gen;
    gen.max_new_tokens = new_tokens;
    gen.sampling = sampling;
    gen.stop_tokens = m.eos_ids();  // the model says where a text ends
    const auto out = llm::generate(m.model, {prompt}, gen, at::make_generator<at::CPUGeneratorImpl>(seed))[0];
    // Fewer distinct tokens than tokens: the text repeats itself (greedy's loops show up here).
    const std::set<int64_t> distinct(out.begin(), out.end());
    const std::string text = m.tokenizer.decode(std::vector<llm::TokenId>(out.begin(), out.end()), true);
    fmt::print("== {} ({} tokens, {} distinct)\n{}{}\n\n", name, out.size(), distinct.size(), prompt_text, text);
  }
  return 0;
} catch (const c10::Error& e) {  // a LibTorch check (TORCH_CHECK): its message without the C++ backtrace
  fmt::print(stderr, "example_compare_sampling: error: {}\n", e.what_without_backtrace());
  return 1;
} catch (const std::exception& e) {
  fmt::print(stderr, "example_compare_sampling: error: {}\n", e.what());
  return 1;
}
