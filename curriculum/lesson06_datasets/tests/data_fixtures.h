// Shared by lesson 06's suites: a temporary directory per test, a chat tokenizer trained on the
// built-in Austen text, text helpers, and independent reference computations (SplitMix64 as
// published, modular arithmetic without 128-bit integers, FNV-1a) that the tests compare against.
#pragma once

#include <llm/common/files.h>
#include <llm/common/testing.h>
#include <llm/config/model_config.h>
#include <llm/data/pretrain_batches.h>
#include <llm/data/token_shard.h>
#include <llm/tokenizer/bpe_tokenizer.h>
#include <llm/tokenizer/bpe_trainer.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace lesson06 {

// A fresh temporary directory per test (for shards), removed afterwards.
class DataTest : public llm::testing::SeededTest {
 protected:
  void SetUp() override {
    SeededTest::SetUp();
    dir_ = std::filesystem::temp_directory_path() /
           ("lesson06_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

// The first `bytes` bytes of a built-in text ("austen/train.txt").
inline std::string AustenText(const std::string& file, size_t bytes = std::string::npos) {
  return llm::read_file(llm::testing::DataPath(file)).substr(0, bytes);
}

// Whitespace-separated words, counted without the lesson's split_words.
inline int64_t CountWords(const std::string& text) {
  std::istringstream in(text);
  std::string word;
  int64_t n = 0;
  while (in >> word) ++n;
  return n;
}

// Paragraphs (separated by blank lines) of at least min_words words, their line breaks turned into
// spaces: the prose units the quality classifier is trained and evaluated on.
inline std::vector<std::string> Paragraphs(const std::string& text, int64_t min_words, size_t max_count) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size() && out.size() < max_count) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    std::string paragraph = text.substr(start, end - start);
    for (char& c : paragraph) c = (c == '\n' || c == '\r') ? ' ' : c;
    if (CountWords(paragraph) >= min_words) out.push_back(paragraph);
    start = end + 2;
  }
  return out;
}

// A (rows, columns) int64 tensor from nested lists (torch::tensor would reject int literals mixed
// with int64 constants).
inline torch::Tensor LongTensor(const std::vector<std::vector<int64_t>>& rows) {
  auto out = torch::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows.at(0).size())}, torch::kLong);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) out[r][c] = rows[r].at(c);
  }
  return out;
}

inline std::string Repeat(const std::string& s, int64_t times) {
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out += s;
  return out;
}

// The chat template's special tokens; <|endoftext|> doubles as padding (ChatTemplate::from).
inline const std::vector<std::string>& ChatSpecials() {
  static const std::vector<std::string> specials = {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"};
  return specials;
}

// A small BPE tokenizer (512 tokens) trained on 50 KB of Austen with the chat specials: a fraction
// of a second, and real multi-byte merges so that "text" and "ids" differ.
inline const llm::BpeTokenizer& ChatTokenizer() {
  static const llm::BpeTokenizer tokenizer = [] {
    llm::BpeTrainingOptions options;
    options.vocab_size = 512;
    options.special_tokens = ChatSpecials();
    return llm::train_bpe(AustenText("austen/train.txt", 50000), options);
  }();
  return tokenizer;
}

// Ordinary-text ids (special-token text stays text) as int64, the type the lesson's examples hold.
inline std::vector<int64_t> Encode(const std::string& text) {
  std::vector<int64_t> out;
  for (llm::TokenId id : ChatTokenizer().encode(text, /*allow_special=*/false)) out.push_back(id);
  return out;
}

inline std::vector<int64_t> Concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline std::vector<int64_t> ToVector(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// A shard whose id at every position is the position itself (count < vocab), so a block shows
// where it came from: the row that starts with id s is the block s / T.
class StreamShard {
 public:
  StreamShard(const std::string& path, int64_t count) {
    std::vector<uint32_t> ids(count);
    std::iota(ids.begin(), ids.end(), 0u);
    llm::write_token_shard(path, ids, /*vocab_size=*/count + 1);
    shard_ = std::make_unique<llm::TokenShard>(path);
  }
  const llm::TokenShard& operator*() const { return *shard_; }

 private:
  std::unique_ptr<llm::TokenShard> shard_;
};

inline llm::PretrainLoader::Options LoaderOptions(int64_t B, int64_t T, uint64_t seed = 1337, int64_t rank = 0,
                                                  int64_t world = 1) {
  llm::PretrainLoader::Options o;
  o.batch_size = B, o.seq_len = T, o.seed = seed, o.rank = rank, o.world_size = world;
  return o;
}

// The block index of every row of a batch from a StreamShard (row b starts with id block * T).
inline std::vector<int64_t> BlocksOf(const llm::PretrainBatch& batch, int64_t T) {
  std::vector<int64_t> blocks;
  for (int64_t b = 0; b < batch.input_ids.size(0); ++b) blocks.push_back(batch.input_ids[b][0].item<int64_t>() / T);
  return blocks;
}

// SplitMix64 exactly as published (Steele, Lea, Flood 2014; Vigna's splitmix64.c), written here
// independently of the lesson's copy.
struct ReferenceSplitMix64 {
  uint64_t x;
  uint64_t next() {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // The lesson's documented uniform draw: reject the top partial range, then modulo.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
      const uint64_t v = next();
      if (v < limit) return v % n;
    }
  }
};

inline constexpr uint64_t kP61 = (uint64_t{1} << 61) - 1;  // the Mersenne prime of the MinHash family

// (a x + b) mod 2^61 - 1 with 64-bit integers only: reduce, then multiply by double-and-add. Every
// intermediate value is below 2 p < 2^62, so nothing overflows and nothing is approximated.
inline uint64_t ReferenceUniversalHash(uint64_t a, uint64_t b, uint64_t x) {
  uint64_t acc = 0, addend = a % kP61, rest = x % kP61;
  while (rest > 0) {
    if (rest & 1) acc = (acc + addend) % kP61;
    addend = (addend + addend) % kP61;
    rest >>= 1;
  }
  return (acc + b % kP61) % kP61;
}

// FNV-1a, 32 bits (Fowler, Noll, Vo): offset basis 2166136261, prime 16777619.
inline uint32_t ReferenceFnv1a32(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

// Lesson 05's model, small enough for milliseconds: GQA (4 query heads, 2 kv heads), 2 layers.
inline llm::ModelConfig TinyModelConfig() {
  llm::ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.multiple_of = 8;
  return c;
}

}  // namespace lesson06
