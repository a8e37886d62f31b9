// Lesson 01 - the model's hyper-parameters, named as in Hugging Face's LlamaConfig.
//
// Shapes these values set: V vocab_size, C hidden_size, L num_hidden_layers, H num_attention_heads,
// Hkv num_key_value_heads, D the head dim (C / H unless set), F the feed-forward width.
//
// The field names are LlamaConfig's (hidden_size, num_key_value_heads, rms_norm_eps, ...), so a
// trained model's config.json maps onto them one to one. Derived values are functions, never stored
// twice: head_dim() = D, kv_groups() = H / Hkv (query heads per key/value head), ffn_hidden_size()
// and num_parameters().
//
// Today's open models differ from the Llama of lessons 02-05 in a few switches, all here:
//   head_dim          an explicit D: Qwen3-0.6B has C = 1024 but H D = 16 x 128 = 2048
//   attention_bias    biases on q, k, v and o (Llama's attention_bias); qkv_bias: on q, k, v only (Qwen2)
//   qk_norm           an RMSNorm over D on every query and key head, before RoPE (Qwen3)
//   rope_scaling      "llama3": Llama 3.1's stretching of RoPE's low frequencies (lesson 02), or
//                     "linear" (positions divided by rope_factor); "none" otherwise
//   tie_word_embeddings  the output layer reuses the embedding (Llama 3.2 1B, Qwen3 0.6B, SmolLM2)
#pragma once

#include <llm/common/todo.h>
#include <llm/config/fields.h>

#include <cmath>
#include <string>
#include <vector>

namespace llm {

// Llama's feed-forward width rule (Meta's llama/model.py, FeedForward): a SwiGLU MLP has three
// matrices instead of two, so it takes 2/3 of the classic 4C to keep the parameter count, rounded
// *up* to a multiple of `multiple_of` for efficient matrix shapes:
//     F = multiple_of * ceil( floor(2 * 4C / 3) / multiple_of )
// C = 4096, multiple_of = 256 gives Llama-7B's 11008; C = 256, multiple_of = 16 gives 688.
inline int64_t llama_ffn_hidden_size(int64_t hidden_size, int64_t multiple_of) {
  // BEGIN SOLUTION: llama_ffn_hidden_size(): floor(2 * 4C / 3) rounded up to a multiple of multiple_of
  const int64_t f = 2 * 4 * hidden_size / 3;
  return multiple_of * ((f + multiple_of - 1) / multiple_of);
  // END SOLUTION
}

struct ModelConfig {
  int64_t vocab_size = 4096;              // V, including special tokens
  int64_t hidden_size = 256;              // C, the model width
  int64_t intermediate_size = 0;          // F; 0 = Llama's rule for every mlp_type (GPT-2's gelu MLP used 4C)
  int64_t multiple_of = 16;               // F is rounded up to this when it is derived
  int64_t num_hidden_layers = 4;          // L transformer blocks
  int64_t num_attention_heads = 8;        // H query heads
  int64_t num_key_value_heads = 4;        // Hkv key/value heads (GQA); H = MHA, 1 = MQA
  int64_t max_position_embeddings = 256;  // the longest sequence RoPE is precomputed for
  double rope_theta = 10000.0;            // RoPE base (Llama 1-2)
  double rms_norm_eps = 1e-6;             // LlamaConfig's default
  bool tie_word_embeddings = false;       // lm_head shares embed_tokens' weight
  double dropout = 0.0;                   // on attention weights and the MLP output, while training
  std::string mlp_type = "swiglu";        // swiglu | geglu | gelu
  int64_t head_dim_override = 0;          // D when set (> 0); 0 = C / H. YAML and config.json: head_dim
  bool attention_bias = false;            // q, k, v and o projections have biases
  bool qkv_bias = false;                  // q, k and v projections have biases (Qwen2)
  bool qk_norm = false;                   // RMSNorm on each query and key head before RoPE (Qwen3)
  std::string rope_scaling = "none";      // none | linear | llama3
  double rope_factor = 1.0;               // llama3, linear: how much longer the context becomes
  double rope_low_freq_factor = 1.0;      // llama3: wavelengths above original / this are divided by factor
  double rope_high_freq_factor = 4.0;     // llama3: wavelengths below original / this stay as they are
  int64_t rope_original_max_position_embeddings = 8192;  // llama3: the context pretraining used

