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
  // BEGIN SOLUTION: generate(): left-pad, prefill (with the KV cache), then sample one token at a time until stop
  TORCH_CHECK(!prompts.empty(), "generate: no prompts given");
  for (size_t b = 0; b < prompts.size(); ++b) TORCH_CHECK(!prompts[b].empty(), "generate: prompt ", b, " is empty");
  TORCH_CHECK(
      config.max_new_tokens >= 0 && config.min_new_tokens >= 0 && config.min_new_tokens <= config.max_new_tokens,
      "generate: need 0 <= min_new_tokens (", config.min_new_tokens, ") <= max_new_tokens (", config.max_new_tokens,
      ")");
  const int64_t V = model->config.vocab_size;
  auto check_id = [&](int64_t id, const char* what) {
    TORCH_CHECK(id >= 0 && id < V, "generate: ", what, " token id ", id, " is outside the vocabulary 0..", V - 1);
  };
  for (const auto& prompt : prompts) {
    for (int64_t id : prompt) check_id(id, "prompt");
  }
  for (int64_t id : config.stop_tokens) check_id(id, "stop");
  check_id(config.pad_id, "pad");
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t P = 0;
  for (const auto& prompt : prompts) P = std::max<int64_t>(P, static_cast<int64_t>(prompt.size()));
  const int64_t limit = model->config.max_position_embeddings;
  TORCH_CHECK(P + config.max_new_tokens <= limit, "generate: the longest prompt (", P, " tokens) + max_new_tokens (",
              config.max_new_tokens, ") exceeds max_position_embeddings ", limit);

  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();

  auto ids = torch::full({B, P}, config.pad_id, torch::kLong);
  auto mask = torch::zeros({B, P}, torch::kBool);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size());
    ids[b].narrow(0, P - n, n).copy_(torch::tensor(prompts[b], torch::kLong));
    mask[b].narrow(0, P - n, n).fill_(true);
  }
  std::vector<std::vector<int64_t>> outputs(B), history(prompts.begin(), prompts.end());
  std::vector<bool> finished(B, false);
  c10::optional<KVCache> cache;
  if (config.use_cache) {
    const auto dtype = model->parameters().front().scalar_type();  // a bf16 model gets a bf16 cache
    cache.emplace(model->config, B, P + config.max_new_tokens, dtype);
  }
  // Equal-length prompts need no padding mask at all (it would only cost time at every step).
  bool padded = false;
  for (const auto& prompt : prompts) padded = padded || static_cast<int64_t>(prompt.size()) < P;
  if (!padded) mask = torch::Tensor();
  auto logits = model->forward(ids, 0, mask, cache ? &*cache : nullptr, {}, /*logits_to_keep=*/1);  // (B, 1, V)
  auto stops = torch::tensor(config.stop_tokens, torch::kLong);

  for (int64_t step = 0; step < config.max_new_tokens; ++step) {
    auto last = logits.select(1, logits.size(1) - 1).clone();  // (B, V)
    if (step < config.min_new_tokens && !config.stop_tokens.empty()) last.index_fill_(1, stops, kNegInf);
    auto next = sample_next(last, config.sampling, history, generator);  // (B,)
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (finished[b]) continue;
      const int64_t token = next[b].item<int64_t>();
      outputs[b].push_back(token);
      history[b].push_back(token);
      if (config.on_token) config.on_token(static_cast<size_t>(b), token);
      finished[b] = std::find(config.stop_tokens.begin(), config.stop_tokens.end(), token) != config.stop_tokens.end();
      all_done = all_done && finished[b];
    }
    if (all_done || step + 1 == config.max_new_tokens) break;
    if (padded) mask = torch::cat({mask, torch::ones({B, 1}, torch::kBool)}, 1);
    if (cache) {
      logits = model(next.view({B, 1}), P + step, mask, &*cache);  // (B, 1, V)
    } else {
      ids = torch::cat({ids, next.view({B, 1})}, 1);
      logits = model->forward(ids, 0, mask, nullptr, {}, 1);  // (B, 1, V)
    }
  }
  model->train(was_training);
  return outputs;
  // END SOLUTION
}

}  // namespace llm
