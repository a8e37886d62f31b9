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
// Text is first cut by a pre-tokenizer (pretokenizer.h; GPT-2's regex unless the tokenizer says
// otherwise) and every piece is encoded on its own; special tokens such as "<|endoftext|>" are cut
// out before that and map to their id directly. Decoding concatenates the tokens' bytes, so
// decode(encode(x)) == x for any bytes.
//
// Hugging Face's tokenizer.json (tokenizer_json.h reads it) describes today's models with the same
// parts and a few options (huggingface/tokenizers, tokenizer/mod.rs, encode_single_sequence):
//
//     1. added tokens      cut out first, each its own id (special_tokens.h)
//     2. normalizer        on the text between them: nothing, or NFC for Qwen (normalizer.h)
//     3. pre-tokenizer     the model's regex steps (pretokenizer.h)
//     4. BPE               on every piece; with ignore_merges (Llama 3) a piece that is already
//                          a token of the vocabulary is that token, whatever the merges would say
//     5. post-processor    ids added around the result when asked: Llama 3's BOS <|begin_of_text|>
//
// Shapes of the data: vocab_[id] = the token's bytes; merges_[pair(a, b)] = {rank, id of a+b}.
// With GPT-2's merges.txt, rank = line number. With a tiktoken file the merge rank of (a, b) is
// the rank of the concatenated token (tiktoken's rule); bpe_files.h builds both.
#pragma once

#include <llm/common/todo.h>
#include <llm/tokenizer/byte_tokenizer.h>
#include <llm/tokenizer/normalizer.h>
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

// How a tokenizer.json tokenizer differs from GPT-2's (the defaults are GPT-2's).
struct TokenizerOptions {
  PreTokenizer pretokenizer;                    // GPT-2's regex unless set
  Normalizer normalizer = Normalizer::kNone;    // Qwen: kNfc
  bool ignore_merges = false;                   // Llama 3: a piece that is a token is that token
  std::vector<TokenId> prefix_ids, suffix_ids;  // the post-processor's ids around a text (Llama 3: BOS)
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
      : BpeTokenizer(std::move(vocab), merges, {}, {}, special_ids) {}

