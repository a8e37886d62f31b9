#include <llm/cli/hf_folder.h>
#include <llm/cli/run.h>
#include <llm/common/files.h>
#include <llm/common/safetensors.h>
#include <llm/model/init.h>
#include <llm/tokenizer/bpe_files.h>
#include <llm/tokenizer/gpt2_bytes.h>
#include <llm/tokenizer/tokenizer_json.h>
#include <llm/train/checkpoint.h>

#include <filesystem>
#include <functional>
#include <set>

namespace llm::cli {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

// The chat template of lesson 06 (sft.h), in Jinja for transformers' apply_chat_template.
const char* kChatTemplate =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' + message['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

// What a folder's tokenizer and generation settings live in: copied as they are from a source folder.
const char* kTokenizerFiles[] = {"tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json",
                                 "chat_template.jinja", "chat_template.json",    "vocab.json",
                                 "merges.txt",          "added_tokens.json",     "generation_config.json"};

struct Architecture {
  const char* name;
  const char* model_type;
};
const Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama"}, {"Qwen2ForCausalLM", "qwen2"}, {"Qwen3ForCausalLM", "qwen3"}};

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

std::string supported_list() {
  std::string out;
  for (const auto& a : kArchitectures) out += std::string(out.empty() ? "" : ", ") + a.name + " (" + a.model_type + ")";
  return out;
}

// The RoPE settings of a config.json: rope_theta, and the scaling of rope_scaling (transformers 4)
// or rope_parameters (transformers 5, which also holds rope_theta).
void read_rope(const nlohmann::json& j, ModelConfig& c, const std::function<void(const std::string&)>& fail) {
  const nlohmann::json params = j.contains("rope_parameters") && j["rope_parameters"].is_object()
                                    ? j["rope_parameters"]
                                    : nlohmann::json::object();
  c.rope_theta = params.value("rope_theta", j.value("rope_theta", 10000.0));
  const nlohmann::json scaling =
      j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"] : params;
  const std::string type = scaling.value("rope_type", scaling.value("type", std::string("default")));
  if (type == "default") return;
  if (type == "linear") {
    c.rope_scaling = "linear";
    c.rope_factor = scaling.value("factor", 1.0);
  } else if (type == "llama3") {
    c.rope_scaling = "llama3";
    c.rope_factor = scaling.value("factor", 8.0);
    c.rope_low_freq_factor = scaling.value("low_freq_factor", 1.0);
    c.rope_high_freq_factor = scaling.value("high_freq_factor", 4.0);
    if (!scaling.contains("original_max_position_embeddings"))
      fail("llama3 rope scaling without original_max_position_embeddings");
    c.rope_original_max_position_embeddings = scaling["original_max_position_embeddings"].get<int64_t>();
  } else {
    fail("RoPE scaling '" + type + "' is not supported; supported: default, linear, llama3");
  }
}

// The rope_scaling object of a config.json for c (null when there is none).
nlohmann::json rope_scaling_json(const ModelConfig& c) {
  if (c.rope_scaling == "none") return nullptr;
  ordered_json r = {{"rope_type", c.rope_scaling}, {"factor", c.rope_factor}};
  if (c.rope_scaling == "llama3") {
    r["low_freq_factor"] = c.rope_low_freq_factor;
    r["high_freq_factor"] = c.rope_high_freq_factor;
    r["original_max_position_embeddings"] = c.rope_original_max_position_embeddings;
  }
  return r;
}

torch::Dtype dtype_named(const std::string& name, const std::string& what) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  throw UsageError(what + " '" + name + "' is not one of: float32, bfloat16");
}

}  // namespace

const std::string& our_chat_template() {
  static const std::string text = kChatTemplate;
  return text;
}

int64_t special_or_none(const BpeTokenizer& tokenizer, const std::string& text) {
  const auto& specials = tokenizer.special_tokens();
  auto it = specials.find(text);
  return it == specials.end() ? -1 : it->second;
}

std::vector<int64_t> HfModel::eos_ids() const {
  std::vector<int64_t> ids;
  for (const auto* j : {&generation_config, &config_json}) {
    if (!j->is_object() || !j->contains("eos_token_id")) continue;
    const auto& e = (*j)["eos_token_id"];
    if (e.is_number_integer()) ids.push_back(e.get<int64_t>());
    if (e.is_array()) {
      for (const auto& id : e) {
        if (id.is_number_integer()) ids.push_back(id.get<int64_t>());
      }
    }
    if (!ids.empty()) break;
  }
  return ids;
}

