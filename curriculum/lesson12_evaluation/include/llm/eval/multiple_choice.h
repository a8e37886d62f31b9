// Lesson 12 - multiple choice by log-likelihood, as lm-evaluation-harness scores it.
//
// Shapes: N requests, each context + continuation tokens; B a batch of them, T its longest.
//
// A question with choices is asked the way a base model can answer without instructions: for each
// choice, how likely is "context + ' ' + choice" as a continuation? The model never generates:
//
//     ll(choice) = sum over the choice's tokens t of log p(t | everything before it)
//     acc        = [argmax_i ll_i == gold]
//     acc_norm   = [argmax_i ll_i / len(choice_i) == gold]     len in characters
//
// Longer choices have more tokens to be unlikely, so raw ll favours short answers; acc_norm divides
// that out. Which length? lm-evaluation-harness' code divides by the number of *characters* of the
// choice string (Python's len); its paper (Biderman et al. 2024) says bytes, and since 2025 the code
// reports that separately as acc_bytes (lm-eval issue #3278). We follow the code: acc_norm by
// characters (Unicode code points), and also report acc_bytes. For ASCII they are the same.
//
// Tokenisation matters as much as the model (lm_eval/api/model.py, _encode_pair): spaces at the
// end of the context move to the start of the continuation, the pair is encoded *jointly*, and the
// continuation is whatever follows the context's own tokens. " Paris" is then one token, as the model
// saw it in training, instead of " " + "Paris". Ties go to the first choice (np.argmax).
// Reference: lm_eval/api/task.py (construct_requests, process_results for multiple_choice),
// lm_eval/models/huggingface.py (_loglikelihood_tokens).
#pragma once

#include <llm/common/todo.h>
#include <llm/model/causal_lm.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llm {

// One log-likelihood request: the context's tokens and the continuation's.
struct ContinuationRequest {
  std::vector<TokenId> context;
  std::vector<TokenId> continuation;
};

// lm-evaluation-harness' _encode_pair: trailing spaces of the context go to the continuation; the
// pair is encoded jointly and split after the context's own encoding.
inline ContinuationRequest encode_pair(const BpeTokenizer& tokenizer, std::string context, std::string continuation) {
  // 1. n = the number of trailing spaces of context; move them to the front of continuation.
  // 2. whole = encode(context + continuation, allow_special = false); ctx = encode(context,
  //    allow_special = false): a special token's text inside a question is scored as the plain text
  //    it is, never turned into a control token. (The tests' texts hold no special tokens, so they
  //    pass either way; the reference passes false.)
  // 3. continuation tokens = whole[len(ctx):]; context tokens = whole[:len(ctx)].
  LLM_TODO("lesson12: encode_pair(): trailing spaces to the continuation, joint encoding, split after the context");
}

// The summed log-probability of each request's continuation, in batches of `batch_size`.
// Sequences longer than the model's context keep their last max_position_embeddings + 1 tokens
// (lm-evaluation-harness truncates from the left); the model sees all but the last token.
inline std::vector<double> continuation_loglikelihoods(CausalLM& model,
                                                       const std::vector<ContinuationRequest>& requests,
                                                       int64_t batch_size = 32) {
  TORCH_CHECK(batch_size > 0, "continuation_loglikelihoods: batch_size must be positive, got ", batch_size);
  for (const auto& r : requests)
    TORCH_CHECK(!r.continuation.empty() && !r.context.empty(),
                "continuation_loglikelihoods: every request needs a context and a non-empty continuation");
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::vector<double> out;
  // For each batch:
  // 1. tokens = (context + continuation), its last max_len + 1 kept; input = tokens[:-1], right-padded
  //    to the batch's longest (right padding needs no mask: causal rows never look right).
  // 2. log_softmax(logits in fp32); the continuation's m tokens are predicted at input positions
  //    len(input) - m .. len(input) - 1; gather log p(token) there and sum.
  LLM_TODO("lesson12: continuation_loglikelihoods(): one forward per batch, summing the continuation's log-probs");
  if (was_training) model->train();
  return out;
}

// The number of Unicode code points of UTF-8 text (Python's len of the str).
inline int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count every byte that starts a character
  return n;
}

// The first index of the largest value (np.argmax's tie rule).
inline int64_t argmax_first(const std::vector<double>& values) {
  TORCH_CHECK(!values.empty(), "argmax_first: no values");
  return std::max_element(values.begin(), values.end()) - values.begin();  // max_element keeps the first
}

struct ChoicePrediction {
  int64_t acc = 0;        // argmax of ll
  int64_t acc_norm = 0;   // argmax of ll / characters
  int64_t acc_bytes = 0;  // argmax of ll / bytes
};

// Predictions from the choices' log-likelihoods and their strings (without the delimiter).
inline ChoicePrediction predict_choice(const std::vector<double>& lls, const std::vector<std::string>& choices) {
  TORCH_CHECK(lls.size() == choices.size() && !lls.empty(), "predict_choice: ", lls.size(), " log-likelihoods for ",
              choices.size(), " choices");
  LLM_TODO("lesson12: predict_choice(): argmax of ll, of ll per character, of ll per byte");
}

struct MultipleChoiceItem {
  std::string context;               // "Q: What is the capital of France?\nA:"
  std::vector<std::string> choices;  // "Paris", "Rome", ...
  int64_t gold = 0;                  // index of the correct choice
};

struct MultipleChoiceResult {
  double acc = 0, acc_norm = 0, acc_bytes = 0;
  int64_t n = 0;
  std::vector<int64_t> predictions;  // acc's prediction per item
};

// Scores every item: one request per choice, "context" + delimiter + choice.
inline MultipleChoiceResult score_multiple_choice(CausalLM& model, const BpeTokenizer& tokenizer,
                                                  const std::vector<MultipleChoiceItem>& items,
                                                  const std::string& delimiter = " ", int64_t batch_size = 32) {
  std::vector<ContinuationRequest> requests;
  for (const auto& item : items) {
    TORCH_CHECK(item.gold >= 0 && item.gold < static_cast<int64_t>(item.choices.size()), "score_multiple_choice: gold ",
                item.gold, " is not an index into ", item.choices.size(), " choices of \"", item.context, "\"");
    for (const auto& choice : item.choices)
      requests.push_back(encode_pair(tokenizer, item.context, delimiter + choice));
  }
  LLM_TODO("lesson12: score_multiple_choice(): the log-likelihoods, a prediction per item, the three accuracies");
}

}  // namespace llm
