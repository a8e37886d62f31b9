// Lesson 06 - a quality classifier: a hashed n-gram linear model that a CPU trains in seconds.
//
// Shapes: B documents per batch, F features of one document, E the embedding width, K buckets.
//
// Rules (filters.h) catch what someone thought of; a classifier learns what good text looks like
// from examples. CS336's assignment 4 trains fastText (Joulin et al. 2017, "Bag of Tricks for
// Efficient Text Classification") on Wikipedia-linked pages against random Common Crawl. Here the
// positives are the built-in prose and the negatives generated junk (shuffled words, boilerplate,
// repeated lines, random characters), and the model is fastText's:
//
//     features(doc)  = hashed word unigrams and bigrams, each mod K             (F,) ids in [0, K)
//     h              = mean of the features' embeddings                           (E,)
//     score          = sigmoid(w . h + b)                                         in [0, 1]
//
// fastText hashes words with FNV-1a (32-bit: offset 2166136261, prime 16777619) and a bigram (u, v)
// as h(u) * 116049371 + h(v) (fastText's dictionary.cc addWordNgrams), then takes it mod the
// bucket count; here unigrams and bigrams share one table of K buckets. Words: lowercased
// whitespace-separated tokens (split_words). Training: binary cross-entropy, Adam (lesson 07
// writes optimizers; this one is LibTorch's), a few epochs over shuffled mini-batches.
//
// One addition to fastText: two document statistics enter the linear layer next to h. A *mean* of
// n-gram embeddings cannot see repetition - a line repeated 30 times has exactly the features of
// that line once - and repeated lines are a classic kind of junk. The statistics can:
//
//     unique words     distinct words / words           (about 0.5-0.8 for prose; 0.03 for a repeated line)
//     repeated lines   non-empty lines equal to an earlier one / non-empty lines
//
//     score = sigmoid(w . [h, unique, repeated] + b)                           (E + 2 inputs)
//
// Evaluation: AUC, the probability that a random positive scores above a random negative (ties
// count one half): 1 separates perfectly, 0.5 is chance. It needs no threshold.
#pragma once

#include <llm/common/todo.h>
#include <llm/data/filters.h>
#include <llm/data/pretrain_batches.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <unordered_set>
#include <vector>

namespace llm {

inline uint32_t fnv1a32(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

// The hashed unigram and bigram ids of a text, in order: every word, then every adjacent pair.
inline std::vector<int64_t> hashed_features(std::string_view text, int64_t buckets) {
  // 1. words = split_words(text), each lowercased (ASCII).
  // 2. unigram i: fnv1a32(word_i) mod buckets.
  // 3. bigram (i, i+1): (uint64(fnv1a32(word_i)) * 116049371 + fnv1a32(word_{i+1})) mod buckets.
  // A text without words has no features.
  LLM_TODO("lesson06: hashed_features(): FNV-1a of every lowercased word, and fastText's bigram hash, mod the buckets");
}

struct QualityFeatures {
  std::vector<int64_t> ids;  // hashed_features
  float unique_words = 0;    // distinct (lowercased) words / words; 0 without words
  float repeated_lines = 0;  // non-empty lines equal to an earlier one / non-empty lines; 0 without lines
};

// Everything the classifier reads of one text.
inline QualityFeatures quality_features(std::string_view text, int64_t buckets) {
  QualityFeatures f;
  f.ids = hashed_features(text, buckets);
  const auto words = split_words(text);
  if (!words.empty()) {
    std::unordered_set<std::string> distinct;
    for (auto w : words) {
      std::string lower(w);
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      distinct.insert(std::move(lower));
    }
    f.unique_words = static_cast<float>(distinct.size()) / static_cast<float>(words.size());
  }
  std::vector<std::string_view> lines;
  for (auto line : split_lines(text)) {
    if (!split_words(line).empty()) lines.push_back(line);
  }
  if (!lines.empty()) {
    f.repeated_lines = static_cast<float>(count_duplicates(lines).first) / static_cast<float>(lines.size());
  }
  return f;
}

// Junk of four kinds, made from real prose so its words look normal and only the structure is bad.
// kind = index % 4: 0 the words of `source` shuffled; 1 boilerplate sentences (navigation, cookie
// and copyright notices) repeated; 2 one line of `source` repeated on many lines; 3 random lowercase
// letters and digits in random-length "words". Deterministic in (source, seed, index).
inline std::string make_junk(const std::string& source, uint64_t seed, int64_t index) {
  SplitMix64 rng(seed * 0x2545F4914F6CDD1Dull + static_cast<uint64_t>(index));
  auto words = split_words(source);
  const int64_t kind = index % 4;
  std::string out;
  if (kind == 0 && !words.empty()) {
    std::vector<std::string_view> shuffled(words.begin(), words.end());
    for (size_t i = shuffled.size() - 1; i > 0; --i) std::swap(shuffled[i], shuffled[rng.below(i + 1)]);
    for (auto w : shuffled) out += std::string(w) + " ";
  } else if (kind == 1) {
    static const char* kBoilerplate[] = {"Click here to subscribe to our newsletter.",
                                         "Home | About | Contact | Privacy Policy | Terms of Use",
                                         "This website uses cookies to improve your experience. Accept all cookies.",
                                         "Copyright 2024 All rights reserved.",
                                         "Share on Facebook Share on Twitter Share by Email",
                                         "Sign in or register to continue reading.",
                                         "Next page >> Previous page <<",
                                         "Add to cart - Buy now - Free shipping"};
    const int64_t n = 20 + static_cast<int64_t>(rng.below(30));
    for (int64_t i = 0; i < n; ++i) out += std::string(kBoilerplate[rng.below(8)]) + "\n";
  } else if (kind == 2 && !words.empty()) {
    std::string line;
    const size_t start = rng.below(words.size());
    for (size_t i = start; i < std::min(words.size(), start + 8); ++i) line += std::string(words[i]) + " ";
    const int64_t n = 15 + static_cast<int64_t>(rng.below(30));
    for (int64_t i = 0; i < n; ++i) out += line + "\n";
  } else {
    static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    const int64_t n = 60 + static_cast<int64_t>(rng.below(120));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t len = 1 + static_cast<int64_t>(rng.below(12));
      for (int64_t j = 0; j < len; ++j) out += kChars[rng.below(36)];
      out += ' ';
    }
  }
  return out;
}

// The statistics enter the linear layer multiplied by this. Adam moves every weight by about the
// learning rate per step, so an input's scale is its path's effective learning rate. At 1 the
// n-gram embeddings (half a million weights for 600 texts) memorise the training junk before the
// two statistics' weights have grown, and repeated-line junk from unseen text scores like prose:
// held-out AUC 0.5 on that kind (measured, lesson 06's advanced test). At 32 the statistics win
// that race: 1.0 on that kind, 0.98 over all four.
inline constexpr float kStatisticsScale = 32.0f;

struct QualityClassifierOptions {
  int64_t buckets = 1 << 15;  // K: hashed feature ids (fastText's 2M is for web-scale vocabularies)
  int64_t dim = 16;           // E
  int64_t epochs = 5;
  int64_t batch_size = 32;
  double learning_rate = 0.05;
  uint64_t seed = 1234;
};

struct QualityClassifierImpl : torch::nn::Module {
  explicit QualityClassifierImpl(QualityClassifierOptions options = {}) : options(options) {
    TORCH_CHECK(options.buckets > 0 && options.dim > 0, "QualityClassifier: buckets and dim must be positive");
    embedding = register_module(
        "embedding",
        torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(options.buckets, options.dim).mode(torch::kMean)));
    head = register_module("head", torch::nn::Linear(options.dim + 2, 1));
  }

