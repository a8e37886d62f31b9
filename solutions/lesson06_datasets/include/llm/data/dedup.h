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
  // BEGIN SOLUTION: exact_dedup(): hash every document, confirm equal hashes by comparing the text, keep the first
  std::vector<bool> keep(documents.size(), true);
  std::unordered_map<uint64_t, std::vector<size_t>> kept;
  for (size_t i = 0; i < documents.size(); ++i) {
    auto& same_hash = kept[hash64(documents[i])];
    const bool duplicate =
        std::any_of(same_hash.begin(), same_hash.end(), [&](size_t j) { return documents[j] == documents[i]; });
    if (duplicate) {
      keep[i] = false;
    } else {
      same_hash.push_back(i);
    }
  }
  return keep;
  // END SOLUTION
}

// CS336's exact line deduplication: a line that occurs more than once in the whole corpus is
// removed from every document, all its copies (not "keep the first": a line repeated across pages
// is boilerplate wherever it stands). Lines are split at '\n' and rejoined with '\n'.
inline std::vector<std::string> remove_repeated_lines(const std::vector<std::string>& documents) {
  // 1. Count every line of every document (a map from the line's text to its count: exact, no
  //    hash collision can remove a line).
  // 2. Rebuild each document from its lines whose count is 1.
  // BEGIN SOLUTION: remove_repeated_lines(): count every line over the corpus, keep the lines seen once
  auto lines_of = [](const std::string& doc) {
    std::vector<std::string_view> lines;
    size_t start = 0;
    while (start <= doc.size()) {
      size_t end = doc.find('\n', start);
      if (end == std::string::npos) end = doc.size();
      lines.push_back(std::string_view(doc).substr(start, end - start));
      if (end == doc.size()) break;
      start = end + 1;
    }
    return lines;
  };
  std::unordered_map<std::string_view, int64_t> counts;
  for (const auto& doc : documents) {
    for (auto line : lines_of(doc)) ++counts[line];
  }
  std::vector<std::string> out;
  out.reserve(documents.size());
  for (const auto& doc : documents) {
    std::string kept;
    bool first = true;
    for (auto line : lines_of(doc)) {
      if (counts[line] != 1) continue;
      if (!first) kept += '\n';
      kept += line;
      first = false;
    }
    out.push_back(std::move(kept));
  }
  return out;
  // END SOLUTION
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
  // BEGIN SOLUTION: shingles(): the distinct hashed word n-grams of the normalised text
  TORCH_CHECK(n >= 1, "shingles: n must be >= 1, got ", n);
  const std::string normal = normalize_for_dedup(text);
  const auto words = split_words(normal);
  std::vector<uint64_t> out;
  if (words.empty()) return out;
  const size_t count = words.size() >= static_cast<size_t>(n) ? words.size() - n + 1 : 1;
  const size_t width = std::min<size_t>(n, words.size());
  for (size_t i = 0; i < count; ++i) {
    const char* begin = words[i].data();
    const char* end = words[i + width - 1].data() + words[i + width - 1].size();  // one-space-joined in `normal`
    out.push_back(hash64(std::string_view(begin, end - begin)));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
  // END SOLUTION
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
  // BEGIN SOLUTION: universal_hash(): a x + b in 128 bits, reduced modulo the Mersenne prime 2^61 - 1
  x %= kMersenne61;
  unsigned __int128 v = static_cast<unsigned __int128>(a) * x + b;
  v = (v & kMersenne61) + (v >> 61);
  v = (v & kMersenne61) + (v >> 61);
  uint64_t r = static_cast<uint64_t>(v);
  if (r >= kMersenne61) r -= kMersenne61;
  return r;
  // END SOLUTION
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
    // BEGIN SOLUTION: MinHasher::signature(): for every hash function, the minimum over the shingles
    std::vector<uint64_t> sig(options_.num_hashes, kMersenne61);
    for (uint64_t x : shingle_set) {
      for (int64_t i = 0; i < options_.num_hashes; ++i) sig[i] = std::min(sig[i], universal_hash(a_[i], b_[i], x));
    }
    return sig;
    // END SOLUTION
  }

  // Pairs (i < j) that share at least one band: the r slots of band k equal in both signatures.
  std::vector<std::pair<size_t, size_t>> candidate_pairs(const std::vector<std::vector<uint64_t>>& signatures) const {
    // For each band: bucket the documents by the hash64 of their r slots (as bytes); every two
    // documents in one bucket whose r slots really are equal form a pair. Return the distinct
    // pairs, sorted.
    // BEGIN SOLUTION: MinHasher::candidate_pairs(): bucket each band's rows, pair up the documents in a bucket
    std::set<std::pair<size_t, size_t>> pairs;
    const int64_t r = rows();
    for (int64_t band = 0; band < options_.bands; ++band) {
      std::unordered_map<uint64_t, std::vector<size_t>> buckets;
      for (size_t d = 0; d < signatures.size(); ++d) {
        const uint64_t* slots = signatures[d].data() + band * r;
        buckets[XXH3_64bits(slots, r * sizeof(uint64_t))].push_back(d);
      }
      for (const auto& [key, docs] : buckets) {
        for (size_t x = 0; x < docs.size(); ++x) {
          for (size_t y = x + 1; y < docs.size(); ++y) {
            const uint64_t* p = signatures[docs[x]].data() + band * r;
            const uint64_t* q = signatures[docs[y]].data() + band * r;
            if (std::equal(p, p + r, q)) pairs.emplace(docs[x], docs[y]);
          }
        }
      }
    }
    return {pairs.begin(), pairs.end()};
    // END SOLUTION
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
  // BEGIN SOLUTION: minhash_dedup(): shingle, sign, band into candidates, verify by Jaccard, cluster, keep the first
  MinHasher hasher(options);
  std::vector<std::vector<uint64_t>> sets, signatures;
  sets.reserve(documents.size());
  for (const auto& doc : documents) {
    sets.push_back(shingles(doc, options.ngram));
    signatures.push_back(hasher.signature(sets.back()));
  }
  NearDedupResult result;
  result.candidates = hasher.candidate_pairs(signatures);
  DisjointSets clusters(documents.size());
  for (const auto& [i, j] : result.candidates) {
    if (jaccard(sets[i], sets[j]) >= options.threshold) {
      result.duplicates.emplace_back(i, j);
      clusters.unite(i, j);
    }
  }
  std::vector<size_t> smallest(documents.size(), SIZE_MAX);
  for (size_t i = 0; i < documents.size(); ++i) {
    auto& s = smallest[clusters.find(i)];
    s = std::min(s, i);
  }
  result.cluster.resize(documents.size());
  result.keep.resize(documents.size());
  for (size_t i = 0; i < documents.size(); ++i) {
    result.cluster[i] = smallest[clusters.find(i)];
    result.keep[i] = result.cluster[i] == i;
  }
  return result;
  // END SOLUTION
}

}  // namespace llm
