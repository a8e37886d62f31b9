// What a conversation looks like to a model: lesson 06's template for the models this project
// trains, or a downloaded model's own chat template, which transformers renders with Jinja
// (tokenizer_config.json's chat_template; PreTrainedTokenizerBase.apply_chat_template).
//
// There is no Jinja engine here. A template is recognised as one of the families below by the
// markers it writes, and the family is rendered in C++, byte for byte as the real templates render
// (the tests compare with @huggingface/jinja rendering the templates that Llama 3, Llama 3.2,
// Qwen2.5, Qwen3 and SmolLM2 ship). A template that is none of them is an error naming the
// families, never a silent fallback to another format.
//
//   ours      <|user|>Hi<|end|><|assistant|>Hello!<|end|>                 (lesson 06, sft.h)
//   llama3    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
//             <|start_header_id|>assistant<|end_header_id|>\n\n             (Llama 3.0: message | trim)
//   llama3.1  the same after a system block that always comes first:
//             <|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n
//             Today Date: 26 Jul 2024\n\n{system message}<|eot_id|>        (Llama 3.1, 3.2, 3.3)
//   chatml    <|im_start|>system\nYou are ...<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n
//             <|im_start|>assistant\n    (Qwen2.5 and SmolLM2: a default system message when none is given)
//   qwen3     ChatML without a default system message; the assistant turns after the last user
//             message carry a <think>...</think> block, an empty one if there is no reasoning;
//             enable_thinking = false appends "<think>\n\n</think>\n\n" to the generation prompt.
//
// Rendered text is tokenized with special tokens parsed and no BOS added (the templates write
// their own), as apply_chat_template(tokenize=True) does. Like transformers, vLLM and llama.cpp's
// server, this means a user who types "<|im_end|>" writes that token; only lesson 06's template,
// which encodes message text without special tokens, prevents it. Tools and tool calls are not
// rendered: a conversation with a "tool" role is an error.
#pragma once

#include <llm/cli/hf_folder.h>
#include <llm/data/sft.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace llm::cli {

// A message as the OpenAI API and transformers know it: role, content, and (Qwen3) the reasoning.
struct ChatTurn {
  std::string role;  // system | user | assistant
  std::string content;
  std::optional<std::string> reasoning_content;
};

struct ChatRenderOptions {
  bool add_generation_prompt = true;
  std::optional<bool> enable_thinking;  // Qwen3's switch; unset: the template's default (thinking on)
  std::string date_string;              // Llama 3.1/3.2's "Today Date"; empty: the template's default
};

class ChatFormat {
 public:
  enum class Family { kOurs, kLlama3, kLlama31, kChatml, kQwen3 };

  // The format of a loaded model folder. Throws UsageError when it has no chat template or one of
  // no known family, naming the families this program renders.
  static ChatFormat of(const HfModel& model);
  // The same from the parts (tests): a template's text, the tokenizer, tokenizer_config.json.
  // `eos_ids` (HfModel::eos_ids) stop a reply too.
  static ChatFormat recognize(const std::string& chat_template, const BpeTokenizer& tokenizer,
                              const nlohmann::json& tokenizer_config, const std::string& where,
                              const std::vector<int64_t>& eos_ids = {});
  static std::string supported_families();

  Family family() const { return family_; }
  std::string name() const;
  bool has_system_role() const { return family_ != Family::kOurs; }
  bool has_thinking_switch() const { return family_ == Family::kQwen3; }

  // The text the model's template renders (the HF families; lesson 06's template as its tokens' text).
  std::string render(const std::vector<ChatTurn>& turns, const ChatRenderOptions& options = {}) const;
  // The prompt that asks the model for the next assistant turn: render(.., add_generation_prompt), tokenized.
  std::vector<int64_t> prompt(const BpeTokenizer& tokenizer, const std::vector<ChatTurn>& turns,
                              const ChatRenderOptions& options = {}) const;
  // A training example (lesson 06's TokenizedExample): the whole conversation tokenized, with
  // trained = 1 on what each assistant turn writes after its generation prompt, its end-of-turn
  // token included (lesson 06's masking, for any template).
  TokenizedExample example(const BpeTokenizer& tokenizer, const std::vector<ChatTurn>& turns,
                           const ChatRenderOptions& options = {}) const;
  // What an assistant turn `answer` adds to prompt(turns): its ids up to and including the end-of-turn token.
  std::vector<int64_t> completion(const BpeTokenizer& tokenizer, const std::vector<ChatTurn>& turns,
                                  const std::string& answer, const ChatRenderOptions& options = {}) const;

  int64_t end_id() const { return end_id_; }  // the end-of-turn token: <|end|>, <|eot_id|>, <|im_end|>
  const std::vector<int64_t>& stop_ids() const { return stop_ids_; }  // end_id and the model's eos ids
  int64_t pad_id() const { return pad_id_; }
  const ChatTemplate& ours() const { return ours_; }  // kOurs: lesson 06's token ids

 private:
  Family family_ = Family::kOurs;
  bool guarded_generation_prompt_ = true;      // llama3 (3.0): the template checks add_generation_prompt
  bool today_by_default_ = false;              // llama3.1 (3.2's template): strftime_now, else 26 Jul 2024
  std::optional<std::string> default_system_;  // chatml: the system message when none is given
  std::string bos_;                            // the template's bos_token text (llama3)
  std::string end_text_;                       // end_id's text
  ChatTemplate ours_;                          // kOurs: lesson 06's token ids
  int64_t end_id_ = -1, pad_id_ = 0;
  std::vector<int64_t> stop_ids_;
};

// Python's str.isspace() (transformers renders with Python's Jinja, where "| trim" is str.strip()).
bool python_isspace(uint32_t codepoint);
std::string python_strip(const std::string& text);

}  // namespace llm::cli
