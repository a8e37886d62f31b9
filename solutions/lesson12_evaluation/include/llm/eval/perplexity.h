// Lesson 12 - perplexity and bits per byte: how well a model predicts held-out text.
//
// Shapes: N target positions, V vocabulary.
//
// The loss on held-out text, in nats per token, is the average of -log p(next token). Two
// summaries of it:
//
//     perplexity     = exp(nats / tokens)          "as unsure as a uniform choice among this many"
//     bits per byte  = nats / (ln 2 * bytes)       the same information per byte of the *text*
//
// Perplexity depends on the tokenizer: a tokenizer with longer tokens predicts fewer, harder tokens.
// Bits per byte divides by the bytes the tokens stand for instead, so models with different
// tokenizers (ours with 4,096 tokens, GPT-2's 50,257) can be compared on the same text; it is what
// nanochat reports (val/bpb) and lm-evaluation-harness computes for loglikelihood_rolling tasks.
//
// Both are *corpus-level*: sum the nats and the bytes over all documents, then divide once
// (lm-evaluation-harness' weighted_perplexity and bits_per_byte: sum(ll) / sum(bytes)), never an
// average of per-document ratios, which would weight a short document like a long one.
//
// Special tokens (end-of-text, chat markers) stand for no bytes of the text. Following nanochat's
// evaluate_bpb, a target whose token has 0 bytes is left out of *both* sums (its nats and its byte
// count), and so are ignored targets (-100); perplexity here is over the same tokens.
//
// Golden (nanochat's docstring arithmetic): 100 nats over 250 bytes = 100 / (ln 2 * 250) = 0.5770780 bpb.
#pragma once

#include <llm/common/todo.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

namespace llm {

struct LossTotals {
  double nats = 0;     // sum of -log p over the counted targets
  int64_t tokens = 0;  // counted targets
  int64_t bytes = 0;   // bytes of the counted targets' tokens

  LossTotals& operator+=(const LossTotals& o) {
    nats += o.nats, tokens += o.tokens, bytes += o.bytes;
    return *this;
  }
};

// token_bytes[id] = the number of bytes token id decodes to; 0 for special tokens.
inline torch::Tensor token_byte_counts(const BpeTokenizer& tokenizer) {
  std::vector<int64_t> counts(tokenizer.vocab_size());
  for (TokenId id = 0; id < tokenizer.vocab_size(); ++id)
    counts[id] = static_cast<int64_t>(tokenizer.token_bytes(id).size());
  for (const auto& [text, id] : tokenizer.special_tokens()) counts[id] = 0;
  return torch::tensor(counts, torch::kLong);
}

// The totals of one batch: logits (N, V) and targets (N,) (kIgnoreTarget = -100 ignored), with
// token_bytes (V,) from token_byte_counts.
inline LossTotals loss_totals(const torch::Tensor& logits, const torch::Tensor& targets,
                              const torch::Tensor& token_bytes) {
  // 1. Check shapes: logits (N, V), targets (N,), token_bytes (V,), naming all three, e.g.
  //    "loss_totals: expected logits (N, V), targets (N,) and token_bytes (V,), got [4, 8], [3] and [8]".
  // 2. counted = targets != -100, and among those, token_bytes[target] > 0 (look the bytes up with
  //    a safe index where the target is ignored).
  // 3. nll = logsumexp(logits in fp32) - logits[target]            (N,)
  // 4. nats = sum(nll over counted); tokens = count; bytes = sum(token_bytes[target] over counted).
  // BEGIN SOLUTION: loss_totals(): the nats, tokens and bytes of the targets that stand for text
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && logits.size(0) == targets.size(0) && token_bytes.dim() == 1 &&
                  token_bytes.size(0) == logits.size(1),
              "loss_totals: expected logits (N, V), targets (N,) and token_bytes (V,), got ", logits.sizes(), ", ",
              targets.sizes(), " and ", token_bytes.sizes());
  auto t = targets.to(torch::kLong);
  auto valid = t.ne(-100);
  auto safe = torch::where(valid, t, torch::zeros_like(t));
  auto bytes = token_bytes.index_select(0, safe);  // (N,)
  auto counted = valid.logical_and(bytes.gt(0));   // (N,)
  auto z = logits.to(torch::kFloat32);
  auto nll = torch::logsumexp(z, -1) - z.gather(1, safe.unsqueeze(1)).squeeze(1);  // (N,)
  LossTotals totals;
  totals.nats = nll.masked_select(counted).to(torch::kFloat64).sum().item<double>();
  totals.tokens = counted.sum().item<int64_t>();
  totals.bytes = bytes.masked_select(counted).sum().item<int64_t>();
  return totals;
  // END SOLUTION
}

// nats / (ln 2 * bytes); infinity when nothing was counted (nanochat's convention for 0 bytes).
inline double bits_per_byte(const LossTotals& t) {
  // BEGIN SOLUTION: bits_per_byte(): total nats over ln 2 times total bytes
  if (t.bytes == 0) return std::numeric_limits<double>::infinity();
  return t.nats / (std::log(2.0) * static_cast<double>(t.bytes));
  // END SOLUTION
}

// exp(nats / tokens); infinity when nothing was counted or the exponent overflows.
inline double perplexity(const LossTotals& t) {
  // BEGIN SOLUTION: perplexity(): exp of the mean nats per counted token
  if (t.tokens == 0) return std::numeric_limits<double>::infinity();
  return std::exp(t.nats / static_cast<double>(t.tokens));
  // END SOLUTION
}

}  // namespace llm
