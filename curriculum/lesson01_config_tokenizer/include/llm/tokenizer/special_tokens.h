// Lesson 01 - cutting text at special tokens such as "<|endoftext|>", in linear time.
//
// Encoding and training both cut the text at every special token: the earliest occurrence next,
// and the longest special where two start at the same byte ("<|a|>" vs "<|a|>!"). Searching every
// special again after every cut is quadratic on a corpus separated by thousands of "<|endoftext|>"
// (and a special that never occurs would be searched to the end of the text each time), so this
// remembers where each special next occurs and only searches again once the cut has passed it.
//
// Hugging Face's tokenizers call such tokens "added tokens" (tokenizer.json's "added_tokens";
// huggingface/tokenizers, tokenizer/added_vocabulary.rs) and give each a few flags, which
// split_at_added_tokens below honours:
//   special      a control token (<|eot_id|>, <|im_end|>). decode can skip them, and a caller can
//                ask that special tokens be read as plain text (transformers' split_special_tokens);
//                non-special added tokens (Qwen's <think>) are always cut out.
//   single_word  only matches with no word character right before or after it
//   lstrip       also swallows the whitespace to its left; rstrip: to its right
//   normalized   matched in the normalized text (after NFC) rather than the raw one
// Given code: the lesson is BPE, not string search.
#pragma once

#include <llm/tokenizer/byte_tokenizer.h>
#include <llm/tokenizer/normalizer.h>

#include <string>
#include <string_view>
#include <vector>

namespace llm {

struct AddedToken {
  std::string content;  // the bytes matched whole
  TokenId id = -1;
  bool special = true;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// Walks `text` left to right: on_text(chunk) for each non-empty stretch of ordinary text,
// on_special(i) for each occurrence of specials[i], in the order they appear.
template <typename OnText, typename OnSpecial>
void split_at_special_tokens(std::string_view text, const std::vector<std::string>& specials, OnText&& on_text,
                             OnSpecial&& on_special) {
  constexpr size_t kNone = std::string_view::npos;
  std::vector<size_t> next(specials.size(), 0);  // where specials[i] next occurs, at or after `start`
  std::vector<bool> searched(specials.size(), false);
  size_t start = 0;
  while (true) {
    size_t best_pos = kNone, best = 0;
    for (size_t i = 0; i < specials.size(); ++i) {
      if (specials[i].empty()) continue;
      if (!searched[i] || (next[i] != kNone && next[i] < start)) {
        next[i] = text.find(specials[i], start);
        searched[i] = true;
      }
      if (next[i] < best_pos ||
          (next[i] == best_pos && next[i] != kNone && specials[i].size() > specials[best].size())) {
        best_pos = next[i], best = i;
      }
    }
    if (best_pos == kNone) break;
    if (best_pos > start) on_text(text.substr(start, best_pos - start));
    on_special(best);
    start = best_pos + specials[best].size();
  }
  if (start < text.size()) on_text(text.substr(start));
}

// Where the code point that ends just before byte `at` starts, and the code point itself (-1 when
// there is none there or the bytes are not valid UTF-8).
struct CodepointBefore {
  size_t start;
  int64_t codepoint;
};
inline CodepointBefore codepoint_before(std::string_view text, size_t at) {
  for (size_t i = at; i > 0 && at - i < 4;) {
    --i;
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      const size_t n = utf8_sequence_length(text, i);
      return {i, n == at - i ? static_cast<int64_t>(utf8_codepoint(text, i, n)) : -1};
    }
  }
  return {at, -1};
}
// The code point starting at byte `at`, or -1 (none, or invalid UTF-8).
inline int64_t codepoint_at(std::string_view text, size_t at) {
  if (at >= text.size()) return -1;
  const size_t n = utf8_sequence_length(text, at);
  return n == 0 ? -1 : static_cast<int64_t>(utf8_codepoint(text, at, n));
}

// Cuts `text` at the added tokens in `tokens` as Hugging Face's AddedVocabulary::find_matches does:
// leftmost-longest matches, left to right, never overlapping; a single_word token next to a word
// character is not a match (its text stays ordinary text); lstrip / rstrip extend a match over the
// whitespace beside it (never back into the previous match). Calls on_text(chunk) for each
// non-empty stretch of ordinary text and on_token(token) for each match, in order.
template <typename OnText, typename OnToken>
void split_at_added_tokens(std::string_view text, const std::vector<AddedToken>& tokens, OnText&& on_text,
                           OnToken&& on_token) {
  constexpr size_t kNone = std::string_view::npos;
  std::vector<size_t> next(tokens.size(), 0);  // where tokens[i] next occurs, at or after `from`
  std::vector<bool> searched(tokens.size(), false);
  size_t from = 0, pending = 0;  // where to search next; where the ordinary text not yet handed out starts
  while (true) {
    size_t best_pos = kNone, best = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& content = tokens[i].content;
      if (content.empty()) continue;
      if (!searched[i] || (next[i] != kNone && next[i] < from)) {
        next[i] = text.find(content, from);
        searched[i] = true;
      }
      if (next[i] < best_pos ||
          (next[i] == best_pos && next[i] != kNone && content.size() > tokens[best].content.size())) {
        best_pos = next[i], best = i;
      }
    }
    if (best_pos == kNone) break;
    const AddedToken& token = tokens[best];
    size_t start = best_pos, stop = best_pos + token.content.size();
    from = stop;
    if (token.single_word) {
      const int64_t before = codepoint_before(text, start).codepoint, after = codepoint_at(text, stop);
      if ((before >= 0 && is_word_char(static_cast<uint32_t>(before))) ||
          (after >= 0 && is_word_char(static_cast<uint32_t>(after)))) {
        continue;  // inside a word: ordinary text
      }
    }
    if (token.lstrip) {
      for (auto b = codepoint_before(text, start);
           b.start >= pending && b.codepoint >= 0 && is_unicode_space(static_cast<uint32_t>(b.codepoint));
           b = codepoint_before(text, start)) {
        start = b.start;
      }
    }
    if (token.rstrip) {
      for (int64_t cp; (cp = codepoint_at(text, stop)) >= 0 && is_unicode_space(static_cast<uint32_t>(cp));)
        stop += utf8_sequence_length(text, stop);
      from = stop;
    }
    if (start > pending) on_text(text.substr(pending, start - pending));
    on_token(token);
    pending = stop;
  }
  if (pending < text.size()) on_text(text.substr(pending));
}

}  // namespace llm
