// Lesson 06 - pretraining batches: fixed blocks of the token stream, in a seeded random order
// that can stop and resume at exactly the same batch.
//
// Shapes: B blocks per batch, T tokens per block (the model's context), N blocks in the shard.
//
// The shard is one stream of ids (token_shard.h). Block i is the T + 1 ids starting at i * T:
//
//     stream:   t0 t1 t2 t3 t4 t5 t6 t7 t8 ...            T = 4
//     block 0:  t0 t1 t2 t3 t4        inputs t0..t3, targets t1..t4
//     block 1:              t4 t5 t6 t7 t8
//
// Consecutive blocks share one id, so every id after the first is a target exactly once per
// epoch; N = (count - 1) / T (the tail that does not fill a block is left out). The targets are
// the inputs shifted by one: targets[b, t] is the id that follows inputs[b, t] (nanoGPT's x, y;
// Hugging Face's labels are the unshifted form, targets[:, t] = labels[:, t + 1]).
//
// Order. nanoGPT samples random offsets, so it cannot say where a run stopped. Here epoch e visits
// the N blocks in a random permutation that is a pure function of (seed, epoch), and the k-th
// block a run ever reads is
//
//     block_at(k) = permutation(seed, epoch = k / N)[k % N]
//
// so the whole data state of a run is one number, the blocks consumed so far (the cursor). A
// resumed run reads exactly the blocks it would have read. Data-parallel ranks split every global
// batch: rank r of W takes the blocks at global positions cursor + r, cursor + r + W, ... so their
// shares are disjoint and together are exactly the one-process batch.
//
// Document-aware packing (optional). A block may cross an end-of-text token, and by default the
// model attends across it (nanoGPT, nanochat do). With packing, position ids restart at 0 after
// every EOT and attention stays inside each document (lesson 03's document_causal_mask), and the
// target of each EOT - the first token of the next document - is ignored, because nothing in the
// new document's context predicts it: TRL's padding-free semantics (position_ids restart per
// sequence, labels[position_ids == 0] = -100).
#pragma once

#include <llm/common/todo.h>
#include <llm/data/token_shard.h>

#include <torch/torch.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace llm {

inline constexpr int64_t kIgnoreTarget = -100;  // PyTorch's and Hugging Face's ignore_index

// SplitMix64 (Steele et al. 2014): a tiny, well-mixed 64-bit generator whose output is the same on
// every platform. std::mt19937_64 is too, but std::uniform_int_distribution is not specified
// exactly, so a shuffle built on it may differ between standard libraries.
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), without modulo bias (rejects the top partial range).
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next();
    while (x >= limit);
    return x % n;
  }
};

// A permutation of 0..n-1 that depends only on (seed, epoch): Fisher-Yates (Knuth's Algorithm P)
// driven by SplitMix64 seeded with a mix of the two.
inline std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  // 1. perm = 0, 1, ..., n-1.
  // 2. rng = SplitMix64(seed * 0x9E3779B97F4A7C15 + epoch); for i = n-1 down to 1: swap perm[i] with
  //    perm[rng.below(i + 1)].
  // BEGIN SOLUTION: epoch_permutation(): Fisher-Yates with SplitMix64 seeded from (seed, epoch)
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), int64_t{0});
  SplitMix64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(static_cast<uint64_t>(i) + 1)]);
  return perm;
  // END SOLUTION
}

struct PretrainBatch {
  torch::Tensor input_ids;     // (B, T) int64
  torch::Tensor targets;       // (B, T) int64, kIgnoreTarget where nothing is predicted
  torch::Tensor position_ids;  // (B, T) int64 with packing, else undefined (positions 0..T-1)
};

// Position ids and targets for document-aware packing of one batch.
//   input_ids, targets: (B, T); eot_id: the end-of-text token.
//   position_ids[b, t] = 0 at t = 0 and right after every EOT, else position_ids[b, t-1] + 1
//   targets[b, t] = kIgnoreTarget where input_ids[b, t] == eot_id (its target starts a new document)
inline void pack_documents(PretrainBatch& batch, int64_t eot_id) {
  // 1. starts = (input_ids == eot_id) shifted right by one column, with column 0 true: a document
  //    starts at column 0 and after every EOT.                                        (B, T) bool
  // 2. position_ids: the distance to the latest start at or before t. With
  //    last_start[t] = cummax over columns of (starts ? t : 0), position_ids = t - last_start.
  //    (cummax returns values and indices; take the values.)
  // 3. targets.masked_fill_(input_ids == eot_id, kIgnoreTarget).
  // BEGIN SOLUTION: pack_documents(): positions restart after each EOT; an EOT's target is ignored
  const auto& ids = batch.input_ids;
  const int64_t B = ids.size(0), T = ids.size(1);
  auto is_eot = ids.eq(eot_id);                                                                  // (B, T)
  auto starts = torch::cat({torch::ones({B, 1}, torch::kBool), is_eot.narrow(1, 0, T - 1)}, 1);  // (B, T)
  auto column = torch::arange(T, torch::kLong).expand({B, T});
  auto last_start = std::get<0>(torch::where(starts, column, torch::zeros_like(column)).cummax(1));
  batch.position_ids = column - last_start;  // (B, T)
  batch.targets = batch.targets.masked_fill(is_eot, kIgnoreTarget);
  // END SOLUTION
}

