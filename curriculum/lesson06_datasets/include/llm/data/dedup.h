// Lesson 06 - deduplication: exact copies by hash, near copies by MinHash and LSH.
//
// Repeated text wastes compute and makes a model memorise; web corpora are full of it (licences,
// boilerplate, mirrored pages). Two tools:
//
// Exact. Hash every document (or line) with a real 64-bit hash - xxHash's XXH3 (Collet; Debian's
// libxxhash) - and compare the full text of equal hashes, so a collision never removes a document.
//
// Near-duplicates: MinHash (Broder 1997) + locality-sensitive hashing, as CS336's assignment 4
// specifies it and datasketch/datatrove implement it:
//
//   1. normalise the text (lowercase, accents off, punctuation -> space, whitespace collapsed) and
//      take its set S of word n-grams (shingles), each hashed to 64 bits with XXH3;
//   2. signature: k hash functions h_i(x) = (a_i x + b_i) mod p, p = 2^61 - 1 (a Mersenne prime),
//      and sig_i = min over x in S of h_i(x). For two documents P(sig_i(A) == sig_i(B)) = J(A, B),
//      the Jaccard similarity |A n B| / |A u B|, so the share of equal slots estimates J;
//   3. LSH banding: cut the k slots into b bands of r rows (k = b r). Two documents whose rows agree
//      in at least one band become candidates:  P(candidate | J = s) = 1 - (1 - s^r)^b, an S-curve
//      that is steep around (1/b)^(1/r);
//   4. verify every candidate pair with its true Jaccard (CS336 does; datatrove does not) and keep
//      the pairs >= threshold; join them transitively (A~B and B~C put A, B, C in one cluster) with
//      union-find, and keep one document per cluster: the first, so the result is deterministic.
//
// The universal hash without wrap-around: datasketch and datatrove compute a*x + b in numpy
// uint64, which wraps modulo 2^64 before "% p" (datasketch#99, datatrove#198), so their family is
// not the universal one the analysis assumes. Here a*x + b is computed in unsigned __int128 (a, x,
// b < 2^61, so the product is < 2^122) and reduced modulo p exactly.
#pragma once

#include <llm/common/todo.h>
#include <llm/data/filters.h>
#include <llm/data/pretrain_batches.h>

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace llm {

inline uint64_t hash64(std::string_view text) {
  return XXH3_64bits(text.data(), text.size());
}

// keep[i] is false for a document that equals an earlier one exactly.
inline std::vector<bool> exact_dedup(const std::vector<std::string>& documents) {
  // Map hash64(doc) -> indices of the kept documents with that hash. A document whose hash is there
  // *and* whose text equals one of those is a duplicate; otherwise keep it and record it.
  LLM_TODO("lesson06: exact_dedup(): hash every document, confirm equal hashes by comparing the text, keep the first");
}

// CS336's exact line deduplication: a line that occurs more than once in the whole corpus is
// removed from every document, all its copies (not "keep the first": a line repeated across pages
// is boilerplate wherever it stands). Lines are split at '\n' and rejoined with '\n'.
inline std::vector<std::string> remove_repeated_lines(const std::vector<std::string>& documents) {
  // 1. Count every line of every document (a map from the line's text to its count: exact, no
  //    hash collision can remove a line).
  // 2. Rebuild each document from its lines whose count is 1.
  LLM_TODO("lesson06: remove_repeated_lines(): count every line over the corpus, keep the lines seen once");
}

// Lowercase ASCII; Latin-1 accented letters (UTF-8 U+00C0..U+00FF) to their base letter; combining
// accents (U+0300..U+036F, what NFD decomposes an accented letter into) dropped; every other byte
// that is not a letter or digit to a space; runs of spaces to one; trimmed. This is CS336's
// normalisation (lowercase, no punctuation, normalised whitespace, NFD with the accents removed)
// for the Latin alphabet, in both composed and decomposed form; other scripts pass through unchanged.
inline std::string normalize_for_dedup(std::string_view text) {
  // U+00C0..U+00FF in order, each its base letter ('\0' for the two that are not letters: x and /).
  static constexpr const char* kLatin1 =
      "aaaaaaaceeeeiiiidnooooo\0ouuuuyts"
      "aaaaaaaceeeeiiiidnooooo\0ouuuuyty";
  std::string out;
  out.reserve(text.size());
  auto emit = [&](char c) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) return;
    out += c;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      emit(std::isalnum(c) ? static_cast<char>(std::tolower(c)) : ' ');
    } else if ((c == 0xCC || c == 0xCD) && i + 1 < text.size() &&
               (c == 0xCC || static_cast<unsigned char>(text[i + 1]) <= 0xAF)) {  // U+0300..U+036F
      ++i;                                            // a combining accent: "e" + U+0301 is "é" decomposed
    } else if ((c == 0xC3) && i + 1 < text.size()) {  // U+00C0..U+00FF: 0xC3 0x80..0xBF
      const unsigned char d = static_cast<unsigned char>(text[i + 1]);
      const char base = (d >= 0x80 && d <= 0xBF) ? kLatin1[d - 0x80] : '\0';
      emit(base != '\0' ? base : ' ');
      ++i;
    } else {
      out += static_cast<char>(c);  // another script's byte: kept as it is
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The set of hashed word n-grams of the normalised text (words joined by one space before hashing).
// A text with fewer than n words has one shingle: all its words.
inline std::vector<uint64_t> shingles(std::string_view text, int64_t n) {
  // words = split_words(normalize_for_dedup(text)); for every i with i + n <= |words|:
  // hash64(words[i] + " " + ... + words[i + n - 1]); sort and remove duplicates (a set).
  LLM_TODO("lesson06: shingles(): the distinct hashed word n-grams of the normalised text");
}

// |A n B| / |A u B| of two sorted, duplicate-free sets; 1 for two empty sets.
inline double jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  if (a.empty() && b.empty()) return 1.0;
  size_t i = 0, j = 0, both = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j])
      ++both, ++i, ++j;
    else if (a[i] < b[j])
      ++i;
    else
      ++j;
  }
  return static_cast<double>(both) / static_cast<double>(a.size() + b.size() - both);
}