  static inline const std::vector<std::string> kMlpTypes = {"swiglu", "geglu", "gelu"};
  static inline const std::vector<std::string> kRopeScalings = {"none", "linear", "llama3"};

  static const std::vector<Field<ModelConfig>>& fields() {
    static const std::vector<Field<ModelConfig>> table = {
        {"vocab_size", &ModelConfig::vocab_size, "V, tokens in the vocabulary (special tokens included)"},
        {"hidden_size", &ModelConfig::hidden_size, "C, the model width"},
        {"intermediate_size", &ModelConfig::intermediate_size, "F, the feed-forward width; 0 = Llama's rule"},
        {"multiple_of", &ModelConfig::multiple_of, "a derived F is rounded up to a multiple of this"},
        {"num_hidden_layers", &ModelConfig::num_hidden_layers, "L, transformer blocks"},
        {"num_attention_heads", &ModelConfig::num_attention_heads, "H, query heads"},
        {"num_key_value_heads", &ModelConfig::num_key_value_heads, "Hkv, key/value heads; must divide H"},
        {"max_position_embeddings", &ModelConfig::max_position_embeddings, "the longest sequence"},
        {"rope_theta", &ModelConfig::rope_theta, "RoPE base frequency"},
        {"rms_norm_eps", &ModelConfig::rms_norm_eps, "RMSNorm epsilon"},
        {"tie_word_embeddings", &ModelConfig::tie_word_embeddings, "lm_head shares the embedding matrix"},
        {"dropout", &ModelConfig::dropout, "dropout probability while training, in [0, 1)"},
        {"mlp_type", &ModelConfig::mlp_type, "swiglu, geglu or gelu"},
        {"head_dim", &ModelConfig::head_dim_override, "D, the head dimension; 0 = hidden_size / num_attention_heads"},
        {"attention_bias", &ModelConfig::attention_bias, "biases on the q, k, v and o projections"},
        {"qkv_bias", &ModelConfig::qkv_bias, "biases on the q, k and v projections (Qwen2)"},
        {"qk_norm", &ModelConfig::qk_norm, "RMSNorm on every query and key head before RoPE (Qwen3)"},
        {"rope_scaling", &ModelConfig::rope_scaling, "none, linear or llama3"},
        {"rope_factor", &ModelConfig::rope_factor, "RoPE scaling factor (linear, llama3)"},
        {"rope_low_freq_factor", &ModelConfig::rope_low_freq_factor, "llama3 RoPE scaling: low_freq_factor"},
        {"rope_high_freq_factor", &ModelConfig::rope_high_freq_factor, "llama3 RoPE scaling: high_freq_factor"},
        {"rope_original_max_position_embeddings", &ModelConfig::rope_original_max_position_embeddings,
         "llama3 RoPE scaling: the context length of pretraining"},
    };
    return table;
  }

  // D: head_dim_override when it is set (> 0), else C / H.
  int64_t head_dim() const {
    // BEGIN SOLUTION: ModelConfig::head_dim(): head_dim_override if set, else hidden_size / num_attention_heads
    return head_dim_override > 0 ? head_dim_override : hidden_size / num_attention_heads;
    // END SOLUTION
  }

  // Query heads per key/value head: H / Hkv (1 for multi-head attention, H for multi-query).
  int64_t kv_groups() const {
    // BEGIN SOLUTION: ModelConfig::kv_groups(): num_attention_heads / num_key_value_heads
    return num_attention_heads / num_key_value_heads;
    // END SOLUTION
  }

  // F: intermediate_size when it is set (> 0), else Llama's rule.
  int64_t ffn_hidden_size() const {
    // BEGIN SOLUTION: ModelConfig::ffn_hidden_size(): intermediate_size if > 0, else llama_ffn_hidden_size()
    return intermediate_size > 0 ? intermediate_size : llama_ffn_hidden_size(hidden_size, multiple_of);
    // END SOLUTION
  }