  // The same with Hugging Face's added tokens (each with its flags; vocab[token.id] must be its
  // content) and options (tokenizer_json.h builds these from a tokenizer.json).
  BpeTokenizer(std::vector<std::string> vocab, const std::vector<Merge>& merges, std::vector<AddedToken> added,
               TokenizerOptions options, const std::vector<TokenId>& special_ids = {})
      : vocab_(std::move(vocab)), options_(std::move(options)) {
    index_vocab(std::move(added), special_ids);
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
    index_vocab({}, special_ids);
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
  const TokenizerOptions& options() const { return options_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }  // in id order
  // The special added tokens, text -> id.
  const std::map<std::string, TokenId>& special_tokens() const { return specials_; }
  TokenId special_id(const std::string& text) const {
    auto it = specials_.find(text);
    if (it == specials_.end()) throw std::invalid_argument("'" + text + "' is not a special token of this tokenizer");
    return it->second;
  }
  // The id of the added token (special or not) whose content is `text`, or -1.
  TokenId added_id(const std::string& text) const {
    for (const auto& t : added_) {
      if (t.content == text) return t.id;
    }
    return -1;
  }
  bool is_special(TokenId id) const { return id >= 0 && id < vocab_size() && special_flags_[id]; }
  // The id of the vocabulary token (not an added one) whose bytes are `bytes`, or -1.
  TokenId token_id(std::string_view bytes) const {
    auto it = ids_.find(std::string(bytes));
    return it == ids_.end() ? -1 : it->second;
  }
  // The merge of (a, b), if there is one.
  const MergeResult* find_merge(TokenId a, TokenId b) const {
    auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  // BPE on one pre-tokenized piece (no added tokens inside).
  std::vector<TokenId> encode_piece(std::string_view piece) const {
    // 0. With options_.ignore_merges (Llama 3), a piece that is itself a token of the vocabulary is
    //    that one token (token_id(piece) >= 0): return it without merging.
    // 1. symbols = the id of every byte of the piece (byte_ids_[unsigned char]).
    // 2. Loop while there are at least two symbols:
    //      find the adjacent pair (symbols[i], symbols[i+1]) with the lowest rank in merges_
    //      (find_merge); if none has a merge, stop;
    //      rebuild symbols left to right, replacing each occurrence of exactly that pair by its
    //      merged id (after a replacement, continue after the pair: occurrences never overlap).
    // 3. Return symbols.
    // Example with merges (t,h)=0, (th,e)=1: "the" -> [t,h,e] -> [th,e] -> [the].
    LLM_TODO("lesson01: BpeTokenizer::encode_piece(): repeatedly merge the lowest-rank adjacent pair, everywhere");
  }

  // text -> ids. With allow_special (the default) the text of a special token becomes its id;
  // without, it is ordinary text (as GPT-2's own encoder treats it, and transformers'
  // split_special_tokens). Non-special added tokens (Qwen's <think>) are cut out either way.
  // No BOS is added here: with_special_tokens() does that (Hugging Face's add_special_tokens).
  std::vector<TokenId> encode(std::string_view text, bool allow_special = true) const {
    // 1. Cut the text at the added tokens with cut_added_tokens(text, allow_special, on_text,
    //    on_token): on_token(id) gets each added token's id, on_text(chunk) each stretch of text
    //    between them, already normalized (Qwen: NFC).
    // 2. Each stretch: split it with options_.pretokenizer.split() and append encode_cached(piece) for
    //    every piece.
    LLM_TODO("lesson01: BpeTokenizer::encode(): cut out added tokens, pre-tokenize the rest, BPE every piece");
  }

  // ids -> bytes; an id outside [0, V) throws std::out_of_range naming it and the valid range.
  // With skip_special, special added tokens are left out (Hugging Face's skip_special_tokens).
  std::string decode(const std::vector<TokenId>& ids, bool skip_special = false) const {
    // Concatenate vocab_[id] for every id, after checking the id (check_id does it); with
    // skip_special, leave out the ids for which is_special(id).
    LLM_TODO("lesson01: BpeTokenizer::decode(): concatenate the bytes of every (range-checked) token");
  }

  // The post-processor (Hugging Face's add_special_tokens = True): `ids` with the tokenizer's
  // prefix and suffix ids around them, e.g. Llama 3's <|begin_of_text|> in front.
  std::vector<TokenId> with_special_tokens(const std::vector<TokenId>& ids) const {
    std::vector<TokenId> out(options_.prefix_ids);
    out.insert(out.end(), ids.begin(), ids.end());
    out.insert(out.end(), options_.suffix_ids.begin(), options_.suffix_ids.end());
    return out;
  }

  // Steps 1 and 2 of the pipeline above, as Hugging Face's AddedVocabulary::extract_and_normalize:
  // the added tokens matched in the raw text (all of them with allow_special, else only the
  // non-special ones) go to on_token(id); the text between them is normalized, and the added
  // tokens marked "normalized" are matched in that; what is left goes to on_text(stretch).
  template <typename OnText, typename OnToken>
  void cut_added_tokens(std::string_view text, bool allow_special, OnText&& on_text, OnToken&& on_token) const {
    const auto& raw = allow_special ? raw_added_ : raw_added_plain_;
    const auto& normalized = allow_special ? normalized_added_ : normalized_added_plain_;
    auto token = [&](const AddedToken& t) { on_token(t.id); };
    std::string storage;
    split_at_added_tokens(
        text, raw,
        [&](std::string_view chunk) {
          split_at_added_tokens(normalize(options_.normalizer, chunk, storage), normalized, on_text, token);
        },
        token);
  }

 private:
  void index_vocab(std::vector<AddedToken> added, const std::vector<TokenId>& special_ids) {
    for (TokenId id : special_ids) added.push_back({vocab_.at(check_id(id, "special token")), id});
    std::sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
    special_flags_.assign(vocab_.size(), 0);
    std::vector<uint8_t> is_added(vocab_.size(), 0);
    for (const auto& t : added) {
      check_id(t.id, "added token");
      if (vocab_[t.id] != t.content) {
        throw std::invalid_argument("added token " + std::to_string(t.id) + " is '" + t.content +
                                    "' but the vocabulary has '" + vocab_[t.id] + "' there");
      }
      if (is_added[t.id]) throw std::invalid_argument("token " + std::to_string(t.id) + " is added twice");
      is_added[t.id] = 1;
      special_flags_[t.id] = t.special ? 1 : 0;
      if (t.special) specials_.emplace(t.content, t.id);
    }
    added_ = std::move(added);
    for (const auto& t : added_) {
      (t.normalized ? normalized_added_ : raw_added_).push_back(t);
      if (!t.special) (t.normalized ? normalized_added_plain_ : raw_added_plain_).push_back(t);
    }
    for (int b = 0; b < 256; ++b) byte_ids_[b] = -1;
    for (size_t id = 0; id < vocab_.size(); ++id) {
      if (is_added[id]) continue;  // matched whole, never built by BPE
      if (!ids_.emplace(vocab_[id], static_cast<TokenId>(id)).second) {
        throw std::invalid_argument("token " + std::to_string(id) + " repeats the bytes of token " +
                                    std::to_string(ids_[vocab_[id]]));
      }
      if (vocab_[id].size() == 1) byte_ids_[static_cast<unsigned char>(vocab_[id][0])] = static_cast<TokenId>(id);
    }
    for (int b = 0; b < 256; ++b) {
      if (byte_ids_[b] < 0) throw std::invalid_argument("the vocabulary has no token for byte " + std::to_string(b));
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
  std::unordered_map<std::string, TokenId> ids_;      // bytes -> id, the vocabulary without added tokens
  std::unordered_map<uint64_t, MergeResult> merges_;  // key(a, b) -> rank and merged id
  std::vector<Merge> merge_list_;                     // rank order
  std::vector<AddedToken> added_;                     // id order
  std::map<std::string, TokenId> specials_;           // text -> id, the special added tokens
  std::vector<uint8_t> special_flags_;                // id -> 1 if a special added token
  // The added tokens matched in the raw / the normalized text; *_plain_: only the non-special ones.
  std::vector<AddedToken> raw_added_, raw_added_plain_, normalized_added_, normalized_added_plain_;
  TokenId byte_ids_[256] = {};  // byte -> its single-byte token
  TokenizerOptions options_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

}  // namespace llm