  // A batch of texts' features -> logits (B,). Without ids, the embedding mean is 0.
  torch::Tensor forward(const std::vector<QualityFeatures>& features) {
    // 1. Flatten the id lists into one id tensor and an offsets tensor (the start of each list):
    //    the input EmbeddingBag takes.
    // 2. h = embedding(ids, offsets)                                    (B, E)   mean per list
    // 3. stats = (unique_words, repeated_lines) of every text           (B, 2)
    // 4. return head(cat(h, stats, 1)).squeeze(-1)                      (B,)     logits
    LLM_TODO("lesson06: QualityClassifier::forward(): EmbeddingBag mean of the hashed features and the two statistics, a linear logit");
  }

  // Scores in [0, 1]: sigmoid of the logits, no gradient.
  std::vector<double> score(const std::vector<std::string>& texts) {
    torch::NoGradGuard no_grad;
    std::vector<QualityFeatures> features;
    for (const auto& t : texts) features.push_back(quality_features(t, options.buckets));
    auto p = torch::sigmoid(forward(features)).to(torch::kFloat64);
    return {p.data_ptr<double>(), p.data_ptr<double>() + p.numel()};
  }

  QualityClassifierOptions options;
  torch::nn::EmbeddingBag embedding{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(QualityClassifier);

// Trains on positives (label 1) and negatives (label 0); returns the mean loss of each epoch.
inline std::vector<double> train_quality_classifier(QualityClassifier& model, const std::vector<std::string>& positives,
                                                    const std::vector<std::string>& negatives) {
  // 1. Features of every text (quality_features with the model's buckets), labels 1 then 0.
  // 2. Adam(model parameters, learning_rate). For each epoch: visit the examples in the order
  //    epoch_permutation(n, seed, epoch); for every mini-batch of batch_size: logits = model(batch),
  //    loss = binary_cross_entropy_with_logits(logits, labels), backward, step.
  // 3. Record each epoch's mean loss.
  LLM_TODO("lesson06: train_quality_classifier(): hashed features, BCE with logits, Adam over seeded shuffled mini-batches");
}

// Area under the ROC curve by ranks (the Mann-Whitney U statistic): the fraction of (positive,
// negative) pairs where the positive scores higher, ties counting 1/2.
inline double roc_auc(const std::vector<double>& positive_scores, const std::vector<double>& negative_scores) {
  // 1. Check neither list is empty, naming both and their sizes: "roc_auc: need at least one positive
  //    and one negative score, got 0 and 1".
  // 2. Sort all scores together; give each its rank (1-based), tied scores the mean of their ranks.
  // 3. U = (sum of the positives' ranks) - P (P + 1) / 2;  AUC = U / (P N).
  LLM_TODO("lesson06: roc_auc(): the Mann-Whitney U over ranks with ties averaged, divided by P N");
}

}  // namespace llm
