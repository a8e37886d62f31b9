// Shared by lesson 12's suites: a tiny CausalLM, a hand-built BPE tokenizer in which " Paris" is
// one token, and the log-likelihood of a continuation computed the slow, obvious way (one forward
// per request, no batching, log_softmax + gather): the independent reference for
// continuation_loglikelihoods.
#pragma once

#include <llm/common/testing.h>
#include <llm/config/model_config.h>
#include <llm/model/causal_lm.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

namespace lesson12 {

class EvalTest : public llm::testing::SeededTest {};

// V 32, C 16, L 2, H 4, Hkv 2 (D 4), F = Llama's rule for C 16 rounded up to 8 = 48.
inline llm::ModelConfig TinyConfig(int64_t vocab_size = 32, int64_t max_positions = 32) {
  llm::ModelConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = max_positions;
  c.multiple_of = 8;
  return c;
}

inline torch::Tensor Longs(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::kLong);
}

// Ids of the hand-built tokenizer: 0..255 are the bytes, then the merged tokens and one special.
constexpr llm::TokenId kSpaceP = 256, kAr = 257, kIs = 258, kSpacePar = 259, kSpaceParis = 260, kEAcute = 261,
                       kEndOfText = 262;

// Byte-level BPE with six merges, in rank order:
//   " " + "P" -> " P",  "a" + "r" -> "ar",  "i" + "s" -> "is",  " P" + "ar" -> " Par",
//   " Par" + "is" -> " Paris",  0xC3 + 0xA9 -> "é" (2 bytes, 1 character)
// and the special token "<|endoftext|>". So " Paris" is one token, "Paris" is P + ar + is.
inline const llm::BpeTokenizer& ParisTokenizer() {
  static const llm::BpeTokenizer tokenizer = [] {
    std::vector<std::string> vocab;
    for (int b = 0; b < 256; ++b) vocab.push_back(std::string(1, static_cast<char>(b)));
    for (const char* t : {" P", "ar", "is", " Par", " Paris", "\xC3\xA9", "<|endoftext|>"}) vocab.push_back(t);
    const std::vector<llm::Merge> merges = {{' ', 'P'},     {'a', 'r'},       {'i', 's'},
                                            {kSpaceP, kAr}, {kSpacePar, kIs}, {0xC3, 0xA9}};
    return llm::BpeTokenizer(vocab, merges, {kEndOfText});
  }();
  return tokenizer;
}

// sum_j log p(continuation[j] | everything before it), from one forward over the request alone
// (batch of one, no padding), its last max_position_embeddings + 1 tokens kept.
inline double DirectLoglikelihood(llm::CausalLM& model, const std::vector<llm::TokenId>& context,
                                  const std::vector<llm::TokenId>& continuation) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> all(context.begin(), context.end());
  all.insert(all.end(), continuation.begin(), continuation.end());
  const size_t keep = static_cast<size_t>(model->config.max_position_embeddings) + 1;
  if (all.size() > keep) all.erase(all.begin(), all.end() - keep);
  const auto ids = Longs(all).unsqueeze(0);  // (1, S)
  const auto S = ids.size(1);
  const auto logp = torch::log_softmax(model->forward(ids.narrow(1, 0, S - 1)).to(torch::kFloat64), -1);  // (1, S-1, V)
  const auto per = logp.gather(-1, ids.narrow(1, 1, S - 1).unsqueeze(-1)).squeeze(-1)[0];                 // (S-1,)
  const int64_t m = std::min<int64_t>(continuation.size(), S - 1);
  return per.narrow(0, S - 1 - m, m).sum().item<double>();
}

// n random ids in [3, V): requests of chosen lengths.
inline std::vector<llm::TokenId> RandomIds(int64_t n, int64_t vocab_size) {
  auto t = torch::randint(3, vocab_size, {n}, torch::kLong);
  std::vector<llm::TokenId> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<llm::TokenId>(t[i].item<int64_t>()));
  return out;
}

}  // namespace lesson12