class PretrainLoader {
 public:
  struct Options {
    int64_t batch_size = 16;  // B blocks per batch, on this rank
    int64_t seq_len = 256;    // T
    uint64_t seed = 1337;
    int64_t rank = 0;  // this process, 0 .. world_size - 1
    int64_t world_size = 1;
    bool pack = false;    // document-aware packing (needs eot_id)
    int64_t eot_id = -1;  // the end-of-text id, for packing
  };

  PretrainLoader(const TokenShard& shard, Options options) : shard_(shard), options_(options) {
    TORCH_CHECK(options.batch_size > 0 && options.seq_len > 0,
                "PretrainLoader: batch_size and seq_len must be "
                "positive, got ",
                options.batch_size, " and ", options.seq_len);
    TORCH_CHECK(options.world_size > 0 && options.rank >= 0 && options.rank < options.world_size,
                "PretrainLoader: rank ", options.rank, " is not in 0..", options.world_size - 1);
    TORCH_CHECK(!options.pack || options.eot_id >= 0, "PretrainLoader: packing needs the end-of-text id (eot_id)");
    num_blocks_ = (shard.size() - 1) / options.seq_len;
    TORCH_CHECK(num_blocks_ >= 1, "PretrainLoader: the shard '", shard.path(), "' holds ", shard.size(),
                " ids, too few for one block of seq_len + 1 = ", options.seq_len + 1);
  }

  int64_t num_blocks() const { return num_blocks_; }  // N, per epoch
  int64_t cursor() const { return cursor_; }          // blocks consumed by all ranks together
  void set_cursor(int64_t cursor) {
    TORCH_CHECK(cursor >= 0, "PretrainLoader: the cursor must be >= 0, got ", cursor);
    cursor_ = cursor;
  }
  int64_t epoch() const { return cursor_ / num_blocks_; }

  // The block read k-th in the run (k counts blocks of all ranks): a pure function of (seed, k).
  int64_t block_at(int64_t k) const {
    // epoch = k / N, index = k % N; return epoch_permutation(N, seed, epoch)[index]. The permutation
    // of the current epoch is kept (permutation_for) so it is built once per epoch, not per block.
    // BEGIN SOLUTION: PretrainLoader::block_at(): the epoch's permutation, at index k % N
    return permutation_for(k / num_blocks_)[static_cast<size_t>(k % num_blocks_)];
    // END SOLUTION
  }

  // The next batch of this rank, advancing the cursor by one global batch (B * world_size blocks).
  PretrainBatch next() {
    // 1. For j = 0 .. B-1: k = cursor + j * world_size + rank; block = block_at(k); row j =
    //    shard.slice(block * T, T + 1)  ->  inputs row[:T], targets row[1:].
    // 2. cursor += B * world_size.
    // 3. With packing: pack_documents(batch, eot_id).
    // BEGIN SOLUTION: PretrainLoader::next(): this rank's blocks of the next global batch, shifted into inputs/targets
    const int64_t B = options_.batch_size, T = options_.seq_len, W = options_.world_size;
    std::vector<torch::Tensor> rows;
    rows.reserve(B);
    for (int64_t j = 0; j < B; ++j) {
      const int64_t block = block_at(cursor_ + j * W + options_.rank);
      rows.push_back(shard_.slice(block * T, T + 1));  // (T + 1,)
    }
    cursor_ += B * W;
    auto stacked = torch::stack(rows);  // (B, T + 1)
    PretrainBatch batch{stacked.narrow(1, 0, T).contiguous(), stacked.narrow(1, 1, T).contiguous(), {}};
    if (options_.pack) pack_documents(batch, options_.eot_id);
    return batch;
    // END SOLUTION
  }

 private:
  const std::vector<int64_t>& permutation_for(int64_t epoch) const {
    if (epoch != cached_epoch_) {
      permutation_ = epoch_permutation(num_blocks_, options_.seed, epoch);
      cached_epoch_ = epoch;
    }
    return permutation_;
  }

  [[maybe_unused]] const TokenShard& shard_;  // (unused only in the stub, until next() is written)
  Options options_;
  int64_t num_blocks_ = 0;
  int64_t cursor_ = 0;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> permutation_;
};

}  // namespace llm
