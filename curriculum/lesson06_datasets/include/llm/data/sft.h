// Lesson 06 - supervised fine-tuning examples: a chat template, prompt masking, padding.
//
// Shapes: B examples per batch, T the longest example in the batch (minus one, see below).
//
// A conversation is a list of messages, each a role ("user" or "assistant") and its text. The
// chat template turns it into tokens with special tokens around every message:
//
//     <|user|> What is 2 + 3? <|end|> <|assistant|> 5 <|end|>
//     \____________ prompt: not trained __________/ \_ trained _/
//
// (the text between special tokens is BPE-encoded; the spaces above are for reading). The model
// is trained only on what the assistant says - its text and its <|end|> - so it learns to answer,
// not to imitate questions, and it learns to *stop*: the assistant's end token is trained
// (nanochat's render_conversation masks the same way). <|assistant|> itself is part of the prompt:
// at inference time the program writes it, and the model writes the rest.
//
// Masking is by position, while the tokens are rendered: each token knows whether the assistant
// wrote it. Masking by token value instead ("labels[labels == pad_id] = -100") is a known bug: with
// pad = eos every end token is masked and the model never learns to stop (transformers#23530,
// trl#976, open-r1#494).
//
// Truncation keeps the start (TRL's truncation_mode="keep_start"); an example left with no trained
// token is dropped (TRL drops examples whose labels are all -100), because a batch of only ignored
// targets has a mean loss of 0/0 = NaN (nanochat#590).
//
// The batch is what a causal LM trains on: inputs ids[:-1] and targets ids[1:], the target -100
// wherever the token it would predict is not trained. Rows are padded on the right to the longest
// example in the batch (dynamic padding), with attention_mask true on real tokens: the
// key_padding_mask of lessons 03-05.
#pragma once

#include <llm/common/todo.h>
#include <llm/data/pretrain_batches.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

struct Message {
  std::string role;  // "user" or "assistant"
  std::string content;
};
using Conversation = std::vector<Message>;

// The special tokens of the template, by id, and how to encode ordinary text.
struct ChatTemplate {
  static constexpr const char* kUser = "<|user|>";
  static constexpr const char* kAssistant = "<|assistant|>";
  static constexpr const char* kEnd = "<|end|>";
  static constexpr const char* kEndOfText = "<|endoftext|>";

  TokenId user = -1, assistant = -1, end = -1;
  TokenId pad = -1;  // fills the right of shorter rows; never trained, never attended

  // The ids of the four special tokens in `tokenizer` (it must have them: the pipeline's tokenizer
  // is trained with them). pad = <|endoftext|>.
  static ChatTemplate from(const BpeTokenizer& tokenizer) {
    ChatTemplate t;
    t.user = tokenizer.special_id(kUser);
    t.assistant = tokenizer.special_id(kAssistant);
    t.end = tokenizer.special_id(kEnd);
    t.pad = tokenizer.special_id(kEndOfText);
    return t;
  }
};

struct TokenizedExample {
  std::vector<int64_t> ids;
  std::vector<uint8_t> trained;  // trained[i] = 1 where the assistant wrote ids[i] (its <|end|> included)
};

// Renders a conversation with the template and marks the assistant's tokens.
//   user message       <|user|> encode(content) <|end|>                 all untrained
//   assistant message  <|assistant|> encode(content) <|end|>            <|assistant|> untrained,
//                                                                       content and <|end|> trained
// Any other role is a std::invalid_argument naming the message, its role and the valid ones:
// "message 1 has role 'system'; valid roles: user, assistant". Text is encoded with
// allow_special = false, so a user who types "<|end|>" cannot forge a turn boundary.
inline TokenizedExample render_conversation(const BpeTokenizer& tokenizer, const ChatTemplate& chat,
                                            const Conversation& conversation) {
  // For each message: push the role's start token (trained 0); push encode(content, false) with
  // trained = 1 for the assistant, 0 for the user; push chat.end with the same flag.
  LLM_TODO("lesson06: render_conversation(): special tokens around each message; the assistant's text and end token trained");
}

// The prompt a model answers at inference time: the conversation so far, then <|assistant|>.
inline std::vector<int64_t> render_prompt(const BpeTokenizer& tokenizer, const ChatTemplate& chat,
                                          const Conversation& conversation) {
  auto ids = render_conversation(tokenizer, chat, conversation).ids;
  ids.push_back(chat.assistant);
  return ids;
}

// Keeps the first max_length tokens; returns nothing when no trained token is left (or none was
// there to begin with).
inline std::optional<TokenizedExample> truncate_example(TokenizedExample example, int64_t max_length) {
  // 1. Check max_length >= 2 (an input and a target): "max_length must be >= 2, got 1".
  // 2. If longer, keep ids[:max_length] and trained[:max_length] (keep_start).
  // 3. If no position from 1 on is trained, return std::nullopt: position 0 is never a target.
  LLM_TODO("lesson06: truncate_example(): keep the start; drop an example with no trained target");
}

struct SftBatch {
  torch::Tensor input_ids;       // (B, T) int64, right-padded with pad
  torch::Tensor targets;         // (B, T) int64, kIgnoreTarget where not trained or padding
  torch::Tensor attention_mask;  // (B, T) bool, true on real tokens
  int64_t num_targets() const { return targets.ne(kIgnoreTarget).sum().item<int64_t>(); }
};

// Pads a batch of examples to its longest one. For an example of n ids, row b holds
//   input_ids[b, t] = ids[t]                                  t < n - 1, then pad
//   targets[b, t]   = trained[t + 1] ? ids[t + 1] : -100       t < n - 1, then -100
//   attention_mask  = true for t < n - 1
// and T = max(n) - 1.
inline SftBatch collate_sft(const std::vector<TokenizedExample>& examples, int64_t pad_id) {
  // 1. Check the batch is not empty ("collate_sft: an empty batch") and every example has >= 2 ids
  //    and as many flags as ids, naming the example by its index: "collate_sft: example 1 has 1 ids
  //    and 1 flags; need at least 2 ids and one flag per id".
  // 2. T = longest - 1; allocate input_ids full of pad_id, targets full of kIgnoreTarget,
  //    attention_mask false, all (B, T).
  // 3. Fill row b from example b as above.
  LLM_TODO("lesson06: collate_sft(): inputs ids[:-1], targets ids[1:] where trained, right-padded to the longest");
}

}  // namespace llm
