// libFuzzer target: lesson 01's readers of tokenizer files - GPT-2's vocab.json + merges.txt and a
// tiktoken rank file. The input is split at the first 0x00 into vocab.json and merges.txt; the
// whole input is also read as a tiktoken file. Every input must load or fail with an exception
// derived from std::exception (a clear error), never crash or hang.
#include <llm/tokenizer/bpe_files.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

namespace {

std::string path(const std::string& name) {
  static const std::string d = [] {
    auto p = std::filesystem::temp_directory_path() / ("llm-fuzz-tokenizer-" + std::to_string(getpid()));
    std::filesystem::create_directories(p);
    return p.string();
  }();
  return d + "/" + name;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find('\0');
  std::ofstream(path("vocab.json"), std::ios::binary | std::ios::trunc) << input.substr(0, cut);
  std::ofstream(path("merges.txt"), std::ios::binary | std::ios::trunc)
      << (cut == std::string::npos ? std::string() : input.substr(cut + 1));
  std::ofstream(path("rank.tiktoken"), std::ios::binary | std::ios::trunc) << input;
  try {
    auto tok = llm::load_gpt2_files(path("vocab.json"), path("merges.txt"));
    const std::string text = "Hello world, \xC3\xBC";
    if (tok.decode(tok.encode(text)) != text) __builtin_trap();  // a loaded tokenizer must round-trip
  } catch (const std::exception&) {
  }
  try {
    auto tok = llm::load_tiktoken_file(path("rank.tiktoken"), {});
    const std::string text = "abc";
    if (tok.decode(tok.encode(text)) != text) __builtin_trap();
  } catch (const std::exception&) {
  }
  return 0;
}
