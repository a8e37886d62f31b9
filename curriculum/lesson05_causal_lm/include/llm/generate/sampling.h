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
  LLM_TODO("lesson05: apply_repetition_penalty(): seen tokens' logits: positive / penalty, negative * penalty");
}

inline torch::Tensor apply_temperature(const torch::Tensor& logits, double temperature) {
  // Check temperature > 0 (0 means greedy and never reaches here), naming it and the value
  // ("temperature must be positive here (0 = greedy), got -1"); return logits / temperature.
  LLM_TODO("lesson05: apply_temperature(): logits / T for T > 0");
}

inline torch::Tensor top_k_filter(const torch::Tensor& logits, int64_t k) {
  // 1. Check k >= 1, naming it and the value ("top_k must be >= 1 (0 turns it off before this
  //    call), got 0"). If k >= V, return logits unchanged.
  // 2. threshold = the k-th largest logit of each row (topk(k).values[:, k-1], keepdim);
  //    set every logit below it to -inf. (Ties at the threshold are kept.)
  LLM_TODO("lesson05: top_k_filter(): -inf below each row's k-th largest logit");
}

inline torch::Tensor top_p_filter(const torch::Tensor& logits, double p) {
  // 1. Check 0 < p <= 1, naming it and the value ("top_p must be in (0, 1], got 1.5").
  // 2. Sort each row descending; probs = softmax(sorted); mass_before = cumsum(probs) - probs.
  // 3. Drop the sorted positions whose mass_before >= p (the set already reached p without them);
  //    the first position has mass_before 0 and always stays.
  // 4. Scatter the drop decisions back to vocabulary order and set those logits to -inf.
  LLM_TODO("lesson05: top_p_filter(): keep the smallest most-likely set whose probability reaches p");
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
  LLM_TODO("lesson05: sample_next(): penalty, then greedy or temperature -> top-k -> top-p -> multinomial");
}

}  // namespace llm
