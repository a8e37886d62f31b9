// Lesson 01 - the simplest tokenizer that can represent any text: one token per byte.
//
//     ids 0..255          the byte with that value (UTF-8 text: 'A' = 65, 'é' = 195, 169)
//     ids 256..256+S-1    the special tokens, in the order given (e.g. "<|endoftext|>")
//
// No unknown token can exist, and decode(encode(x)) == x for every byte string. The price is
// length: English takes one token per character, which BPE (bpe_tokenizer.h) cuts by about 4x.
#pragma once

#include <llm/common/todo.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace llm {

using TokenId = int32_t;

class ByteTokenizer {
 public:
  static constexpr TokenId kNumBytes = 256;

  explicit ByteTokenizer(std::vector<std::string> special_tokens = {}) : specials_(std::move(special_tokens)) {
    for (const auto& s : specials_) {
      if (s.empty()) throw std::invalid_argument("ByteTokenizer: a special token cannot be empty");
    }
  }

  int64_t vocab_size() const { return kNumBytes + static_cast<int64_t>(specials_.size()); }
  const std::vector<std::string>& special_tokens() const { return specials_; }

  // text -> ids. With allow_special, an occurrence of a special token's text becomes its single id
  // (the longest special wins where two start at the same byte); without, it is encoded byte by byte.
  std::vector<TokenId> encode(std::string_view text, bool allow_special = true) const {
    // 1. Walk through text byte by byte.
    // 2. If allow_special and a special token's text starts here, emit 256 + its index and jump past it
    //    (prefer the longest one when several match).
    // 3. Otherwise emit the byte's value as an id: cast through unsigned char, because char may be
    //    signed and 'é' would become a negative id.
    LLM_TODO("lesson01: ByteTokenizer::encode(): one id per byte (via unsigned char), special tokens whole");
  }

  // ids -> bytes. An id outside [0, vocab_size) throws std::out_of_range naming it and the range.
  std::string decode(const std::vector<TokenId>& ids) const {
    // 1. An id below 256 is that byte; 256 + s is the text of special token s.
    // 2. Anything else: throw std::out_of_range("token id <id> is outside the vocabulary 0..<V-1>").
    LLM_TODO("lesson01: ByteTokenizer::decode(): bytes for ids < 256, the special's text above, range-check the rest");
  }

 private:
  std::vector<std::string> specials_;
};

}  // namespace llm
