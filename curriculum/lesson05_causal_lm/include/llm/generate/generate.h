// Lesson 05 - autoregressive generation: prompts in, continuations out.
//
// Shapes: B prompts, P the longest prompt, N new tokens, V vocabulary.
//
//   1. Left-pad the prompts to P with pad_id, and mark the padding in a (B, P) mask. Left, so the
//      last column is every prompt's last real token: one forward pass predicts every row's next one.
//      Positions keep counting from the padding, but RoPE scores depend only on *relative* position
//      (lesson 02), so a padded prompt is attended exactly like an unpadded one.
//   2. Prefill: one forward pass over (B, P) fills the KV cache; only its last position's logits are
//      needed (logits_to_keep = 1: the output layer runs on one position, not P).
//   3. Repeat up to max_new_tokens times: pick the next token (sampling.h) for every row; append
//      it; a row that produced a stop token is finished (the stop token is kept as its last token,
//      as Hugging Face does); stop when every row is; feed the B new tokens (B, 1) at offset P + step.
//      Before min_new_tokens, stop tokens get -inf so they cannot be chosen.
//   Without the cache (use_cache = false), step 3 re-runs the whole sequence each time: the same
//   result, O(N) times slower, which is what the cache is for.
#pragma once

#include <llm/common/todo.h>
#include <llm/generate/sampling.h>
#include <llm/model/causal_lm.h>
#include <llm/model/kv_cache.h>

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <vector>

namespace llm {

struct GenerationConfig {
  int64_t max_new_tokens = 64;
  int64_t min_new_tokens = 0;  // stop tokens are suppressed until this many are generated
  SamplingOptions sampling;    // temperature 0 = greedy
  std::vector<int64_t> stop_tokens;
  bool use_cache = true;
  int64_t pad_id = 0;  // fills the left of shorter prompts; never attended to
  // Called with (row, token) for every generated token the moment it is chosen, stop tokens
  // included: streaming output (llm generate, llm chat, the server) prints as the model writes.
  std::function<void(size_t, int64_t)> on_token;
};

// Returns, for every prompt, the generated tokens (without the prompt).
inline std::vector<std::vector<int64_t>> generate(CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                                  const GenerationConfig& config,
                                                  c10::optional<torch::Generator> generator = c10::nullopt) {
  // 0. Check, naming the numbers; the tests look for the words of these messages:
  //      at least one prompt: "generate: no prompts given";
  //      none empty, naming its index: "generate: prompt 0 is empty";
  //      0 <= min_new_tokens <= max_new_tokens, naming both values:
  //        "generate: need 0 <= min_new_tokens (3) <= max_new_tokens (2)";
  //      every prompt, stop and pad token id in [0, V), saying which kind of id, the id and the
  //        range: "generate: prompt token id 99 is outside the vocabulary 0..63", and the same
  //        with "stop token id 64" and "pad token id";
  //      P + max_new_tokens <= max_position_embeddings (Hugging Face's convention: prompt plus new
  //        tokens must fit the model), naming all three: "generate: the longest prompt (4 tokens)
  //        + max_new_tokens (61) exceeds max_position_embeddings 64".
  // 1. NoGradGuard; remember model->is_training() and switch to eval(); restore it at the end.
  // 2. Build ids (B, P) left-padded with pad_id and mask (B, P), true on real tokens (when no
  //    prompt is shorter than P, pass no mask at all: an undefined tensor).
  // 3. With use_cache: KVCache cache(config of the model, B, P + max_new_tokens); logits =
  //    model->forward(ids, 0, mask, &cache, {}, /*logits_to_keep=*/1), the cache in the model's dtype.
  //    Without: logits = model->forward(ids, 0, mask, nullptr, {}, 1).
  // 4. For step = 0 .. max_new_tokens - 1:
  //      last = logits[:, -1]                                                   (B, V)
  //      if step < min_new_tokens: last[:, stop_tokens] = -inf
  //      next = sample_next(last, sampling, history, generator)                (B,)
  //      for every unfinished row: append next[b] to its output and history, call on_token(b, next[b])
  //      if it is set; finished if a stop token
  //      if every row is finished: stop
  //      mask = cat(mask, ones (B, 1))  (if there is a mask)
  //      with the cache: logits = model(next.view({B, 1}), P + step, mask, &cache)
  //      without:        ids = cat(ids, next.view({B, 1})); logits = model->forward(ids, 0, mask, nullptr, {}, 1)
  LLM_TODO("lesson05: generate(): left-pad, prefill (with the KV cache), then sample one token at a time until stop");
}

}  // namespace llm
