#include <llm/cli/hf_folder.h>
#include <llm/cli/run.h>
#include <llm/common/files.h>
#include <llm/common/safetensors.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/gpt2_bytes.h>
#include <llm/train/checkpoint.h>

#include <filesystem>

namespace llm::cli {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

// The chat template of lesson 06 (sft.h), in Jinja for transformers' apply_chat_template.
const char* kChatTemplate =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' + message['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

ordered_json byte_level(bool add_prefix_space, bool trim_offsets) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", trim_offsets},
          {"use_regex", true}};
}

std::string token_text(const BpeTokenizer& tok, TokenId id) {
  return bytes_to_gpt2_text(tok.token_bytes(id));
}

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_file(path.string()));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": not valid JSON: " + e.what());
  }
}

}  // namespace

int64_t special_or_none(const BpeTokenizer& tokenizer, const std::string& text) {
  const auto& specials = tokenizer.special_tokens();
  auto it = specials.find(text);
  return it == specials.end() ? -1 : it->second;
}

nlohmann::json llama_config_json(const ModelConfig& c, const BpeTokenizer& tokenizer, const std::string& dtype) {
  if (c.mlp_type == "gelu") {
    throw std::runtime_error(
        "model.mlp_type 'gelu' (a plain GELU MLP) has no LlamaForCausalLM equivalent; "
        "only the gated MLPs (swiglu, geglu) can be exported");
  }
  const int64_t eot = special_or_none(tokenizer, "<|endoftext|>");
  const int64_t end = special_or_none(tokenizer, "<|end|>");
  ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.ffn_hidden_size();
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim();
  j["hidden_act"] = c.mlp_type == "swiglu" ? "silu" : "gelu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = nullptr;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["pretraining_tp"] = 1;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["bos_token_id"] = eot >= 0 ? nlohmann::json(eot) : nlohmann::json(nullptr);
  if (eot >= 0 && end >= 0) {
    j["eos_token_id"] = {eot, end};
  } else {
    j["eos_token_id"] = eot >= 0 ? nlohmann::json(eot) : nlohmann::json(nullptr);
  }
  j["pad_token_id"] = eot >= 0 ? nlohmann::json(eot) : nlohmann::json(nullptr);
  j["torch_dtype"] = dtype;
  j["transformers_version"] = "4.46.0";
  return j;
}

ModelConfig model_config_from_llama_json(const nlohmann::json& j, const std::string& where) {
  auto fail = [&](const std::string& message) { throw std::runtime_error(where + ": " + message); };
  const std::string type = j.value("model_type", "");
  if (type != "llama") fail("model_type '" + type + "' is not supported; this loader reads model_type 'llama'");
  auto get = [&](const char* key) -> int64_t {
    if (!j.contains(key) || !j[key].is_number_integer()) fail(std::string("missing integer '") + key + "'");
    return j[key].get<int64_t>();
  };
  ModelConfig c;
  c.vocab_size = get("vocab_size");
  c.hidden_size = get("hidden_size");
  c.intermediate_size = get("intermediate_size");
  c.num_hidden_layers = get("num_hidden_layers");
  c.num_attention_heads = get("num_attention_heads");
  c.num_key_value_heads = j.contains("num_key_value_heads") ? get("num_key_value_heads") : c.num_attention_heads;
  c.max_position_embeddings = get("max_position_embeddings");
  c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const auto& rp = j["rope_parameters"];
    if (rp.value("rope_type", "default") != "default")
      fail("rope_parameters.rope_type other than 'default' is not supported");
    c.rope_theta = rp.value("rope_theta", j.value("rope_theta", 10000.0));
  } else {
    c.rope_theta = j.value("rope_theta", 10000.0);
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) fail("rope_scaling is not supported");
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  const std::string act = j.value("hidden_act", "silu");
  if (act == "silu") {
    c.mlp_type = "swiglu";
  } else if (act == "gelu") {
    c.mlp_type = "geglu";
  } else {
    fail("hidden_act '" + act + "' is not supported; valid: silu, gelu");
  }
  if (j.value("attention_bias", false) || j.value("mlp_bias", false))
    fail("attention_bias / mlp_bias are not supported");
  if (j.contains("head_dim") && !j["head_dim"].is_null() &&
      j["head_dim"].get<int64_t>() * c.num_attention_heads != c.hidden_size) {
    fail("head_dim * num_attention_heads != hidden_size is not supported");
  }
  try {
    c.validate();
  } catch (const ConfigError& e) {
    fail(e.what());
  }
  return c;
}

