// Hugging Face model folders: what every stage's final/ is, and what every program can start from -
// ours, or a downloaded LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM (Llama 3.x,
// SmolLM2, Qwen2.5, Qwen3) with its byte-level BPE tokenizer.
//
//   config.json                the architecture and its sizes (LlamaConfig, Qwen2Config, Qwen3Config)
//   model.safetensors          the weights under Hugging Face's names; or, sharded,
//   model.safetensors.index.json + model-00001-of-0000N.safetensors ...  ({"weight_map": {name: file}})
//   generation_config.json     the stop tokens and default sampling
//   tokenizer.json             the tokenizer (lesson 01's tokenizer_json.h reads it)
//   tokenizer_config.json      the special tokens and the chat template (chat_format.h)
//   vocab.json, merges.txt     GPT-2's format of the same tokenizer (ours; transformers' slow tokenizer)
//   special_tokens_map.json, chat_template.jinja   (ours; transformers >= 4.47 reads the template file)
//
// Loading reads each tensor straight into the model's parameter (common/safetensors.h's
// SafetensorsReader) in the dtype asked for, by default the one the file stores: a bf16 model is
// never copied to fp32, and resident memory stays near the weights' size.
//
// Saving writes config.json for the architecture the ModelConfig describes (QK-norm: Qwen3; q/k/v
// biases without o's: Qwen2; otherwise Llama). A model that came from a folder keeps that folder's
// tokenizer files and generation_config.json (they are copied); a model of ours gets them written
// from its tokenizer, with lesson 06's chat template in Jinja. A gated MLP maps onto Llama's
// (hidden_act "silu" for SwiGLU, "gelu" for GeGLU); the plain GELU MLP has no equivalent and is refused.
#pragma once

#include <llm/config/model_config.h>
#include <llm/model/causal_lm.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace llm::cli {

// The architectures this loader reads, as config.json names them.
inline const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"};
  return names;
}

struct HfModel {
  ModelConfig config;
  std::string architecture;  // LlamaForCausalLM | Qwen2ForCausalLM | Qwen3ForCausalLM
  CausalLM model{nullptr};
  BpeTokenizer tokenizer;
  nlohmann::json config_json;        // config.json as read
  nlohmann::json generation_config;  // generation_config.json as read (may be empty)
  nlohmann::json tokenizer_config;   // tokenizer_config.json as read (may be empty)
  std::string chat_template;         // tokenizer_config's chat_template or chat_template.jinja ("" if none)
  std::string dir;
  int64_t weight_bytes = 0;  // of the safetensors files' tensors

  // The ids a plain completion stops at: generation_config.json's, else config.json's eos_token_id.
  std::vector<int64_t> eos_ids() const;
};

struct LoadOptions {
  // The parameters' dtype: "auto" (as the files store them), "float32" (for training: the optimizer
  // needs fp32 weights) or "bfloat16".
  std::string dtype = "float32";
};

// Reads a folder written by save_hf_folder or by transformers' save_pretrained. Errors name the file
// and what is unsupported or missing (an unknown architecture names the supported ones).
HfModel load_hf_folder(const std::string& dir, const LoadOptions& options = {});

struct SaveOptions {
  std::string dtype = "float32";  // float32 | bfloat16 for the weights in model.safetensors
  bool overwrite = false;
  nlohmann::json generation;  // extra generation_config.json keys (temperature, top_k, ...)
  // A folder to take the tokenizer files, generation_config.json and config.json's other keys from
  // (the folder the model was loaded from); empty: write them for a tokenizer of ours.
  std::string source_dir;
};

// Writes a complete folder atomically: into "<dir>.tmp", then renamed.
void save_hf_folder(const std::string& dir, CausalLM& model, const BpeTokenizer& tokenizer,
                    const SaveOptions& options = {});

// config.json <-> ModelConfig. model_config_from_hf_json also says which architecture it read.
nlohmann::json hf_config_json(const ModelConfig& config, const BpeTokenizer& tokenizer, const std::string& dtype);
ModelConfig model_config_from_hf_json(const nlohmann::json& json, const std::string& where,
                                      std::string* architecture = nullptr);
// The architecture config.json gets for a ModelConfig: Qwen3 (QK-norm), Qwen2 (q/k/v biases only) or Llama.
std::string hf_architecture(const ModelConfig& config);

// Lesson 06's chat template written as Jinja, as our folders' tokenizer_config.json carries it.
const std::string& our_chat_template();

// The id of a special token if the tokenizer has it, else -1.
int64_t special_or_none(const BpeTokenizer& tokenizer, const std::string& text);

}  // namespace llm::cli