  // Trainable parameters of the Llama model built from this config (lesson 05). The MLP never has
  // biases; the attention projections only when the switches say so:
  //   embed_tokens                       V * C
  //   per layer, attention               q: C * (H D), k and v: C * (Hkv D) each, o: (H D) * C
  //     biases (attention_bias or qkv_bias)   q: H D, k and v: Hkv D each
  //     o's bias (attention_bias only)        C
  //     qk_norm                               two RMSNorm weights of D (q_norm, k_norm)
  //   per layer, MLP                     swiglu/geglu: 3 C F (gate, up, down); gelu: 2 C F (up, down)
  //   per layer, two RMSNorm weights     2 C
  //   final norm                         C
  //   lm_head                            V * C, or 0 when tied to embed_tokens
  int64_t num_parameters() const {
    // BEGIN SOLUTION: ModelConfig::num_parameters(): sum the table above
    const int64_t C = hidden_size, V = vocab_size, D = head_dim(), F = ffn_hidden_size();
    const int64_t H = num_attention_heads, Hkv = num_key_value_heads;
    int64_t attention = C * (H * D) + 2 * C * (Hkv * D) + (H * D) * C;
    if (attention_bias || qkv_bias) attention += H * D + 2 * Hkv * D;
    if (attention_bias) attention += C;
    if (qk_norm) attention += 2 * D;
    const int64_t mlp = (mlp_type == "gelu" ? 2 : 3) * C * F;
    const int64_t per_layer = attention + mlp + 2 * C;
    return V * C + num_hidden_layers * per_layer + C + (tie_word_embeddings ? 0 : V * C);
    // END SOLUTION
  }

  // Throws ConfigError naming the first problem and what would be valid. The tests look for the
  // key, the value and the valid range or names, in these words (<v> is the value found):
  //   - every size (vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
  //     num_key_value_heads, max_position_embeddings, multiple_of) is positive: require_positive in
  //     fields.h writes "model.<key> must be positive, got <v>"
  //   - intermediate_size >= 0 and head_dim_override >= 0: "model.intermediate_size must be >= 0
  //     (0 = Llama's rule), got -1"; for head_dim_override name the key as the files spell it,
  //     "model.head_dim must be >= 0 ..., got -1"
  //   - without head_dim_override, hidden_size is divisible by num_attention_heads, naming both with
  //     their values and the multiples of H on either side: "model.hidden_size 250 is not divisible
  //     by num_attention_heads 8; valid nearby widths: 248 or 256"
  //   - num_attention_heads is divisible by num_key_value_heads: "model.num_key_value_heads 3 does
  //     not divide num_attention_heads 8; ..."
  //   - head_dim() is even (RoPE rotates channel pairs): "model: head_dim = 7 must be even ..."
  //     (without head_dim_override, "head_dim = hidden_size / num_attention_heads = 3 must be even")
  //   - rope_theta > 0, rms_norm_eps > 0: "model.<key> must be positive, got <v>" (test !(x > 0), so
  //     that a NaN is rejected too); 0 <= dropout < 1: "model.dropout must be in [0, 1), got <v>"
  //   - mlp_type one of kMlpTypes: "model.mlp_type 'relu' is not one of: swiglu, geglu, gelu"
  //     (join_names writes the list)
  //   - rope_scaling one of kRopeScalings: "model.rope_scaling 'yarn' is not one of: none, linear,
  //     llama3"; when it is not "none", rope_factor > 0 ("model.rope_factor must be positive, got
  //     <v>"); for "llama3" also 0 < rope_low_freq_factor < rope_high_freq_factor ("model: llama3 RoPE
  //     scaling needs 0 < rope_low_freq_factor < rope_high_freq_factor, got <low> and <high>") and
  //     rope_original_max_position_embeddings > 0 (require_positive)
  void validate() const {
    // BEGIN SOLUTION: ModelConfig::validate(): positive sizes, H | C, Hkv | H, even head_dim, known mlp_type
    require_positive("model", "vocab_size", vocab_size);
    require_positive("model", "hidden_size", hidden_size);
    require_positive("model", "num_hidden_layers", num_hidden_layers);
    require_positive("model", "num_attention_heads", num_attention_heads);
    require_positive("model", "num_key_value_heads", num_key_value_heads);
    require_positive("model", "max_position_embeddings", max_position_embeddings);
    require_positive("model", "multiple_of", multiple_of);
    if (intermediate_size < 0) {
      throw ConfigError("model.intermediate_size must be >= 0 (0 = Llama's rule), got " +
                        std::to_string(intermediate_size));
    }
    if (head_dim_override < 0) {
      throw ConfigError("model.head_dim must be >= 0 (0 = hidden_size / num_attention_heads), got " +
                        std::to_string(head_dim_override));
    }
    if (head_dim_override == 0 && hidden_size % num_attention_heads != 0) {
      const int64_t below = hidden_size / num_attention_heads * num_attention_heads;
      throw ConfigError("model.hidden_size " + std::to_string(hidden_size) +
                        " is not divisible by num_attention_heads " + std::to_string(num_attention_heads) +
                        "; valid nearby widths: " + (below > 0 ? std::to_string(below) + " or " : "") +
                        std::to_string(below + num_attention_heads));
    }
    if (num_attention_heads % num_key_value_heads != 0) {
      throw ConfigError("model.num_key_value_heads " + std::to_string(num_key_value_heads) +
                        " does not divide num_attention_heads " + std::to_string(num_attention_heads) +
                        "; each key/value head must serve a whole group of query heads");
    }
    if (head_dim() % 2 != 0) {
      throw ConfigError(
          "model: head_dim = " + std::string(head_dim_override > 0 ? "" : "hidden_size / num_attention_heads = ") +
          std::to_string(head_dim()) + " must be even: RoPE rotates pairs of channels");
    }
    if (!(rope_theta > 0)) throw ConfigError("model.rope_theta must be positive, got " + std::to_string(rope_theta));
    if (!(rms_norm_eps > 0))
      throw ConfigError("model.rms_norm_eps must be positive, got " + std::to_string(rms_norm_eps));
    if (!(dropout >= 0 && dropout < 1))
      throw ConfigError("model.dropout must be in [0, 1), got " + std::to_string(dropout));
    if (std::find(kMlpTypes.begin(), kMlpTypes.end(), mlp_type) == kMlpTypes.end()) {
      throw ConfigError("model.mlp_type '" + mlp_type + "' is not one of: " + join_names(kMlpTypes));
    }
    if (std::find(kRopeScalings.begin(), kRopeScalings.end(), rope_scaling) == kRopeScalings.end()) {
      throw ConfigError("model.rope_scaling '" + rope_scaling + "' is not one of: " + join_names(kRopeScalings));
    }
    if (rope_scaling != "none" && !(rope_factor > 0))
      throw ConfigError("model.rope_factor must be positive, got " + std::to_string(rope_factor));
    if (rope_scaling == "llama3") {
      if (!(rope_low_freq_factor > 0 && rope_low_freq_factor < rope_high_freq_factor)) {
        throw ConfigError("model: llama3 RoPE scaling needs 0 < rope_low_freq_factor < rope_high_freq_factor, got " +
                          std::to_string(rope_low_freq_factor) + " and " + std::to_string(rope_high_freq_factor));
      }
      require_positive("model", "rope_original_max_position_embeddings", rope_original_max_position_embeddings);
    }
    // END SOLUTION
  }

