// Lesson 06 - preference pairs for DPO (lesson 08): one prompt, a chosen and a rejected answer.
//
// Shapes: P pairs per batch, T the longest prompt + completion in the batch.
//
// DPO compares the log-probability of two completions of the *same* prompt, so both sequences
// must start with exactly the same prompt ids: the prompt is tokenized once and each completion is
// appended to it.
//
//     prompt ids      <|user|> ... <|end|> <|assistant|>          (render_prompt, sft.h)
//     chosen ids      encode(chosen) <|end|>                       the end token is part of the answer
//     rejected ids    encode(rejected) <|end|>
//
// (TRL-classic tokenized prompt and completion separately, TRL-1.x tokenizes prompt + completion
// together and cuts at the prompt's length, warning when BPE merged across the boundary. With a
// special token closing the prompt no merge can cross it, so the two agree here.)
//
// A batch is TRL's DataCollatorForPreference layout: 2P rows, all chosen first, then all rejected,
//
//     input_ids        [prompt_0 + chosen_0; ...; prompt_{P-1} + chosen_{P-1};
//                       prompt_0 + rejected_0; ...; prompt_{P-1} + rejected_{P-1}]   right-padded
//     completion_mask  1 on completion positions, 0 on the prompt and on padding
//     attention_mask   1 on real tokens
//
// so one forward pass scores both, and logits.chunk(2) separates them. The masks are aligned with
// input_ids (unshifted): the model's prediction of position t comes from logits[t - 1].
//
// Truncation follows TRL-1.x: prompt + completion is cut to max_length keeping the start, and a
// pair whose prompt alone reaches max_length is dropped (no completion token would survive).
#pragma once

#include <llm/common/todo.h>
#include <llm/data/sft.h>

#include <torch/torch.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

struct PreferenceExample {
  std::string prompt;  // the user's message
  std::string chosen;  // the preferred assistant reply
  std::string rejected;
};

struct TokenizedPair {
  std::vector<int64_t> prompt;    // shared by both sequences
  std::vector<int64_t> chosen;    // completion ids, ending with <|end|>
  std::vector<int64_t> rejected;  // likewise
};

// Tokenizes a pair with the chat template. Returns nothing if the prompt alone has max_length
// tokens or more; otherwise each completion is cut so that prompt + completion <= max_length.
inline std::optional<TokenizedPair> tokenize_pair(const BpeTokenizer& tokenizer, const ChatTemplate& chat,
                                                  const PreferenceExample& example, int64_t max_length) {
  // 1. prompt = render_prompt(tokenizer, chat, {{"user", example.prompt}}).
  // 2. If prompt.size() >= max_length: return std::nullopt.
  // 3. chosen = encode(example.chosen, allow_special = false) + [chat.end]; rejected likewise.
  // 4. Cut each completion to max_length - prompt.size() ids (keep the start).
  // BEGIN SOLUTION: tokenize_pair(): one prompt, two completions ending in <|end|>, cut to max_length
  if (max_length < 2) throw std::invalid_argument("max_length must be >= 2, got " + std::to_string(max_length));
  TokenizedPair pair;
  pair.prompt = render_prompt(tokenizer, chat, {{"user", example.prompt}});
  if (static_cast<int64_t>(pair.prompt.size()) >= max_length) return std::nullopt;
  const size_t room = static_cast<size_t>(max_length) - pair.prompt.size();
  auto completion = [&](const std::string& text) {
    std::vector<int64_t> ids;
    for (TokenId id : tokenizer.encode(text, /*allow_special=*/false)) ids.push_back(id);
    ids.push_back(chat.end);
    if (ids.size() > room) ids.resize(room);
    return ids;
  };
  pair.chosen = completion(example.chosen);
  pair.rejected = completion(example.rejected);
  return pair;
  // END SOLUTION
}

struct PreferenceBatch {
  torch::Tensor input_ids;        // (2P, T) int64: P chosen rows, then P rejected rows
  torch::Tensor completion_mask;  // (2P, T) bool
  torch::Tensor attention_mask;   // (2P, T) bool
  int64_t num_pairs() const { return input_ids.size(0) / 2; }
};

// TRL's layout (see the top of the file), right-padded with pad_id to the longest row.
inline PreferenceBatch collate_preference(const std::vector<TokenizedPair>& pairs, int64_t pad_id) {
  // 1. Check the batch is not empty ("collate_preference: an empty batch") and no completion is empty
  //    (a completion always has its end token), naming the pair by its index: "collate_preference:
  //    pair 1 has an empty completion".
  // 2. Rows: for each pair, prompt + chosen; then for each pair, prompt + rejected.
  // 3. T = the longest row; input_ids full of pad_id, both masks false; fill each row, marking
  //    completion_mask on its completion positions and attention_mask on all its positions.
  // BEGIN SOLUTION: collate_preference(): [all chosen; all rejected] rows, right-padded, with completion masks
  if (pairs.empty()) throw std::invalid_argument("collate_preference: an empty batch");
  const int64_t P = static_cast<int64_t>(pairs.size());
  int64_t T = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs[i].chosen.empty() || pairs[i].rejected.empty()) {
      throw std::invalid_argument("collate_preference: pair " + std::to_string(i) + " has an empty completion");
    }
    T = std::max<int64_t>(T, pairs[i].prompt.size() + std::max(pairs[i].chosen.size(), pairs[i].rejected.size()));
  }
  auto ids = torch::full({2 * P, T}, pad_id, torch::kLong);
  auto completion = torch::zeros({2 * P, T}, torch::kBool);
  auto attention = torch::zeros({2 * P, T}, torch::kBool);
  auto in = ids.accessor<int64_t, 2>();
  auto cm = completion.accessor<bool, 2>();
  auto am = attention.accessor<bool, 2>();
  auto fill = [&](int64_t row, const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer) {
    int64_t t = 0;
    for (int64_t id : prompt) in[row][t] = id, am[row][t] = true, ++t;
    for (int64_t id : answer) in[row][t] = id, am[row][t] = true, cm[row][t] = true, ++t;
  };
  for (int64_t i = 0; i < P; ++i) {
    fill(i, pairs[i].prompt, pairs[i].chosen);
    fill(P + i, pairs[i].prompt, pairs[i].rejected);
  }
  return {ids, completion, attention};
  // END SOLUTION
}

}  // namespace llm