void save_hf_folder(const std::string& dir, CausalLM& model, const BpeTokenizer& tok, const SaveOptions& options) {
  if (!options.overwrite && fs::exists(dir)) {
    throw std::runtime_error("'" + dir + "' already exists; refusing to overwrite it");
  }
  torch::Dtype dtype;
  if (options.dtype == "float32") {
    dtype = torch::kFloat32;
  } else if (options.dtype == "bfloat16") {
    dtype = torch::kBFloat16;
  } else {
    throw UsageError("--dtype '" + options.dtype + "' is not one of: float32, bfloat16");
  }
  const auto& c = model->config;
  if (tok.vocab_size() != c.vocab_size) {
    throw std::runtime_error("the tokenizer has " + std::to_string(tok.vocab_size()) + " tokens, the model " +
                             std::to_string(c.vocab_size));
  }
  const fs::path tmp = dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  auto write = [&](const std::string& name, const std::string& text) {
    write_file_atomically((tmp / name).string(), text);
  };

  TensorMap weights;
  for (const auto& p : model->named_parameters()) weights[p.key()] = p.value().detach().to(dtype);
  save_safetensors((tmp / "model.safetensors").string(), weights);
  write("config.json", llama_config_json(c, tok, options.dtype).dump(2) + "\n");

  const int64_t eot = special_or_none(tok, "<|endoftext|>");
  const int64_t end = special_or_none(tok, "<|end|>");
  ordered_json gen = {{"_from_model_config", false}};
  if (eot >= 0) gen["bos_token_id"] = eot, gen["pad_token_id"] = eot;
  if (eot >= 0 && end >= 0) {
    gen["eos_token_id"] = {eot, end};
  } else if (eot >= 0) {
    gen["eos_token_id"] = eot;
  }
  gen["do_sample"] = true;
  gen["temperature"] = 0.8;
  gen["top_k"] = 50;
  for (const auto& [k, v] : options.generation.items()) gen[k] = v;
  gen["transformers_version"] = "4.46.0";
  write("generation_config.json", gen.dump(2) + "\n");

  // The tokenizer: GPT-2's two files, written by lesson 01, then the JSON files around them.
  save_gpt2_files(tok, tmp.string(), /*overwrite=*/true);
  ordered_json vocab = ordered_json::object();
  for (TokenId id = 0; id < tok.vocab_size(); ++id) vocab[token_text(tok, id)] = id;
  ordered_json merges = ordered_json::array();
  for (const auto& m : tok.merges()) merges.push_back(token_text(tok, m.left) + " " + token_text(tok, m.right));
  std::vector<std::pair<TokenId, std::string>> specials;
  for (const auto& [text, id] : tok.special_tokens()) specials.emplace_back(id, text);
  std::sort(specials.begin(), specials.end());
  ordered_json added = ordered_json::array(), decoder = ordered_json::object(), extra = ordered_json::array();
  for (const auto& [id, text] : specials) {
    ordered_json t = {{"id", id},        {"content", text},     {"single_word", false}, {"lstrip", false},
                      {"rstrip", false}, {"normalized", false}, {"special", true}};
    added.push_back(t);
    t.erase("id");
    decoder[std::to_string(id)] = t;
    if (text != "<|endoftext|>") extra.push_back(text);
  }
  ordered_json fast = {{"version", "1.0"},
                       {"truncation", nullptr},
                       {"padding", nullptr},
                       {"added_tokens", added},
                       {"normalizer", nullptr},
                       {"pre_tokenizer", byte_level(false, true)},
                       {"post_processor", byte_level(true, false)},
                       {"decoder", byte_level(true, true)},
                       {"model",
                        {{"type", "BPE"},
                         {"dropout", nullptr},
                         {"unk_token", nullptr},
                         {"continuing_subword_prefix", ""},
                         {"end_of_word_suffix", ""},
                         {"fuse_unk", false},
                         {"byte_fallback", false},
                         {"ignore_merges", false},
                         {"vocab", vocab},
                         {"merges", merges}}}};
  write("tokenizer.json", fast.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false) + "\n");
  const bool chat = special_or_none(tok, "<|user|>") >= 0 && end >= 0 && special_or_none(tok, "<|assistant|>") >= 0;
  const nlohmann::json eot_text = eot >= 0 ? nlohmann::json("<|endoftext|>") : nlohmann::json(nullptr);
  ordered_json config = {{"tokenizer_class", "GPT2Tokenizer"},
                         {"add_bos_token", false},
                         {"add_prefix_space", false},
                         {"bos_token", eot_text},
                         {"eos_token", eot_text},
                         {"pad_token", eot_text},
                         {"unk_token", nullptr},
                         {"model_max_length", c.max_position_embeddings},
                         {"clean_up_tokenization_spaces", false},
                         {"added_tokens_decoder", decoder}};
  if (chat) config["chat_template"] = kChatTemplate;
  write("tokenizer_config.json", config.dump(2, ' ', false) + "\n");
  ordered_json map = {
      {"bos_token", eot_text}, {"eos_token", eot_text}, {"pad_token", eot_text}, {"additional_special_tokens", extra}};
  write("special_tokens_map.json", map.dump(2) + "\n");
  if (chat) write("chat_template.jinja", std::string(kChatTemplate) + "\n");

  for (const auto& entry : fs::directory_iterator(tmp)) sync_path(entry.path().string());
  sync_path(tmp.string());
  if (options.overwrite) fs::remove_all(dir);
  fs::rename(tmp, dir);
  const auto parent = fs::path(dir).parent_path();
  sync_path(parent.empty() ? "." : parent.string());
}

