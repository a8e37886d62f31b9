#include <llm/cli/gguf_export.h>
#include <llm/cli/run.h>
#include <llm/model/rope.h>
#include <llm/tokenizer/gpt2_bytes.h>
#include <llm/tokenizer/pretokenizer.h>

#include <filesystem>
#include <regex>

namespace llm::cli {

namespace {

// The regexes llama.cpp implements for its pre-tokenizer names (src/llama-vocab.cpp, the
// llm_tokenizer_bpe constructor), as the models' tokenizer.json files write them (transformers'
// convert_slow_tokenizer.py and tokenization_qwen2.py).
const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// llama.cpp's token types (llama.h, enum llama_token_type).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

struct Dtype {
  GgmlType type;
  uint32_t file_type;  // general.file_type (llama.h, enum llama_ftype)
};

Dtype dtype_named(const std::string& name) {
  if (name == "float32") return {GgmlType::kF32, 0};
  if (name == "float16") return {GgmlType::kF16, 1};
  if (name == "q8_0") return {GgmlType::kQ8_0, 7};
  if (name == "bfloat16") return {GgmlType::kBF16, 32};
  throw UsageError("--dtype '" + name + "' is not one of: float32, float16, bfloat16, q8_0 (GGUF)");
}

// Hugging Face's parameter name -> llama.cpp's (gguf-py constants.py, tensor_mapping.py).
std::string gguf_name(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> kLayer = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.", "attn_q."},
      {"self_attn.k_proj.", "attn_k."},
      {"self_attn.v_proj.", "attn_v."},
      {"self_attn.o_proj.", "attn_output."},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.", "ffn_gate."},
      {"mlp.up_proj.", "ffn_up."},
      {"mlp.down_proj.", "ffn_down."}};
  if (name == "model.embed_tokens.weight") return "token_embd.weight";
  if (name == "model.norm.weight") return "output_norm.weight";
  if (name == "lm_head.weight") return "output.weight";
  static const std::regex layer(R"(model\.layers\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(name, m, layer)) {
    const std::string rest = m[2];
    for (const auto& [hf, ggml] : kLayer) {
      if (rest.compare(0, hf.size(), hf) == 0) return "blk." + m[1].str() + "." + ggml + rest.substr(hf.size());
    }
  }
  throw std::runtime_error("the parameter '" + name + "' has no GGUF name (llama.cpp would not know it)");
}

// Rows of q_proj / k_proj (weight (H D, C) or bias (H D)) from Hugging Face's pairing (i, i + D/2)
// to Meta's (2i, 2i + 1), head by head: convert_hf_to_gguf.py's LlamaModel.permute.
torch::Tensor permute_for_llama_cpp(const torch::Tensor& w, int64_t heads) {
  const auto shape = w.sizes().vec();
  std::vector<int64_t> split = {heads, 2, w.size(0) / heads / 2};
  split.insert(split.end(), shape.begin() + 1, shape.end());
  return w.reshape(split).transpose(1, 2).reshape(shape);
}

int64_t token_of(const BpeTokenizer& tok, const nlohmann::json& tokenizer_config, const char* key) {
  if (!tokenizer_config.is_object() || !tokenizer_config.contains(key)) return -1;
  const auto& v = tokenizer_config[key];
  const std::string text = v.is_string()   ? v.get<std::string>()
                           : v.is_object() ? v.value("content", "")
                                           : std::string();
  return text.empty() ? -1 : tok.added_id(text);
}

int64_t first_id(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return -1;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
  return -1;
}

}  // namespace

