// Lesson 01 - cutting text at special tokens such as "<|endoftext|>", in linear time.
//
// Encoding and training both cut the text at every special token: the earliest occurrence next,
// and the longest special where two start at the same byte ("<|a|>" vs "<|a|>!"). Searching every
// special again after every cut is quadratic on a corpus separated by thousands of "<|endoftext|>"
// (and a special that never occurs would be searched to the end of the text each time), so this
// remembers where each special next occurs and only searches again once the cut has passed it.
// Given code: the lesson is BPE, not string search.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llm {

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

}  // namespace llm