std::string hf_architecture(const ModelConfig& c) {
  if (c.qk_norm) return "Qwen3ForCausalLM";
  if (c.qkv_bias && !c.attention_bias) return "Qwen2ForCausalLM";
  return "LlamaForCausalLM";
}

nlohmann::json hf_config_json(const ModelConfig& c, const BpeTokenizer& tokenizer, const std::string& dtype) {
  if (c.mlp_type == "gelu") {
    throw std::runtime_error(
        "model.mlp_type 'gelu' (a plain GELU MLP) has no LlamaForCausalLM equivalent; "
        "only the gated MLPs (swiglu, geglu) can be exported");
  }
  const std::string arch = hf_architecture(c);
  const int64_t eot = special_or_none(tokenizer, "<|endoftext|>");
  const int64_t end = special_or_none(tokenizer, "<|end|>");
  ordered_json j;
  j["architectures"] = {arch};
  j["model_type"] = arch == "LlamaForCausalLM" ? "llama" : arch == "Qwen2ForCausalLM" ? "qwen2" : "qwen3";
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
  j["rope_scaling"] = rope_scaling_json(c);
  ordered_json parameters = {{"rope_type", c.rope_scaling == "none" ? std::string("default") : c.rope_scaling},
                             {"rope_theta", c.rope_theta}};
  if (c.rope_scaling != "none") {
    for (const auto& [k, v] : rope_scaling_json(c).items()) parameters[k] = v;
  }
  j["rope_parameters"] = parameters;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (arch == "Qwen2ForCausalLM") {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = c.num_hidden_layers;
  } else {
    j["attention_bias"] = c.attention_bias;
  }
  if (arch == "LlamaForCausalLM") j["mlp_bias"] = false, j["pretraining_tp"] = 1;
  j["attention_dropout"] = 0.0;
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

ModelConfig model_config_from_hf_json(const nlohmann::json& j, const std::string& where, std::string* architecture) {
  auto fail = [&](const std::string& message) { throw std::runtime_error(where + ": " + message); };
  if (!j.is_object()) fail("expected a JSON object");
  const std::string type = j.value("model_type", "");
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
  }
  const Architecture* found = nullptr;
  for (const auto& a : kArchitectures) {
    if (arch == a.name || (arch.empty() && type == a.model_type)) found = &a;
  }
  if (found == nullptr) {
    fail("architecture '" + (arch.empty() ? "(none)" : arch) + "' (model_type '" + type +
         "') is not supported; supported: " + supported_list());
  }
  if (!type.empty() && type != found->model_type) {
    fail("architectures says " + std::string(found->name) + " but model_type is '" + type + "', not '" +
         found->model_type + "'");
  }
  if (architecture != nullptr) *architecture = found->name;
  const std::string family = found->model_type;
  auto get = [&](const char* key) -> int64_t {
    if (!j.contains(key) || !j[key].is_number_integer()) fail(std::string("missing integer '") + key + "'");
    return j[key].get<int64_t>();
  };
  try {
    ModelConfig c;
    c.vocab_size = get("vocab_size");
    c.hidden_size = get("hidden_size");
    c.intermediate_size = get("intermediate_size");
    c.num_hidden_layers = get("num_hidden_layers");
    c.num_attention_heads = get("num_attention_heads");
    c.num_key_value_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                                ? get("num_key_value_heads")
                                : c.num_attention_heads;
    c.max_position_embeddings = get("max_position_embeddings");
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
    if (j.contains("head_dim") && !j["head_dim"].is_null()) {
      const int64_t d = get("head_dim");
      if (c.num_attention_heads <= 0 || d * c.num_attention_heads != c.hidden_size) c.head_dim_override = d;
    }
    read_rope(j, c, fail);
    c.tie_word_embeddings = j.value("tie_word_embeddings", false);
    const std::string act = j.value("hidden_act", "silu");
    if (act == "silu") {
      c.mlp_type = "swiglu";
    } else if (act == "gelu") {
      c.mlp_type = "geglu";
    } else {
      fail("hidden_act '" + act + "' is not supported; valid: silu, gelu");
    }
    if (j.value("mlp_bias", false)) fail("mlp_bias true is not supported (no supported model has MLP biases)");
    if (family == "qwen2") {
      c.qkv_bias = true;  // Qwen2Attention: q, k, v with biases, o without (modeling_qwen2.py)
    } else {
      c.attention_bias = j.value("attention_bias", false);
    }
    c.qk_norm = family == "qwen3";
    if (j.value("use_sliding_window", false)) {
      fail(
          "use_sliding_window true is not supported (sliding-window attention); the released Qwen2.5 and Qwen3 "
          "configs set it false");
    }
    c.validate();
    return c;
  } catch (const ConfigError& e) {
    fail(e.what());
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("a value of the wrong type: ") + e.what());
  }
  return {};
}