std::string llama_cpp_pre_tokenizer(const BpeTokenizer& tokenizer) {
  const auto& steps = tokenizer.options().pretokenizer.steps();
  std::vector<std::string> patterns;
  for (const auto& s : steps) {
    if (s.behavior != SplitBehavior::kIsolated || s.invert) {
      throw std::runtime_error(
          "llama.cpp splits text only with isolated regex matches; this tokenizer's "
          "pre-tokenizer has another Split behaviour");
    }
    patterns.push_back(s.regex.pattern());
  }
  const std::string gpt2 = RegexPreTokenizer::kPattern;
  if (patterns == std::vector<std::string>{gpt2}) return "gpt-2";
  if (patterns == std::vector<std::string>{pcre2_pattern(kLlama3Regex)}) return "llama-bpe";
  if (patterns == std::vector<std::string>{pcre2_pattern(kQwen2Regex)}) return "qwen2";
  if (patterns == std::vector<std::string>{R"(\p{N})", gpt2}) return "smollm";
  throw std::runtime_error(
      "llama.cpp has no pre-tokenizer for this tokenizer's regex steps, so it would split text differently; "
      "GGUF export knows GPT-2's (gpt-2), Llama 3's (llama-bpe), Qwen2's (qwen2) and SmolLM's (smollm)");
}

