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
  LLM_TODO("lesson01: count_pieces(): drop special tokens, pre-tokenize, count each distinct piece");
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
  LLM_TODO("lesson01: train_bpe(): count pairs, merge the most frequent, update only the words that contain it");
}

}  // namespace llm
