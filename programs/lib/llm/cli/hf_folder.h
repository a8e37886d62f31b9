// Hugging Face model folders: what every stage's final/ is, and what every stage and `llm generate`
// can start from - ours or any LlamaForCausalLM folder with a GPT-2-style byte-level BPE tokenizer.
//
//   model.safetensors          the weights under Hugging Face's names, __metadata__ {"format": "pt"};
//                              a tied lm_head is stored once, as model.embed_tokens.weight
//   config.json                LlamaConfig: architectures, model_type "llama", the sizes, rope_theta
//                              (and transformers 5's rope_parameters), rms_norm_eps, tie_word_embeddings,
//                              hidden_act, bos/eos/pad ids, torch_dtype
//   generation_config.json     the stop tokens and default sampling, so model.generate() stops
//   vocab.json, merges.txt     GPT-2's files ("#version: 0.2" first: the slow tokenizer drops line 1)
//   tokenizer.json             the same as a fast tokenizer (AutoTokenizer prefers it)
//   tokenizer_config.json      GPT2Tokenizer, the special tokens, model_max_length, the chat template
//   special_tokens_map.json    the special tokens again
//   chat_template.jinja        the chat template (transformers >= 4.47 reads it)
//
// (research: pipeline.md, sections 3.4 and 3.5.) A gated MLP maps onto Llama's (hidden_act "silu"
// for SwiGLU, "gelu" for GeGLU); the plain GELU MLP has no Llama equivalent and is refused.
#pragma once

#include <llm/config/model_config.h>
#include <llm/model/causal_lm.h>
#include <llm/tokenizer/bpe_tokenizer.h>

#include <nlohmann/json.hpp>

#include <string>

namespace llm::cli {

struct HfModel {
  ModelConfig config;
  CausalLM model{nullptr};
  BpeTokenizer tokenizer;
  nlohmann::json generation_config;  // as read (may be empty)
  std::string dir;
};

struct SaveOptions {
  std::string dtype = "float32";  // float32 | bfloat16 for the weights in model.safetensors
  bool overwrite = false;
  nlohmann::json generation;  // extra generation_config.json keys (temperature, top_k, ...)
};

// Writes a complete folder (every file above) atomically: into "<dir>.tmp", then renamed.
void save_hf_folder(const std::string& dir, CausalLM& model, const BpeTokenizer& tokenizer,
                    const SaveOptions& options = {});

// Reads a folder written by save_hf_folder or by transformers' save_pretrained for a Llama with a
// byte-level BPE tokenizer. Errors name the file and what is unsupported or missing.
HfModel load_hf_folder(const std::string& dir);

// config.json <-> ModelConfig.
nlohmann::json llama_config_json(const ModelConfig& config, const BpeTokenizer& tokenizer, const std::string& dtype);
ModelConfig model_config_from_llama_json(const nlohmann::json& json, const std::string& where);

// The id of a special token if the tokenizer has it, else -1.
int64_t special_or_none(const BpeTokenizer& tokenizer, const std::string& text);

}  // namespace llm::cli