HfModel load_hf_folder(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw std::runtime_error("'" + dir + "' is not a model folder (no such directory)");
  for (const char* file : {"config.json", "model.safetensors", "vocab.json", "merges.txt"}) {
    if (!fs::exists(d / file)) {
      throw std::runtime_error(dir + ": no " + file +
                               " (a Hugging Face Llama folder with a byte-level BPE tokenizer "
                               "needs config.json, model.safetensors, vocab.json and merges.txt)");
    }
  }
  HfModel m;
  m.dir = dir;
  m.config = model_config_from_llama_json(read_json(d / "config.json"), (d / "config.json").string());
  m.tokenizer = load_gpt2_files((d / "vocab.json").string(), (d / "merges.txt").string());
  if (m.tokenizer.vocab_size() != m.config.vocab_size) {
    throw std::runtime_error(dir + ": the tokenizer has " + std::to_string(m.tokenizer.vocab_size()) +
                             " tokens but config.json says vocab_size " + std::to_string(m.config.vocab_size));
  }
  if (fs::exists(d / "generation_config.json")) m.generation_config = read_json(d / "generation_config.json");
  m.model = CausalLM(m.config);
  auto file = load_safetensors((d / "model.safetensors").string());
  // transformers writes a tied lm_head.weight too in some versions; it is the embedding again.
  if (m.config.tie_word_embeddings) file.tensors.erase("lm_head.weight");
  for (auto& [name, t] : file.tensors) t = t.to(torch::kFloat32);
  restore_parameters(*m.model, file.tensors, (d / "model.safetensors").string());
  m.model->eval();
  return m;
}

}  // namespace llm::cli
