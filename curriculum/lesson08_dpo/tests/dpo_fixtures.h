// Shared by lesson 08's suites: a tiny CausalLM, a hand-made preference batch in TRL's layout
// (lesson 06's preference.h: all chosen rows, then all rejected, right-padded), and the sequence
// log-probability of one unpadded row computed the slow, obvious way, as the independent reference
// for everything that batches, shifts and masks.
#pragma once

#include <llm/common/testing.h>
#include <llm/config/model_config.h>
#include <llm/data/preference.h>
#include <llm/model/causal_lm.h>
#include <llm/train/optimizer.h>
#include <llm/train/trainer.h>

#include <cmath>
#include <string>
#include <vector>

namespace lesson08 {

class DpoTest : public llm::testing::SeededTest {};

constexpr int64_t kPad = 0, kEnd = 2;  // the pad and <|end|> ids of the hand-made batches

// Small enough that a forward pass takes a millisecond, large enough to have GQA and two layers.
inline llm::ModelConfig TinyConfig(double dropout = 0.0) {
  llm::ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.multiple_of = 8;
  c.dropout = dropout;
  return c;
}

inline torch::Tensor F32(const std::vector<float>& values) {
  return torch::tensor(values, torch::kFloat32);
}

// Pairs of different lengths, so the batch has padding in chosen and rejected rows.
inline std::vector<llm::TokenizedPair> Pairs() {
  return {
      {{5, 6, 7}, {8, 9, kEnd}, {10, kEnd}},
      {{5, 11}, {12, kEnd}, {13, 14, 15, kEnd}},
      {{20, 21, 22, 23}, {24, kEnd}, {25, 26, kEnd}},
  };
}

// TRL's layout, built here by hand (not with collate_preference): rows prompt + chosen for every
// pair, then prompt + rejected, right-padded with kPad; completion_mask on the completion ids
// (the end token included), attention_mask on every real id.
inline llm::PreferenceBatch Batch(const std::vector<llm::TokenizedPair>& pairs) {
  const int64_t P = static_cast<int64_t>(pairs.size());
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> prompt_lengths;
  for (int half = 0; half < 2; ++half) {
    for (const auto& p : pairs) {
      auto row = p.prompt;
      const auto& answer = half == 0 ? p.chosen : p.rejected;
      row.insert(row.end(), answer.begin(), answer.end());
      rows.push_back(row);
      prompt_lengths.push_back(static_cast<int64_t>(p.prompt.size()));
    }
  }
  int64_t T = 0;
  for (const auto& r : rows) T = std::max<int64_t>(T, r.size());
  auto ids = torch::full({2 * P, T}, kPad, torch::kLong);
  auto completion = torch::zeros({2 * P, T}, torch::kBool);
  auto attention = torch::zeros({2 * P, T}, torch::kBool);
  for (int64_t i = 0; i < 2 * P; ++i) {
    for (int64_t t = 0; t < static_cast<int64_t>(rows[i].size()); ++t) {
      ids[i][t] = rows[i][t];
      attention[i][t] = true;
      completion[i][t] = t >= prompt_lengths[i];
    }
  }
  return {ids, completion, attention};
}

// log pi(completion | prompt) of one unpadded row: a forward pass over prompt + completion alone
// (batch of 1, no padding, no mask), then the sum, token by token, of
// log_softmax(logits[t - 1])[ids[t]] over the completion's positions. In float64.
inline double RowLogprob(llm::CausalLM& model, const std::vector<int64_t>& prompt,
                         const std::vector<int64_t>& completion) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> row = prompt;
  row.insert(row.end(), completion.begin(), completion.end());
  auto ids = torch::tensor(row, torch::kLong).unsqueeze(0);                       // (1, L)
  auto logp = torch::log_softmax(model(ids).to(torch::kFloat64), -1).squeeze(0);  // (L, V)
  double sum = 0;
  for (size_t t = prompt.size(); t < row.size(); ++t) sum += logp[t - 1][row[t]].item<double>();
  return sum;
}

// Every pair's (chosen, rejected) log-probs by RowLogprob.
struct PairRef {
  std::vector<double> chosen, rejected;
};
inline PairRef RowLogprobs(llm::CausalLM& model, const std::vector<llm::TokenizedPair>& pairs) {
  PairRef r;
  for (const auto& p : pairs) {
    r.chosen.push_back(RowLogprob(model, p.prompt, p.chosen));
    r.rejected.push_back(RowLogprob(model, p.prompt, p.rejected));
  }
  return r;
}

// -log sigmoid(z), written out in double.
inline double NegLogSigmoid(double z) {
  return std::log1p(std::exp(-z));
}

// A model with the same weights as `from` (the reference starts as a copy of the policy).
inline llm::CausalLM Copy(llm::CausalLM& from) {
  llm::CausalLM to(from->config);
  llm::testing::CopyParameters(*from, *to);
  return to;
}

inline std::vector<llm::ParamGroup> AllParams(torch::nn::Module& module, double lr) {
  llm::ParamGroup g{"all", {}, {}, lr, 0.0};
  for (auto& item : module.named_parameters()) {
    g.names.push_back(item.key());
    g.params.push_back(item.value());
  }
  return {g};
}

inline llm::TrainerOptions ConstantLr(double lr) {
  llm::TrainerOptions o;
  o.grad_clip = 1.0;
  o.schedule.kind = "constant";
  o.schedule.peak_lr = lr;
  o.schedule.min_lr = 0;
  o.schedule.warmup_steps = 0;
  o.schedule.total_steps = 100;
  return o;
}

}  // namespace lesson08
