// Lesson 01 - finding special tokens such as "<|endoftext|>" in text, in linear time.
//
// Encoding and training both cut the text at every special token: the earliest occurrence next,
// and the longest special where two start at the same byte ("<|end|>" vs "<|end|><|pad|>"-style
// prefixes). Searching every special again after every cut is quadratic on a corpus separated by
// thousands of "<|endoftext|>" (and a special that never occurs would be searched to the end of the
// text each time), so this finder remembers where each special next occurs and only searches again
// once the cut has passed that point. Given code: the lesson is BPE, not string search.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llm {

class SpecialTokenFinder {
 public:
  struct Match {
    size_t pos = std::string_view::npos;  // npos: no special token at or after `from`
    size_t index = 0;                     // which special
    size_t length = 0;
  };

  SpecialTokenFinder(std::string_view text, const std::vector<std::string>& specials)
      : text_(text), specials_(specials), next_(specials.size(), 0), searched_(specials.size(), false) {}

  // The next special token starting at or after `from`; `from` must not decrease between calls.
  Match next(size_t from) {
    Match best;
    for (size_t i = 0; i < specials_.size(); ++i) {
      if (specials_[i].empty()) continue;
      if (!searched_[i] || (next_[i] != std::string_view::npos && next_[i] < from)) {
        next_[i] = text_.find(specials_[i], from);
        searched_[i] = true;
      }
      const size_t pos = next_[i];
      if (pos < best.pos || (pos == best.pos && pos != std::string_view::npos && specials_[i].size() > best.length)) {
        best = {pos, i, specials_[i].size()};
      }
    }
    return best;
  }

 private:
  std::string_view text_;
  const std::vector<std::string>& specials_;
  std::vector<size_t> next_;
  std::vector<bool> searched_;
};

}  // namespace llm