void save_hf_folder(const std::string& dir, CausalLM& model, const BpeTokenizer& tok, const SaveOptions& options) {
  if (!options.overwrite && fs::exists(dir)) {
    throw std::runtime_error("'" + dir + "' already exists; refusing to overwrite it");
  }
  const torch::Dtype dtype = dtype_named(options.dtype, "--dtype");
  const auto& c = model->config;
  if (tok.vocab_size() > c.vocab_size) {
    throw std::runtime_error("the tokenizer has " + std::to_string(tok.vocab_size()) +
                             " tokens, more than the model's " + std::to_string(c.vocab_size));
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

  if (!options.source_dir.empty()) {
    // A model loaded from a folder: its config.json with this dtype (after checking it describes this
    // model), its tokenizer and generation files as they are.
    const fs::path source(options.source_dir);
    auto config = read_json(source / "config.json");
    if (config_to_json(model_config_from_hf_json(config, (source / "config.json").string())) != config_to_json(c)) {
      throw std::runtime_error(options.source_dir + "/config.json describes another model than the one being saved");
    }
    config[config.contains("dtype") ? "dtype" : "torch_dtype"] = options.dtype;
    write("config.json", config.dump(2) + "\n");
    for (const char* name : kTokenizerFiles) {
      if (fs::exists(source / name)) fs::copy_file(source / name, tmp / name);
    }
    if (!options.generation.empty()) {
      nlohmann::json gen = fs::exists(tmp / "generation_config.json") ? read_json(tmp / "generation_config.json")
                                                                      : nlohmann::json::object();
      for (const auto& [k, v] : options.generation.items()) gen[k] = v;
      fs::remove(tmp / "generation_config.json");
      write("generation_config.json", gen.dump(2) + "\n");
    }
  } else {
    write("config.json", hf_config_json(c, tok, options.dtype).dump(2) + "\n");
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
    ordered_json map = {{"bos_token", eot_text},
                        {"eos_token", eot_text},
                        {"pad_token", eot_text},
                        {"additional_special_tokens", extra}};
    write("special_tokens_map.json", map.dump(2) + "\n");
    if (chat) write("chat_template.jinja", std::string(kChatTemplate) + "\n");
  }

  for (const auto& entry : fs::directory_iterator(tmp)) sync_path(entry.path().string());
  sync_path(tmp.string());
  if (options.overwrite) fs::remove_all(dir);
  fs::rename(tmp, dir);
  const auto parent = fs::path(dir).parent_path();
  sync_path(parent.empty() ? "." : parent.string());
}

HfModel load_hf_folder(const std::string& dir, const LoadOptions& options) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw std::runtime_error("'" + dir + "' is not a model folder (no such directory)");
  const bool sharded = fs::exists(d / "model.safetensors.index.json");
  if (!fs::exists(d / "config.json") || (!sharded && !fs::exists(d / "model.safetensors"))) {
    throw std::runtime_error(dir + ": no " +
                             std::string(fs::exists(d / "config.json") ? "model.safetensors" : "config.json") +
                             " (a Hugging Face model folder has config.json and model.safetensors, or "
                             "model.safetensors.index.json and its shards)");
  }
  HfModel m;
  m.dir = dir;
  m.config_json = read_json(d / "config.json");
  m.config = model_config_from_hf_json(m.config_json, (d / "config.json").string(), &m.architecture);
  m.tokenizer = load_tokenizer_folder(dir);
  if (m.tokenizer.vocab_size() > m.config.vocab_size) {
    throw std::runtime_error(dir + ": the tokenizer has " + std::to_string(m.tokenizer.vocab_size()) +
                             " tokens but config.json says vocab_size " + std::to_string(m.config.vocab_size));
  }
  if (fs::exists(d / "generation_config.json")) m.generation_config = read_json(d / "generation_config.json");
  if (fs::exists(d / "tokenizer_config.json")) {
    m.tokenizer_config = read_json(d / "tokenizer_config.json");
    const auto& t =
        m.tokenizer_config.contains("chat_template") ? m.tokenizer_config["chat_template"] : nlohmann::json();
    if (t.is_string()) {
      m.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
      for (const auto& named : t) {
        if (named.value("name", "") == "default") m.chat_template = named.value("template", "");
      }
    }
  }
  if (m.chat_template.empty() && fs::exists(d / "chat_template.jinja"))
    m.chat_template = read_file((d / "chat_template.jinja").string());
  if (m.chat_template.empty() && fs::exists(d / "chat_template.json"))
    m.chat_template = read_json(d / "chat_template.json").value("chat_template", "");

  // Which file holds which tensor.
  std::map<std::string, std::string> file_of;
  std::vector<std::string> files;
  if (sharded) {
    const auto index = read_json(d / "model.safetensors.index.json");
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw std::runtime_error(dir + "/model.safetensors.index.json: no weight_map object");
    for (const auto& [name, file] : index["weight_map"].items()) {
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.empty()) {
        throw std::runtime_error(dir + "/model.safetensors.index.json: '" + f + "' is not a file in the folder");
      }
      file_of[name] = f;
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    }
  } else {
    files.push_back("model.safetensors");
  }
  std::map<std::string, std::unique_ptr<SafetensorsReader>> readers;
  for (const auto& f : files) {
    if (!fs::exists(d / f)) throw std::runtime_error(dir + ": the shard " + f + " named by the index is missing");
    readers[f] = std::make_unique<SafetensorsReader>((d / f).string());
    for (const auto& [name, entry] : readers[f]->entries()) {
      if (!sharded) file_of[name] = f;
      m.weight_bytes += static_cast<int64_t>(entry.end - entry.begin);
    }
  }

  // The dtype: as stored ("auto"), or as asked.
  torch::Dtype dtype = torch::kFloat32;
  if (options.dtype == "auto") {
    const std::string stored = m.config_json.value("torch_dtype", m.config_json.value("dtype", std::string()));
    if (stored == "bfloat16") {
      dtype = torch::kBFloat16;
    } else if (stored.empty() && !readers.empty() && !readers.begin()->second->entries().empty()) {
      dtype = readers.begin()->second->entries().begin()->second.dtype == torch::kBFloat16 ? torch::kBFloat16
                                                                                           : torch::kFloat32;
    }  // float32, and float16 (slow on CPUs), run in float32
  } else {
    dtype = dtype_named(options.dtype, "dtype");
  }
  {
    DeferredInit deferred(dtype);  // allocate in `dtype`, no random init: every tensor is read next
    m.model = CausalLM(m.config);
  }

  std::set<std::string> expected;
  for (auto& p : m.model->named_parameters()) {
    const std::string& name = p.key();
    expected.insert(name);
    auto it = file_of.find(name);
    if (it == file_of.end()) {
      throw std::runtime_error(dir + ": the weights have no tensor '" + name + "' (a " + m.architecture +
                               " with this config.json needs it)");
    }
    readers.at(it->second)->read_into(name, p.value());
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, file] : file_of) {
    const bool tied_head = name == "lm_head.weight" && m.config.tie_word_embeddings;  // some versions save it
    const std::string buffer = "rotary_emb.inv_freq";  // a buffer older transformers saved
    const bool rope_buffer =
        name.size() >= buffer.size() && name.compare(name.size() - buffer.size(), buffer.size(), buffer) == 0;
    if (!expected.count(name) && !tied_head && !rope_buffer) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    throw std::runtime_error(dir + ": " + std::to_string(unexpected.size()) + " tensors that a " + m.architecture +
                             " with this config.json does not have, e.g. '" + unexpected.front() + "'");
  }
  m.model->eval();
  return m;
}

}  // namespace llm::cli
