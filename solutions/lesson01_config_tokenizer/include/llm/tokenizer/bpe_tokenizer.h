// Lesson 01 - byte-level BPE encoding and decoding, exactly as GPT-2 does it.
//
// Byte-pair encoding (Sennrich et al. 2016; byte-level in GPT-2, Radford et al. 2019) starts from
// the 256 byte tokens and applies a learned, *ranked* list of merges: "t" + "h" -> "th" (rank 0),
// "th" + "e" -> "the" (rank 1), ... To encode a piece of text:
//
//     symbols = its bytes, one token each
//     repeat:  among adjacent pairs of symbols, take the pair with the lowest merge rank;
//              if no adjacent pair has a merge, stop;
//              replace every occurrence of that pair, left to right, by the merged token
//
// Text is first cut by the GPT-2 pre-tokenizer (pretokenizer.h) and every piece is encoded on its
// own; special tokens such as "<|endoftext|>" are cut out before that and map to their id directly.
// Decoding concatenates the tokens' bytes, so decode(encode(x)) == x for any bytes.
//
// Shapes of the data: vocab_[id] = the token's bytes; merges_[pair(a, b)] = {rank, id of a+b}.
// With GPT-2's merges.txt, rank = line number. With a tiktoken file the merge rank of (a, b) is
// the rank of the concatenated token (tiktoken's rule); bpe_files.h builds both.
#pragma once

#include <llm/common/todo.h>
#include <llm/tokenizer/byte_tokenizer.h>
#include <llm/tokenizer/pretokenizer.h>
#include <llm/tokenizer/special_tokens.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace llm {

struct Merge {
  TokenId left;
  TokenId right;
};

class BpeTokenizer {
 public:
  struct MergeResult {
    int32_t rank;
    TokenId id;
  };

  BpeTokenizer() = default;

