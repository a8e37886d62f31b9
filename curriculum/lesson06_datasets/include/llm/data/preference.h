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
  LLM_TODO("lesson06: tokenize_pair(): one prompt, two completions ending in <|end|>, cut to max_length");
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
  LLM_TODO("lesson06: collate_preference(): [all chosen; all rejected] rows, right-padded, with completion masks");
}

}  // namespace llm
