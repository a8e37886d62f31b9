// Lesson 01 - pre-tokenizers: cut text into pieces that BPE never merges across.
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
// Today's models keep the idea and change the regex. Hugging Face's tokenizer.json stores it as a
// "Split" step (huggingface/tokenizers, pre_tokenizers/split.rs); Llama 3 and Qwen use
//
//     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// (Qwen: \p{N} instead of \p{N}{1,3}): contractions in any case ("DON'T" -> "DON", "'T"), a word
// may carry one leading symbol ("(hello", "$x"), numbers in groups of three digits (Llama 3) or one
// by one (Qwen) and never with a leading space, newlines grouped with the whitespace before them.
// SmolLM2 instead puts a "Digits" step (every digit alone) before GPT-2's regex. So a pre-tokenizer
// here is a sequence of regex steps, each one cutting every piece the step before it left.
//
// A Split step finds the regex's matches and then decides, by its "behavior", what to do with a
// match and the unmatched text around it (SplitDelimiterBehavior in tokenizers' normalizer.rs;
// the example is theirs, "the-final--countdown" split at "-"):
//
//     Isolated            every match and every stretch between matches is a piece
//                         the, -, final, -, -, countdown                (every regex above)
//     Removed             only the stretches between matches            the, final, countdown
//     MergedWithPrevious  a match joins the piece before it             the-, final-, -, countdown
//     MergedWithNext      a match joins the piece after it              the, -final, -, -countdown
//     Contiguous          adjacent matches form one piece               the, -, final, --, countdown
//
// With "invert", the regex's matches are treated as the stretches between and vice versa.
//
// \p{L}, \p{N} and the lookahead (?!\S) are why std::regex and RE2 cannot run these: PCRE2 can, with
// UTF + UCP, and its JIT makes it fast. One more detail for exactness: in tiktoken and in
// tokenizers (Oniguruma) \s is Unicode's White_Space property, while PCRE2 10.42's \s also matches
// U+180E (MONGOLIAN VOWEL SEPARATOR, a space in old Unicode versions, no longer White_Space).
// pcre2_pattern() writes \s out as [\t\n\x0B\f\r\x{85}\p{Z}], which is exactly White_Space, so the
// engines agree on every character.
//
// Bytes that are not valid UTF-8 match no alternative; they end up in the unmatched stretches, so
// with Isolated nothing is lost and decode(encode(x)) == x holds for any byte string.
#pragma once

#include <llm/common/todo.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace llm {

// A regex from tokenizer.json (written for Oniguruma, which Hugging Face's tokenizers uses) as
// PCRE2 runs it the same way: \s and \S become Unicode White_Space written out (see above); every
// other construct these patterns use ((?i:...), \p{L}, \p{N}, (?!...), {1,3}) means the same in
// both. A \S inside a character class has no such rewrite and is refused.
inline std::string pcre2_pattern(std::string_view oniguruma) {
  static const std::string kSpace = R"(\t\n\x0B\f\r\x{85}\p{Z})";
  std::string out;
  int depth = 0;  // inside how many [...] classes
  for (size_t i = 0; i < oniguruma.size(); ++i) {
    const char c = oniguruma[i];
    if (c == '\\' && i + 1 < oniguruma.size()) {
      const char e = oniguruma[++i];
      if (e == 's') {
        out += depth > 0 ? kSpace : "[" + kSpace + "]";
      } else if (e == 'S') {
        if (depth > 0)
          throw std::invalid_argument("pre-tokenizer regex: \\S inside a character class is not supported");
        out += "[^" + kSpace + "]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[') {
      ++depth;
    } else if (c == ']' && depth > 0) {
      --depth;
    }
    out += c;
  }
  return out;
}

// One piece of a text cut by a regex: a match, or a stretch between matches.
struct TextPiece {
  std::string_view text;
  bool matched;
};

class RegexPreTokenizer {
 public:
  // GPT-2's regex, \s written out (see above).
  static constexpr const char* kPattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\t\n\x0B\f\r\x{85}\p{Z}\p{L}\p{N}]+)"
      R"(|[\t\n\x0B\f\r\x{85}\p{Z}]+(?![^\t\n\x0B\f\r\x{85}\p{Z}])|[\t\n\x0B\f\r\x{85}\p{Z}]+)";

  // `pattern` in PCRE2's syntax (pcre2_pattern() converts one from tokenizer.json).
  explicit RegexPreTokenizer(const std::string& pattern = kPattern) : pattern_(pattern) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      throw std::invalid_argument("PCRE2 cannot compile the pre-tokenizer regex '" + pattern + "' at offset " +
                                  std::to_string(offset) + ": " + reinterpret_cast<const char*>(message));
    }
    code_.reset(code, pcre2_code_free);
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // falls back to the interpreter
  }

  // Every match of the pattern and every stretch between matches, in order; concatenated they give
  // `text` back exactly. The views point into `text`.
  std::vector<TextPiece> find_matches(std::string_view text) const {
    // 1. Make a match-data block for the pattern (pcre2_match_data_create_from_pattern; free it at
    //    the end, e.g. with a unique_ptr whose deleter is pcre2_match_data_free).
    // 2. From offset 0, repeatedly search (pcre2_jit_match if jit_, else pcre2_match) from the end of
    //    the previous match. A return value < 0 means no further match (PCRE2_ERROR_NOMATCH).
    //    The match is [ovector[0], ovector[1]) from pcre2_get_ovector_pointer().
    // 3. If the match starts after the previous end, the bytes in between matched nothing (with
    //    GPT-2's regex: invalid UTF-8). Emit them as one piece {text, false}, then the match {.., true}.
    // 4. An empty match (ovector[0] == ovector[1]; no real tokenizer's regex has one, but a regex
    //    such as "x*" does) is no piece: search again one byte further on, or you loop forever.
    // 5. After the last match, emit any trailing unmatched bytes the same way.
    // BEGIN SOLUTION: RegexPreTokenizer::find_matches(): the pattern's matches left to right, and the gaps between them
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::vector<TextPiece> pieces;
    size_t end = 0, from = 0;  // end of the last piece; where to search next
    while (from < text.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), from, 0, match.get(), nullptr)
                          : pcre2_match(code_.get(), subject, text.size(), from, 0, match.get(), nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
      if (ovector[0] == ovector[1]) {  // an empty match cuts nothing
        from = ovector[1] + 1;
        continue;
      }
      if (ovector[0] > end) pieces.push_back({text.substr(end, ovector[0] - end), false});
      pieces.push_back({text.substr(ovector[0], ovector[1] - ovector[0]), true});
      end = from = ovector[1];
    }
    if (end < text.size()) pieces.push_back({text.substr(end), false});
    return pieces;
    // END SOLUTION
  }

  // The pieces of `text` with the Isolated behaviour: every match and every gap.
  std::vector<std::string_view> split(std::string_view text) const {
    std::vector<std::string_view> out;
    for (const auto& piece : find_matches(text)) out.push_back(piece.text);
    return out;
  }

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::shared_ptr<pcre2_code> code_;  // shared by copies: matching only reads it
  bool jit_ = false;
};