GgufFile gguf_of(const HfModel& m, const std::string& dtype_name) {
  const Dtype dtype = dtype_named(dtype_name);
  const ModelConfig& c = m.config;
  if (c.mlp_type != "swiglu") {
    throw std::runtime_error("model.mlp_type '" + c.mlp_type +
                             "': llama.cpp's llama, qwen2 and qwen3 architectures compute a SwiGLU MLP only");
  }
  const std::string arch = m.architecture == "Qwen3ForCausalLM"   ? "qwen3"
                           : m.architecture == "Qwen2ForCausalLM" ? "qwen2"
                                                                  : "llama";
  if (arch != "llama" && c.rope_scaling != "none") {
    throw std::runtime_error("RoPE scaling '" + c.rope_scaling + "' on " + m.architecture + ": llama.cpp's " + arch +
                             " architecture has no such scaling");
  }
  const BpeTokenizer& tok = m.tokenizer;
  GgufFile f;
  auto set = [&](const std::string& key, GgufValue value) { f.metadata.emplace_back(key, std::move(value)); };
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };

  // ---- the architecture ----
  set("general.architecture", arch);
  set("general.name", std::filesystem::path(m.dir).lexically_normal().filename().string());
  set("general.file_type", dtype.file_type);
  if (dtype.type == GgmlType::kQ8_0) set("general.quantization_version", uint32_t{2});  // GGML_QNT_VERSION
  set(arch + ".context_length", u32(c.max_position_embeddings));
  set(arch + ".embedding_length", u32(c.hidden_size));
  set(arch + ".block_count", u32(c.num_hidden_layers));
  set(arch + ".feed_forward_length", u32(c.ffn_hidden_size()));
  set(arch + ".attention.head_count", u32(c.num_attention_heads));
  set(arch + ".attention.head_count_kv", u32(c.num_key_value_heads));
  set(arch + ".attention.key_length", u32(c.head_dim()));
  set(arch + ".attention.value_length", u32(c.head_dim()));
  set(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  set(arch + ".rope.freq_base", static_cast<float>(c.rope_theta));
  set(arch + ".rope.dimension_count", u32(c.head_dim()));
  set(arch + ".vocab_size", u32(c.vocab_size));
  if (c.rope_scaling == "linear") {
    set(arch + ".rope.scaling.type", std::string("linear"));
    set(arch + ".rope.scaling.factor", static_cast<float>(c.rope_factor));
  }

  // ---- the tokenizer ----
  set("tokenizer.ggml.model", std::string("gpt2"));
  set("tokenizer.ggml.pre", llama_cpp_pre_tokenizer(tok));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  // Added tokens are CONTROL when special or when they look like one ("<|fim_prefix|>", which Qwen marks
  // non-special), as llama.cpp's converter decides (gguf-py vocab.py) and its loader insists.
  std::vector<int8_t> added(tok.vocab_size(), 0);
  for (const auto& t : tok.added_tokens()) {
    const bool looks_special = t.content.size() >= 4 && t.content.compare(0, 2, "<|") == 0 &&
                               t.content.compare(t.content.size() - 2, 2, "|>") == 0;
    added[t.id] = t.special || looks_special ? 1 : 2;
  }
  for (TokenId id = 0; id < tok.vocab_size(); ++id) {
    tokens.push_back(added[id] ? tok.token_bytes(id) : bytes_to_gpt2_text(tok.token_bytes(id)));
    types.push_back(added[id] == 1 ? kControl : added[id] == 2 ? kUserDefined : kNormal);
  }
  for (int64_t id = tok.vocab_size(); id < c.vocab_size; ++id) {  // embedding rows no token uses
    tokens.push_back("[PAD" + std::to_string(id) + "]");
    types.push_back(kUnused);
  }
  set("tokenizer.ggml.tokens", tokens);
  set("tokenizer.ggml.token_type", types);
  std::vector<std::string> merges;
  for (const auto& mg : tok.merges()) {
    merges.push_back(bytes_to_gpt2_text(tok.token_bytes(mg.left)) + " " +
                     bytes_to_gpt2_text(tok.token_bytes(mg.right)));
  }
  set("tokenizer.ggml.merges", merges);
  // Special ids: tokenizer_config.json's tokens, else config.json's ids; ours: <|endoftext|>, <|end|>.
  const int64_t eot_text = special_or_none(tok, "<|endoftext|>"), end = special_or_none(tok, "<|end|>");
  int64_t bos = token_of(tok, m.tokenizer_config, "bos_token");
  if (bos < 0) bos = first_id(m.config_json, "bos_token_id");
  int64_t eos = token_of(tok, m.tokenizer_config, "eos_token");
  if (eos < 0) eos = first_id(m.config_json, "eos_token_id");
  if (eos < 0) eos = eot_text;
  const int64_t pad = token_of(tok, m.tokenizer_config, "pad_token");
  if (bos >= 0) set("tokenizer.ggml.bos_token_id", u32(bos));
  if (eos >= 0) set("tokenizer.ggml.eos_token_id", u32(eos));
  if (end >= 0) set("tokenizer.ggml.eot_token_id", u32(end));  // lesson 06's end of turn
  if (pad >= 0) set("tokenizer.ggml.padding_token_id", u32(pad));
  set("tokenizer.ggml.add_bos_token", !tok.options().prefix_ids.empty());  // Llama 3.2's post-processor
  set("tokenizer.ggml.add_eos_token", false);
  if (!m.chat_template.empty()) set("tokenizer.chat_template", m.chat_template);

  // ---- the tensors ----
  auto add = [&](const std::string& name, torch::Tensor t) {
    const bool keep_f32 =
        t.dim() <= 1 || (name.size() >= 12 && name.compare(name.size() - 12, 12, "_norm.weight") == 0);
    GgmlType type = keep_f32 ? GgmlType::kF32 : dtype.type;
    if (type == GgmlType::kQ8_0 && t.size(-1) % 32 != 0) type = GgmlType::kF16;  // as llama.cpp's converter
    f.tensors.push_back({name, type, t.sizes().vec(), t});
  };
  if (c.rope_scaling == "llama3") {
    // For each pair the divisor of its frequency: theta_i / rope_freqs[i] is the scaled one.
    RopeScaling s{c.rope_scaling, c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor,
                  c.rope_original_max_position_embeddings};
    auto base = torch::pow(c.rope_theta, -torch::arange(0, c.head_dim(), 2, torch::kFloat64) / double(c.head_dim()));
    add("rope_freqs.weight", (base / scaled_frequencies(base, s)).to(torch::kFloat32));
  }
  for (const auto& p : m.model->named_parameters()) {
    torch::Tensor t = p.value().detach();
    const std::string& name = p.key();
    if (arch == "llama" && name.find("self_attn.q_proj.") != std::string::npos) {
      t = permute_for_llama_cpp(t, c.num_attention_heads);
    } else if (arch == "llama" && name.find("self_attn.k_proj.") != std::string::npos) {
      t = permute_for_llama_cpp(t, c.num_key_value_heads);
    }
    add(gguf_name(name), t);
  }
  return f;
}

void export_gguf(const HfModel& m, const std::string& path, const std::string& dtype) {
  if (std::filesystem::exists(path)) throw UsageError("'" + path + "' already exists; refusing to overwrite it");
  write_gguf(path, gguf_of(m, dtype));
}

}  // namespace llm::cli
