// Lesson 01 - training a byte-level BPE tokenizer from text.
//
// BPE training (Sennrich et al. 2016) is a greedy compression loop:
//
//     vocabulary = the 256 bytes
//     words      = the pre-tokenized pieces of the corpus, each a sequence of byte tokens, with counts
//     repeat until the vocabulary is full:
//         count every adjacent pair of tokens inside every word (times the word's count)
//         the most frequent pair (a, b) becomes a new token ab, with the next id; record merge (a, b)
//         replace (a, b) by ab in every word
//
// Pairs never span two pre-tokenized pieces, so no token glues " dog" to "." (pretokenizer.h).
// Special tokens are cut out of the training text and added whole, after the merges, at the end of
// the vocabulary: ids 256 .. 256+M-1 are merges, then the specials.
//
// Deterministic tie-break: among pairs with the same count, the pair with the smallest
// (left id, right id) wins. Ids are assigned in merge order, so the result depends only on the text.
// Training stops early, with a smaller vocabulary, when no pair occurs at least `min_pair_count`
// times: a merge seen once saves one token in the whole corpus and wastes a row of the embedding.
//
// Speed: recounting every pair after every merge is O(merges x corpus). Instead keep the pair counts
// and, for each pair, the words it occurs in; a merge then only revisits the words that contain it,
// and a max-heap of (count, pair) with lazy deletion finds the next best pair.
#pragma once

#include <llm/common/todo.h>
#include <llm/tokenizer/bpe_tokenizer.h>
#include <llm/tokenizer/pretokenizer.h>
#include <llm/tokenizer/special_tokens.h>

#include <algorithm>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llm {

struct BpeTrainingOptions {
  int64_t vocab_size = 4096;                // bytes + merges + special tokens
  std::vector<std::string> special_tokens;  // e.g. {"<|endoftext|>"}
  int64_t min_pair_count = 2;
};

// The distinct pieces of `text` (special tokens cut out first) with how often each occurs.
inline std::unordered_map<std::string, int64_t> count_pieces(std::string_view text,
                                                             const std::vector<std::string>& special_tokens) {
  // 1. Cut text at every occurrence of a special token (they are not trained on):
  //    split_at_special_tokens hands you the text between them.
  // 2. Split each remaining chunk with Gpt2PreTokenizer and count every piece.
  // BEGIN SOLUTION: count_pieces(): drop special tokens, pre-tokenize, count each distinct piece
  Gpt2PreTokenizer pretokenizer;
  std::unordered_map<std::string, int64_t> counts;
  auto count_chunk = [&](std::string_view chunk) {
    for (std::string_view piece : pretokenizer.split(chunk)) ++counts[std::string(piece)];
  };
  split_at_special_tokens(text, special_tokens, count_chunk, [](size_t) {});
  return counts;
  // END SOLUTION
}

