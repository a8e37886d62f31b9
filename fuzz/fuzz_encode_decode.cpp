// libFuzzer target: lesson 01's byte-level BPE. For any bytes x, decode(encode(x)) == x, with and
// without special tokens, for a tokenizer trained on the built-in corpus; and lesson 06's token
// shard reader refuses any malformed header cleanly.
#include <llm/common/paths.h>
#include <llm/data/token_shard.h>
#include <llm/tokenizer/bpe_trainer.h>
#include <llm/tokenizer/byte_tokenizer.h>

#include <cstdint>
#include <fstream>

namespace {

const llm::BpeTokenizer& tokenizer() {
  static const llm::BpeTokenizer tok = [] {
    std::ifstream in(std::string(llm::kSourceDir) + "/data/austen/train.txt");
    std::string text(200000, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    llm::BpeTrainingOptions options;
    options.vocab_size = 600;
    options.special_tokens = {"<|endoftext|>", "<|user|>", "<|end|>"};
    return llm::train_bpe(text, options);
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto& tok = tokenizer();
  for (bool specials : {true, false}) {
    const auto ids = tok.encode(text, specials);
    if (tok.decode(ids) != text) __builtin_trap();
  }
  llm::ByteTokenizer bytes({"<|endoftext|>"});
  if (bytes.decode(bytes.encode(text)) != text) __builtin_trap();
  try {
    llm::parse_shard_header(data, size, "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
