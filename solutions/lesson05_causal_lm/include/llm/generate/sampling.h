// Lesson 05 - choosing the next token from the model's logits.
//
// Shapes: B batch, V vocabulary. Every function takes logits (B, V) and returns new logits (B, V),
// except sample_next, which returns the chosen ids (B,). Excluded tokens get -inf, so softmax gives
// them probability 0. The order is Hugging Face's: repetition penalty, temperature, top-k, top-p.
//
//   repetition penalty (Keskar et al. 2019, CTRL): for every token already in the sequence,
//                      logit > 0 -> logit / penalty,  logit < 0 -> logit * penalty
//                      (penalty > 1 makes repeats less likely whatever the logit's sign)
//   temperature        logits / T: T < 1 sharpens the distribution, T > 1 flattens it; T -> 0 is greedy
//   top-k              keep the k highest logits (Fan et al. 2018)
//   top-p (nucleus)    keep the smallest set of most likely tokens whose probability mass reaches p
//                      (Holtzman et al. 2020); the most likely token is always kept
//   greedy             argmax: deterministic, no generator used
//
// Randomness is injected: sample_next takes a torch::Generator, so a seed reproduces a sample.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace llm {

struct SamplingOptions {
  double temperature = 1.0;         // 0 = greedy
  int64_t top_k = 0;                // 0 = off
  double top_p = 1.0;               // 1 = off
  double repetition_penalty = 1.0;  // 1 = off
};

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// previous[b] = the token ids already in sequence b (prompt and generated).
inline torch::Tensor apply_repetition_penalty(const torch::Tensor& logits,
                                              const std::vector<std::vector<int64_t>>& previous, double penalty) {
  // 1. Check penalty > 0 and previous.size() == B.
  // 2. For each row b with previous tokens: s = logits[b].gather(ids); s = where(s < 0, s * penalty,
  //    s / penalty); scatter s back at ids (a token seen twice is penalised once).
  // BEGIN SOLUTION: apply_repetition_penalty(): seen tokens' logits: positive / penalty, negative * penalty
  TORCH_CHECK(penalty > 0, "repetition_penalty must be positive, got ", penalty);
  TORCH_CHECK(logits.dim() == 2 && static_cast<int64_t>(previous.size()) == logits.size(0),
              "apply_repetition_penalty: logits must be (B, V) with one id list per row; got ", logits.sizes(), " and ",
              previous.size(), " lists");
  auto out = logits.clone();
  for (int64_t b = 0; b < out.size(0); ++b) {
    if (previous[b].empty()) continue;
    std::vector<int64_t> seen = previous[b];
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());  // a repeat is penalised once
    auto ids = torch::tensor(seen, torch::kLong);
    auto row = out[b];
    auto s = row.gather(0, ids);
    row.scatter_(0, ids, torch::where(s < 0, s * penalty, s / penalty));
  }
  return out;
  // END SOLUTION
}

inline torch::Tensor apply_temperature(const torch::Tensor& logits, double temperature) {
  // Check temperature > 0 (0 means greedy and never reaches here), naming it and the value
  // ("temperature must be positive here (0 = greedy), got -1"); return logits / temperature.
  // BEGIN SOLUTION: apply_temperature(): logits / T for T > 0
  TORCH_CHECK(temperature > 0, "temperature must be positive here (0 = greedy), got ", temperature);
  return logits / temperature;
  // END SOLUTION
}

inline torch::Tensor top_k_filter(const torch::Tensor& logits, int64_t k) {
  // 1. Check k >= 1, naming it and the value ("top_k must be >= 1 (0 turns it off before this
  //    call), got 0"). If k >= V, return logits unchanged.
  // 2. threshold = the k-th largest logit of each row (topk(k).values[:, k-1], keepdim);
  //    set every logit below it to -inf. (Ties at the threshold are kept.)
  // BEGIN SOLUTION: top_k_filter(): -inf below each row's k-th largest logit
  TORCH_CHECK(k >= 1, "top_k must be >= 1 (0 turns it off before this call), got ", k);
  if (k >= logits.size(-1)) return logits;
  auto threshold = std::get<0>(logits.topk(k, -1)).narrow(-1, k - 1, 1);  // (B, 1)
  return logits.masked_fill(logits < threshold, kNegInf);
  // END SOLUTION
}

inline torch::Tensor top_p_filter(const torch::Tensor& logits, double p) {
  // 1. Check 0 < p <= 1, naming it and the value ("top_p must be in (0, 1], got 1.5").
  // 2. Sort each row descending; probs = softmax(sorted); mass_before = cumsum(probs) - probs.
  // 3. Drop the sorted positions whose mass_before >= p (the set already reached p without them);
  //    the first position has mass_before 0 and always stays.
  // 4. Scatter the drop decisions back to vocabulary order and set those logits to -inf.
  // BEGIN SOLUTION: top_p_filter(): keep the smallest most-likely set whose probability reaches p
  TORCH_CHECK(p > 0 && p <= 1, "top_p must be in (0, 1], got ", p);
  auto [sorted, order] = logits.sort(-1, /*descending=*/true);  // (B, V) each
  auto probs = torch::softmax(sorted.to(torch::kFloat32), -1);
  auto mass_before = probs.cumsum(-1) - probs;  // (B, V)
  auto drop_sorted = mass_before >= p;
  auto drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
  return logits.masked_fill(drop, kNegInf);
  // END SOLUTION
}

// logits (B, V) -> next ids (B,) int64.
inline torch::Tensor sample_next(const torch::Tensor& logits, const SamplingOptions& options,
                                 const std::vector<std::vector<int64_t>>& previous = {},
                                 c10::optional<torch::Generator> generator = c10::nullopt) {
  // 0. Check temperature >= 0, top_k >= 0, 0 < top_p <= 1, naming the setting and the bad value
  //    ("temperature must be >= 0 (0 = greedy), got -1", "top_k must be >= 0 (0 = off), got -1",
  //    "top_p must be in (0, 1] (1 = off), got 1.5"): a top_p of 1.5 must not silently mean "off".
  // 1. If repetition_penalty != 1, apply it (needs `previous`).
  // 2. temperature == 0: return argmax(-1) (greedy).
  // 3. Else: temperature, then top_k if > 0, then top_p if < 1.
  // 4. probs = softmax in float32; torch::multinomial(probs, 1, /*replacement=*/false, generator), squeezed.
  // BEGIN SOLUTION: sample_next(): penalty, then greedy or temperature -> top-k -> top-p -> multinomial
  TORCH_CHECK(logits.dim() == 2, "sample_next: logits must be (B, V), got ", logits.sizes());
  TORCH_CHECK(options.temperature >= 0, "temperature must be >= 0 (0 = greedy), got ", options.temperature);
  TORCH_CHECK(options.top_k >= 0, "top_k must be >= 0 (0 = off), got ", options.top_k);
  TORCH_CHECK(options.top_p > 0 && options.top_p <= 1, "top_p must be in (0, 1] (1 = off), got ", options.top_p);
  auto x = logits.to(torch::kFloat32);
  if (options.repetition_penalty != 1.0) x = apply_repetition_penalty(x, previous, options.repetition_penalty);
  if (options.temperature == 0) return x.argmax(-1);
  x = apply_temperature(x, options.temperature);
  if (options.top_k > 0) x = top_k_filter(x, options.top_k);
  if (options.top_p < 1.0) x = top_p_filter(x, options.top_p);
  auto probs = torch::softmax(x, -1);
  return torch::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(-1);
  // END SOLUTION
}

}  // namespace llm