inline BpeTokenizer train_bpe(std::string_view text, const BpeTrainingOptions& options) {
  // 0. Check the options: vocab_size >= 256 + number of specials, else throw std::invalid_argument
  //    "vocab_size 256 is too small: it needs 256 byte tokens + 1 special tokens, so at least 257";
  //    min_pair_count >= 1, else std::invalid_argument "min_pair_count must be >= 1, got 0".
  // 1. words[w] = the byte ids of piece w, counts[w] = how often it occurs (count_pieces).
  // 2. pair_counts[key(a, b)] = sum over words of count x occurrences of (a, b);
  //    where[key(a, b)] = the words that contain (a, b) (may hold stale entries; re-check).
  // 3. A max-heap of (count, a, b) ordered by count, then by the smallest (a, b). Pop; skip entries
  //    whose count is no longer the current one (lazy deletion); stop when the best count is below
  //    min_pair_count or vocab_size - num_special tokens exist.
  // 4. Merge (a, b) -> new id = vocab.size(), vocab bytes = vocab[a] + vocab[b], record the merge.
  //    For every word in where[(a, b)]: subtract its old pairs from pair_counts, replace the
  //    occurrences left to right, add its new pairs, list the word under each new pair, and push
  //    the changed pairs onto the heap with their new counts.
  // 5. Append the special tokens to vocab and build BpeTokenizer(vocab, merges, special ids).
  // BEGIN SOLUTION: train_bpe(): count pairs, merge the most frequent, update only the words that contain it
  const int64_t num_special = static_cast<int64_t>(options.special_tokens.size());
  if (options.vocab_size < 256 + num_special) {
    throw std::invalid_argument("vocab_size " + std::to_string(options.vocab_size) +
                                " is too small: it needs 256 byte "
                                "tokens + " +
                                std::to_string(num_special) + " special tokens, so at least " +
                                std::to_string(256 + num_special));
  }
  if (options.min_pair_count < 1) {
    throw std::invalid_argument("min_pair_count must be >= 1, got " + std::to_string(options.min_pair_count));
  }
  std::vector<std::vector<TokenId>> words;
  std::vector<int64_t> counts;
  for (const auto& [piece, count] : count_pieces(text, options.special_tokens)) {
    words.emplace_back(piece.begin(), piece.end());
    for (auto& id : words.back()) id = static_cast<unsigned char>(id);
    counts.push_back(count);
  }
  std::vector<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.emplace_back(1, static_cast<char>(b));

  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t k = BpeTokenizer::key(words[w][i], words[w][i + 1]);
      pair_counts[k] += counts[w];
      where[k].push_back(static_cast<int32_t>(w));
    }
  }
  struct Entry {
    int64_t count;
    uint64_t pair;
    bool operator<(const Entry& other) const {  // the heap's top is the largest: most frequent, smallest pair
      return count != other.count ? count < other.count : pair > other.pair;
    }
  };
  std::priority_queue<Entry> heap;
  for (const auto& [k, c] : pair_counts) heap.push({c, k});

  std::vector<Merge> merges;
  std::vector<int32_t> last_visit(words.size(), -1);  // a word listed twice under one pair is merged once
  const int64_t max_tokens = options.vocab_size - num_special;
  std::vector<TokenId> merged;
  while (static_cast<int64_t>(vocab.size()) < max_tokens && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    auto current = pair_counts.find(top.pair);
    if (current == pair_counts.end() || current->second != top.count) continue;  // stale entry
    if (top.count < options.min_pair_count) break;

    const TokenId a = static_cast<TokenId>(top.pair >> 32), b = static_cast<TokenId>(top.pair & 0xFFFFFFFF);
    const TokenId ab = static_cast<TokenId>(vocab.size());
    vocab.push_back(vocab[a] + vocab[b]);
    merges.push_back({a, b});

    std::vector<uint64_t> changed;
    const std::vector<int32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    for (int32_t w : affected) {
      if (last_visit[w] == ab) continue;
      last_visit[w] = ab;
      auto& word = words[w];
      merged.clear();
      for (size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
          merged.push_back(ab);
          ++i;
        } else {
          merged.push_back(word[i]);
        }
      }
      if (merged.size() == word.size()) continue;  // a stale listing: the pair is gone from this word
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        const uint64_t k = BpeTokenizer::key(word[i], word[i + 1]);
        pair_counts[k] -= counts[w];
        changed.push_back(k);
      }
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        const uint64_t k = BpeTokenizer::key(merged[i], merged[i + 1]);
        pair_counts[k] += counts[w];
        changed.push_back(k);
        if (merged[i] == ab || merged[i + 1] == ab) where[k].push_back(w);
      }
      word.swap(merged);
    }
    std::sort(changed.begin(), changed.end());
    changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
    for (uint64_t k : changed) {
      auto it = pair_counts.find(k);
      if (it->second > 0) {
        heap.push({it->second, k});
      } else {
        pair_counts.erase(it);
      }
    }
  }

  std::vector<TokenId> special_ids;
  for (const auto& special : options.special_tokens) {
    special_ids.push_back(static_cast<TokenId>(vocab.size()));
    vocab.push_back(special);
  }
  return BpeTokenizer(std::move(vocab), merges, special_ids);
  // END SOLUTION
}

}  // namespace llm