  static std::vector<std::string> preset_names() { return {"tiny", "small", "medium"}; }

  // Named sizes, each changing only these fields of the defaults above:
  //
  //   name     parameters  vocab_size  hidden_size  num_hidden_layers  heads  kv heads  max_position
  //   tiny       1.79M       4096         128             4              4       2        256
  //   small      5.00M       4096         256             4              8       4        256
  //   medium    31.6M        8192         512             8              8       4        512
  //
  // tiny trains on a laptop CPU in minutes; small is the size whose training speed the project
  // measures against PyTorch; medium is for a long run. Any other name throws ConfigError listing
  // the valid ones: "unknown model preset 'huge'; valid presets: tiny, small, medium".
  static ModelConfig preset(const std::string& name) {
    // BEGIN SOLUTION: ModelConfig::preset(): the table above; unknown names list the valid presets
    ModelConfig c;
    if (name == "tiny") {
      c.hidden_size = 128, c.num_hidden_layers = 4, c.num_attention_heads = 4, c.num_key_value_heads = 2;
    } else if (name == "small") {
      c.hidden_size = 256, c.num_hidden_layers = 4, c.num_attention_heads = 8, c.num_key_value_heads = 4;
    } else if (name == "medium") {
      c.vocab_size = 8192, c.hidden_size = 512, c.num_hidden_layers = 8, c.num_attention_heads = 8,
      c.num_key_value_heads = 4, c.max_position_embeddings = 512;
    } else {
      throw ConfigError("unknown model preset '" + name + "'; valid presets: " + join_names(preset_names()));
    }
    return c;
    // END SOLUTION
  }
};

// `config` after config.validate(): for constructor initializer lists, so that a module reports the
// config's own error ("hidden_size 30 is not divisible by num_attention_heads 4") before any member
// computed from it fails with a symptom (a division by zero, an odd head_dim).
inline const ModelConfig& validated(const ModelConfig& config) {
  config.validate();
  return config;
}

}  // namespace llm
