// libFuzzer target: lesson 01's reader of Hugging Face's tokenizer.json (tokenizer_json.h). Every
// input must give a tokenizer or fail with an exception derived from std::exception (a message
// naming what is wrong), never crash or hang; a tokenizer that loads must round-trip text (unless
// an added token strips the whitespace beside it, which is lossy by design).
#include <llm/tokenizer/tokenizer_json.h>

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = llm::parse_tokenizer_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    const std::string text = "Hello world, 12345 \xC3\xBC <|im_end|>";
    const auto ids = tok.encode(text, /*allow_special=*/false);
    const bool nfc = tok.options().normalizer == llm::Normalizer::kNfc;
    bool strips = false;
    for (const auto& t : tok.added_tokens()) strips = strips || t.lstrip || t.rstrip;
    if (!strips && tok.decode(ids) != (nfc ? llm::nfc(text) : text)) __builtin_trap();
  } catch (const std::exception&) {
  }
  return 0;
}
