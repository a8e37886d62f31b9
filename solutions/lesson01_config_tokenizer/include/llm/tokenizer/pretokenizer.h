// Lesson 01 - GPT-2's pre-tokenizer: cut text into pieces that BPE never merges across.
//
// Before BPE, GPT-2 splits text with one regular expression (openai/gpt-2 encoder.py; tiktoken's
// r50k_base uses the same):
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
//   - common English contractions are pieces of their own ("don't" -> "don", "'t");
//   - a run of letters, or of digits, or of other symbols, with at most one leading space
//     (" world", " 2024", " ...");
//   - whitespace: a run of spaces keeps its last space for the next word (\s+(?!\S)), so
//     "a   b" -> "a", "  ", " b" and " b" is the same token as in "a b".
// So merges never glue a word to punctuation or digits to letters, and the vocabulary is not
// wasted on "dog." "dog!" "dog?".
//
// \p{L}, \p{N} and the lookahead (?!\S) are why std::regex and RE2 cannot run this: PCRE2 can, with
// UTF + UCP, and its JIT makes it fast. One more detail for exactness: tiktoken's \s is Unicode's
// White_Space property, while PCRE2 10.42's \s also matches U+180E (MONGOLIAN VOWEL SEPARATOR, a
// space in old Unicode versions, no longer White_Space). Writing the class out as
// [\t\n\x0B\f\r\x{85}\p{Z}], which is exactly White_Space, makes the two agree on every character.
//
// Bytes that are not valid UTF-8 match no alternative; split() returns each such run as a piece of
// its own, so decode(encode(x)) == x holds for any byte string.
#pragma once

#include <llm/common/todo.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace llm {

class Gpt2PreTokenizer {
 public:
  // Unicode White_Space, written out (see above).
  static constexpr const char* kPattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\t\n\x0B\f\r\x{85}\p{Z}\p{L}\p{N}]+)"
      R"(|[\t\n\x0B\f\r\x{85}\p{Z}]+(?![^\t\n\x0B\f\r\x{85}\p{Z}])|[\t\n\x0B\f\r\x{85}\p{Z}]+)";

  Gpt2PreTokenizer() {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr));
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      throw std::runtime_error("PCRE2 cannot compile the GPT-2 pattern at offset " + std::to_string(offset) + ": " +
                               reinterpret_cast<const char*>(message));
    }
    jit_ = pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE) == 0;  // falls back to the interpreter
  }

  // The pieces of `text`, in order; concatenated they give `text` back exactly. The views point
  // into `text`.
  std::vector<std::string_view> split(std::string_view text) const {
    // 1. Make a match-data block for the pattern (pcre2_match_data_create_from_pattern; free it at
    //    the end, e.g. with a unique_ptr whose deleter is pcre2_match_data_free).
    // 2. From offset 0, repeatedly search (pcre2_jit_match if jit_, else pcre2_match) from the end of
    //    the previous match. A return value < 0 means no further match (PCRE2_ERROR_NOMATCH).
    //    The match is [ovector[0], ovector[1]) from pcre2_get_ovector_pointer().
    // 3. If the match starts after the previous end, the bytes in between matched nothing: they are
    //    invalid UTF-8. Emit them as one piece, then the match.
    // 4. After the last match, emit any trailing unmatched bytes the same way.
    // BEGIN SOLUTION: Gpt2PreTokenizer::split(): find the pattern's matches left to right; unmatched gaps are pieces too
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::vector<std::string_view> pieces;
    size_t end = 0;
    while (end < text.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), end, 0, match.get(), nullptr)
                          : pcre2_match(code_.get(), subject, text.size(), end, 0, match.get(), nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
      if (ovector[0] > end) pieces.push_back(text.substr(end, ovector[0] - end));  // invalid UTF-8
      pieces.push_back(text.substr(ovector[0], ovector[1] - ovector[0]));
      end = ovector[1];
    }
    if (end < text.size()) pieces.push_back(text.substr(end));
    return pieces;
    // END SOLUTION
  }

 private:
  struct CodeFree {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  std::unique_ptr<pcre2_code, CodeFree> code_;
  bool jit_ = false;
};

}  // namespace llm
