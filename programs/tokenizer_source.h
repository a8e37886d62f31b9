// Shared by the programs: the three ways to name a tokenizer on the command line.
//
//   --tokenizer DIR    a folder with Hugging Face's tokenizer.json (a model folder), or one saved by
//                      `llm tokenizer train` (vocab.json + merges.txt)
//   --gpt2 DIR         GPT-2's published encoder.json + vocab.bpe (scripts/setup.sh puts them in .cache/gpt2)
//   --tiktoken FILE    a tiktoken rank file such as r50k_base.tiktoken, with GPT-2's <|endoftext|> = 50256
#pragma once

#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/tokenizer_json.h>

#include <CLI/CLI.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace llm::programs {

struct TokenizerSource {
  std::string dir, gpt2_dir, tiktoken_file;

  void add_options(CLI::App& app) {
    auto* a =
        app.add_option("--tokenizer", dir,
                       "a folder with tokenizer.json (Hugging Face) or vocab.json + merges.txt (llm tokenizer train)")
            ->check(CLI::ExistingDirectory);
    auto* b = app.add_option("--gpt2", gpt2_dir, "a directory with GPT-2's encoder.json and vocab.bpe")
                  ->check(CLI::ExistingDirectory);
    auto* c = app.add_option("--tiktoken", tiktoken_file, "a tiktoken rank file (r50k_base.tiktoken = GPT-2)")
                  ->check(CLI::ExistingFile);
    a->excludes(b)->excludes(c);
    b->excludes(c);
  }

  BpeTokenizer load() const {
    if (!dir.empty()) return load_tokenizer_folder(dir);
    if (!gpt2_dir.empty()) return load_gpt2_files(gpt2_dir + "/encoder.json", gpt2_dir + "/vocab.bpe");
    if (!tiktoken_file.empty()) return load_tiktoken_file(tiktoken_file, {{"<|endoftext|>", 50256}});
    throw std::invalid_argument("name a tokenizer: --tokenizer DIR, --gpt2 DIR or --tiktoken FILE");
  }
};

}  // namespace llm::programs