  // vocab[id] = the bytes of token id (ids 0..V-1, no gaps); `merges` in rank order, every merged
  // token present in vocab; `special_ids`: the ids whose text is matched whole by encode().
  BpeTokenizer(std::vector<std::string> vocab, const std::vector<Merge>& merges,
               const std::vector<TokenId>& special_ids)
      : vocab_(std::move(vocab)) {
    index_vocab(special_ids);
    merge_list_ = merges;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const auto [a, b] = merges[rank];
      check_id(a, "merge");
      check_id(b, "merge");
      auto merged = ids_.find(vocab_[a] + vocab_[b]);
      if (merged == ids_.end()) {
        throw std::invalid_argument("merge " + std::to_string(rank) + " (" + std::to_string(a) + ", " +
                                    std::to_string(b) + ") makes a token that is not in the vocabulary");
      }
      merges_.emplace(key(a, b), MergeResult{static_cast<int32_t>(rank), merged->second});
    }
  }

  // A tokenizer whose merge rank is given per pair (tiktoken's files).
  BpeTokenizer(std::vector<std::string> vocab, std::unordered_map<uint64_t, MergeResult> pair_ranks,
               const std::vector<TokenId>& special_ids)
      : vocab_(std::move(vocab)), merges_(std::move(pair_ranks)) {
    index_vocab(special_ids);
    std::vector<std::pair<int32_t, uint64_t>> ordered;
    for (const auto& [k, result] : merges_) ordered.emplace_back(result.rank, k);
    std::sort(ordered.begin(), ordered.end());
    for (const auto& [rank, k] : ordered)
      merge_list_.push_back({static_cast<TokenId>(k >> 32), static_cast<TokenId>(k)});
  }

  static uint64_t key(TokenId a, TokenId b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  const std::string& token_bytes(TokenId id) const { return vocab_.at(check_id(id, "token_bytes")); }
  const std::vector<Merge>& merges() const { return merge_list_; }  // in rank order
  const std::map<std::string, TokenId>& special_tokens() const { return specials_; }
  TokenId special_id(const std::string& text) const {
    auto it = specials_.find(text);
    if (it == specials_.end()) throw std::invalid_argument("'" + text + "' is not a special token of this tokenizer");
    return it->second;
  }
  // The merge of (a, b), if there is one.
  const MergeResult* find_merge(TokenId a, TokenId b) const {
    auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  // BPE on one pre-tokenized piece (no special tokens inside).
  std::vector<TokenId> encode_piece(std::string_view piece) const {
    // 1. symbols = the id of every byte of the piece (byte_ids_[unsigned char]).
    // 2. Loop while there are at least two symbols:
    //      find the adjacent pair (symbols[i], symbols[i+1]) with the lowest rank in merges_
    //      (find_merge); if none has a merge, stop;
    //      rebuild symbols left to right, replacing each occurrence of exactly that pair by its
    //      merged id (after a replacement, continue after the pair: occurrences never overlap).
    // 3. Return symbols.
    // Example with merges (t,h)=0, (th,e)=1: "the" -> [t,h,e] -> [th,e] -> [the].
    // BEGIN SOLUTION: BpeTokenizer::encode_piece(): repeatedly merge the lowest-rank adjacent pair, everywhere
    std::vector<TokenId> symbols;
    symbols.reserve(piece.size());
    for (unsigned char byte : piece) symbols.push_back(byte_ids_[byte]);
    std::vector<TokenId> next;
    while (symbols.size() >= 2) {
      const MergeResult* best = nullptr;
      TokenId best_a = 0, best_b = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        const MergeResult* m = find_merge(symbols[i], symbols[i + 1]);
        if (m != nullptr && (best == nullptr || m->rank < best->rank))
          best = m, best_a = symbols[i], best_b = symbols[i + 1];
      }
      if (best == nullptr) break;
      next.clear();
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == best_a && symbols[i + 1] == best_b) {
          next.push_back(best->id);
          ++i;  // the pair's second symbol is consumed
        } else {
          next.push_back(symbols[i]);
        }
      }
      symbols.swap(next);
    }
    return symbols;
    // END SOLUTION
  }

  // text -> ids. With allow_special (the default) the text of a special token becomes its id;
  // without, it is ordinary text (as GPT-2's own encoder treats it).
  std::vector<TokenId> encode(std::string_view text, bool allow_special = true) const {
    // 1. If allow_special, cut the text at every special token with split_at_special_tokens over
    //    special_names_: special i becomes its id, special_ids_[i]; the text between is handled as
    //    below. Without allow_special, the whole text is ordinary.
    // 2. Ordinary text: split it with pretokenizer_.split() and append encode_cached(piece) for
    //    every piece.
    // BEGIN SOLUTION: BpeTokenizer::encode(): cut out special tokens, pre-tokenize the rest, BPE every piece
    std::vector<TokenId> ids;
    auto encode_ordinary = [&](std::string_view chunk) {
      for (std::string_view piece : pretokenizer_.split(chunk)) {
        const auto& piece_ids = encode_cached(piece);
        ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
      }
    };
    if (allow_special) {
      split_at_special_tokens(text, special_names_, encode_ordinary, [&](size_t i) { ids.push_back(special_ids_[i]); });
    } else {
      encode_ordinary(text);
    }
    return ids;
    // END SOLUTION
  }

  // ids -> bytes; an id outside [0, V) throws std::out_of_range naming it and the valid range.
  std::string decode(const std::vector<TokenId>& ids) const {
    // Concatenate vocab_[id] for every id, after checking the id (check_id does it).
    // BEGIN SOLUTION: BpeTokenizer::decode(): concatenate the bytes of every (range-checked) token
    std::string out;
    for (TokenId id : ids) out += vocab_[check_id(id, "decode")];
    return out;
    // END SOLUTION
  }

 private:
  void index_vocab(const std::vector<TokenId>& special_ids) {
    for (int b = 0; b < 256; ++b) byte_ids_[b] = -1;
    for (size_t id = 0; id < vocab_.size(); ++id) {
      if (!ids_.emplace(vocab_[id], static_cast<TokenId>(id)).second) {
        throw std::invalid_argument("token " + std::to_string(id) + " repeats the bytes of token " +
                                    std::to_string(ids_[vocab_[id]]));
      }
      if (vocab_[id].size() == 1) byte_ids_[static_cast<unsigned char>(vocab_[id][0])] = static_cast<TokenId>(id);
    }
    for (int b = 0; b < 256; ++b) {
      if (byte_ids_[b] < 0) throw std::invalid_argument("the vocabulary has no token for byte " + std::to_string(b));
    }
    for (TokenId id : special_ids) {
      specials_.emplace(vocab_.at(check_id(id, "special token")), id);
      special_names_.push_back(vocab_[id]);
      special_ids_.push_back(id);
    }
  }

  TokenId check_id(TokenId id, const char* what) const {
    if (id < 0 || id >= vocab_size()) {
      throw std::out_of_range(std::string(what) + ": token id " + std::to_string(id) +
                              " is outside the vocabulary 0.." + std::to_string(vocab_size() - 1));
    }
    return id;
  }

  // Real text repeats its words, so each distinct piece is run through BPE once. The cache makes a
  // tokenizer object unsafe to share between threads: use one per thread.
  const std::vector<TokenId>& encode_cached(std::string_view piece) const {
    static constexpr size_t kMaxCached = 1 << 20;  // bounded memory on endless unique input
    std::string key_text(piece);
    auto it = cache_.find(key_text);
    if (it != cache_.end()) return it->second;
    if (cache_.size() >= kMaxCached) cache_.clear();
    return cache_.emplace(std::move(key_text), encode_piece(piece)).first->second;
  }

  std::vector<std::string> vocab_;                    // id -> bytes
  std::unordered_map<std::string, TokenId> ids_;      // bytes -> id
  std::unordered_map<uint64_t, MergeResult> merges_;  // key(a, b) -> rank and merged id
  std::vector<Merge> merge_list_;                     // rank order
  std::map<std::string, TokenId> specials_;           // text -> id
  std::vector<std::string> special_names_;            // the same, as two parallel lists
  std::vector<TokenId> special_ids_;
  TokenId byte_ids_[256] = {};  // byte -> its single-byte token
  Gpt2PreTokenizer pretokenizer_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

}  // namespace llm
