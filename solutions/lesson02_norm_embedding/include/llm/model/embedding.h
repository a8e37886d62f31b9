// Lesson 02 - token embedding: the lookup table that turns token ids into vectors.
//
// Shapes: B batch, T time, C channels, V vocabulary size.
//
//     weight: (V, C)         row v is the vector of token v
//     ids:    (B, T) int64   -> out: (B, T, C),  out[b, t] = weight[ids[b, t]]
//
// A lookup is a matrix product with one-hot rows (onehot(ids) @ weight) done without building the
// one-hots, so its gradient only touches the rows that were looked up.
// Initialised N(0, 0.02) as in GPT-2 and Llama (Hugging Face: initializer_range = 0.02). The
// parameter is called `weight` so that a model holding this module as `embed_tokens` gets Hugging
// Face's key `embed_tokens.weight`.
#pragma once

#include <llm/common/todo.h>
#include <llm/model/init.h>

#include <torch/torch.h>

namespace llm {

// GPT-2's and Llama's initializer_range.
inline constexpr double kEmbeddingInitStd = 0.02;

struct TokenEmbeddingImpl : torch::nn::Module {
  TokenEmbeddingImpl(int64_t vocab_size, int64_t dim) : vocab_size(vocab_size), dim(dim) {
    TORCH_CHECK(vocab_size > 0 && dim > 0, "TokenEmbedding: vocab_size and dim must be positive, got ", vocab_size,
                " and ", dim);
    weight = register_parameter("weight", DeferredInit::active() ? torch::empty({vocab_size, dim})  // loaded next
                                                                 : torch::randn({vocab_size, dim}) * kEmbeddingInitStd);
  }

  // ids: any shape S of integer ids in [0, V) -> (S..., C)
  torch::Tensor forward(const torch::Tensor& ids) {
    // 1. Check that ids has an integer dtype (a float "id" is a bug upstream): "ids must be an integer
    //    tensor, got Float". Check that every id is in [0, vocab_size) and report the offending id and
    //    the valid range, "token id 13 is outside the vocabulary; valid ids are 0..12", because the
    //    raw indexing error deep inside a model says neither.
    // 2. Gather the rows: weight.index_select(0, ids.flatten().to(torch::kLong)) is (N, C), N = ids.numel().
    // 3. Reshape to ids.sizes() + (C,).
    // BEGIN SOLUTION: TokenEmbedding::forward(): check ids are integers in [0, V), gather rows of weight
    TORCH_CHECK(!torch::isFloatingType(ids.scalar_type()) && ids.scalar_type() != torch::kBool,
                "TokenEmbedding: ids must be an integer tensor, got ", ids.scalar_type());
    if (ids.numel() > 0) {
      const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < vocab_size, "TokenEmbedding: token id ", lo < 0 ? lo : hi,
                  " is outside the vocabulary; valid ids are 0..", vocab_size - 1);
    }
    auto sizes = ids.sizes().vec();
    sizes.push_back(dim);
    return weight.index_select(0, ids.flatten().to(torch::kLong)).view(sizes);  // (S..., C)
    // END SOLUTION
  }

  int64_t vocab_size;
  int64_t dim;
  torch::Tensor weight;  // (V, C)
};
TORCH_MODULE(TokenEmbedding);

}  // namespace llm