inline constexpr uint64_t kMersenne61 = (uint64_t{1} << 61) - 1;

// (a x + b) mod (2^61 - 1), exactly: the product in 128 bits, then the Mersenne reduction
// (2^61 = 1 mod p, so the high bits fold onto the low ones).
inline uint64_t universal_hash(uint64_t a, uint64_t b, uint64_t x) {
  // 1. x = x mod p (shingle hashes are 64-bit).
  // 2. v = (unsigned __int128) a * x + b.
  // 3. r = (v & p) + (v >> 61); repeat once more (r < 2p afterwards); if r >= p: r -= p.
  LLM_TODO("lesson06: universal_hash(): a x + b in 128 bits, reduced modulo the Mersenne prime 2^61 - 1");
}

// P(two documents of Jaccard similarity s become candidates) with b bands of r rows.
inline double lsh_candidate_probability(double s, int64_t bands, int64_t rows) {
  return 1.0 - std::pow(1.0 - std::pow(s, static_cast<double>(rows)), static_cast<double>(bands));
}

struct MinHashOptions {
  int64_t num_hashes = 100;  // k = bands * rows
  int64_t bands = 10;        // b; rows r = k / b
  int64_t ngram = 5;         // words per shingle
  double threshold = 0.8;    // true Jaccard that makes a candidate pair a duplicate
  uint64_t seed = 1;
};

class MinHasher {
 public:
  explicit MinHasher(MinHashOptions options) : options_(options) {
    TORCH_CHECK(options.num_hashes > 0 && options.bands > 0 && options.num_hashes % options.bands == 0,
                "MinHash: num_hashes (", options.num_hashes, ") must be a positive multiple of bands (", options.bands,
                ")");
    TORCH_CHECK(options.threshold >= 0 && options.threshold <= 1, "MinHash: threshold must be in [0, 1], got ",
                options.threshold);
    SplitMix64 rng(options.seed);
    for (int64_t i = 0; i < options.num_hashes; ++i) {
      a_.push_back(1 + rng.below(kMersenne61 - 1));  // a in [1, p)
      b_.push_back(rng.below(kMersenne61));          // b in [0, p)
    }
  }

  const MinHashOptions& options() const { return options_; }
  int64_t rows() const { return options_.num_hashes / options_.bands; }

  // sig[i] = min over the shingles x of universal_hash(a_i, b_i, x); a document without shingles
  // gets all slots = p (no value can be equal by chance... except to another empty document).
  std::vector<uint64_t> signature(const std::vector<uint64_t>& shingle_set) const {
    LLM_TODO("lesson06: MinHasher::signature(): for every hash function, the minimum over the shingles");
  }

  // Pairs (i < j) that share at least one band: the r slots of band k equal in both signatures.
  std::vector<std::pair<size_t, size_t>> candidate_pairs(const std::vector<std::vector<uint64_t>>& signatures) const {
    // For each band: bucket the documents by the hash64 of their r slots (as bytes); every two
    // documents in one bucket whose r slots really are equal form a pair. Return the distinct
    // pairs, sorted.
    LLM_TODO("lesson06: MinHasher::candidate_pairs(): bucket each band's rows, pair up the documents in a bucket");
  }

 private:
  MinHashOptions options_;
  std::vector<uint64_t> a_, b_;
};

// Union-find with path halving and union by size (Tarjan 1975).
class DisjointSets {
 public:
  explicit DisjointSets(size_t n) : parent_(n), size_(n, 1) { std::iota(parent_.begin(), parent_.end(), size_t{0}); }
  size_t find(size_t x) {
    while (parent_[x] != x) x = parent_[x] = parent_[parent_[x]];
    return x;
  }
  void unite(size_t a, size_t b) {
    a = find(a), b = find(b);
    if (a == b) return;
    if (size_[a] < size_[b]) std::swap(a, b);
    parent_[b] = a;
    size_[a] += size_[b];
  }

 private:
  std::vector<size_t> parent_, size_;
};

struct NearDedupResult {
  std::vector<bool> keep;                             // one per document
  std::vector<size_t> cluster;                        // the smallest index of each document's cluster
  std::vector<std::pair<size_t, size_t>> candidates;  // LSH candidate pairs
  std::vector<std::pair<size_t, size_t>> duplicates;  // candidates whose true Jaccard >= threshold
};

// Steps 1-4 of the top of this file.
inline NearDedupResult minhash_dedup(const std::vector<std::string>& documents, const MinHashOptions& options = {}) {
  // 1. MinHasher hasher(options) before anything else: its constructor (written) checks the options
  //    ("MinHash: num_hashes (100) must be a positive multiple of bands (7)", "MinHash: threshold
  //    must be in [0, 1], got 1.5"). Then the shingles of every document; hasher.signature of each.
  // 2. candidates = hasher.candidate_pairs(signatures).
  // 3. duplicates = the candidates whose jaccard(shingles) >= threshold; unite them in DisjointSets.
  // 4. cluster[i] = the smallest document index in i's set; keep[i] = (cluster[i] == i).
  LLM_TODO("lesson06: minhash_dedup(): shingle, sign, band into candidates, verify by Jaccard, cluster, keep the first");
}

}  // namespace llm