// The pre-tokenizer GPT-2 and the BPE trainer use: GPT-2's regex, Isolated.
using Gpt2PreTokenizer = RegexPreTokenizer;

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Joins two views that are adjacent in the same text into one.
inline std::string_view join_adjacent(std::string_view a, std::string_view b) {
  return std::string_view(a.data(), a.size() + b.size());
}

// The pieces a Split step keeps from `pieces` (find_matches() of one text, in order), following
// `behavior` (the table at the top of this file). With `invert`, a piece's `matched` is flipped
// first. Adjacent pieces are joined with join_adjacent().
inline std::vector<std::string_view> apply_split_behavior(const std::vector<TextPiece>& pieces, SplitBehavior behavior,
                                                          bool invert = false) {
  // For each piece in order, with matched = piece.matched != invert:
  //   Isolated:           keep every piece.
  //   Removed:            keep the unmatched pieces only.
  //   MergedWithPrevious: a match that follows an unmatched piece is joined onto the last kept
  //                       piece (there is none at the start: then it is a piece of its own);
  //                       every other piece is kept as it is.
  //   MergedWithNext:     the mirror image: a match that precedes an unmatched piece is joined onto
  //                       the next piece (walk from the end, or remember a pending match).
  //   Contiguous:         a piece whose `matched` equals the previous piece's is joined onto it.
  // Hugging Face's rule for MergedWith*: only a match *next to* an unmatched piece merges, so in
  // "final--countdown" the first "-" merges with "final" and the second stays alone.
  // BEGIN SOLUTION: apply_split_behavior(): keep, drop or join each match as the behaviour says
  std::vector<std::string_view> out;
  auto matched = [&](size_t i) { return pieces[i].matched != invert; };
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& p : pieces) out.push_back(p.text);
      break;
    case SplitBehavior::kRemoved:
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (!matched(i)) out.push_back(pieces[i].text);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (matched(i) && i > 0 && !matched(i - 1)) {
          out.back() = join_adjacent(out.back(), pieces[i].text);
        } else {
          out.push_back(pieces[i].text);
        }
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = pieces.size(); k-- > 0;) {
        if (matched(k) && k + 1 < pieces.size() && !matched(k + 1)) {
          out.back() = join_adjacent(pieces[k].text, out.back());
        } else {
          out.push_back(pieces[k].text);
        }
      }
      std::reverse(out.begin(), out.end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (i > 0 && matched(i) == matched(i - 1)) {
          out.back() = join_adjacent(out.back(), pieces[i].text);
        } else {
          out.push_back(pieces[i].text);
        }
      }
      break;
  }
  return out;
  // END SOLUTION
}

// A sequence of Split steps (tokenizer.json's "pre_tokenizer"): each step cuts every piece the
// previous steps left. The default is GPT-2's: one step, its regex, Isolated.
class PreTokenizer {
 public:
  struct Step {
    RegexPreTokenizer regex;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };

  PreTokenizer() { steps_.push_back({RegexPreTokenizer(), SplitBehavior::kIsolated, false}); }
  explicit PreTokenizer(std::vector<Step> steps) : steps_(std::move(steps)) {}

  std::vector<std::string_view> split(std::string_view text) const {
    std::vector<std::string_view> pieces{text}, next;
    for (const auto& step : steps_) {
      next.clear();
      for (std::string_view piece : pieces) {
        for (std::string_view cut : apply_split_behavior(step.regex.find_matches(piece), step.behavior, step.invert))
          next.push_back(cut);
      }
      pieces.swap(next);
    }
    return pieces;
  }

  const std::vector<Step>& steps() const { return steps_; }

 private:
  std::vector<Step> steps_;
};

}  // namespace llm
