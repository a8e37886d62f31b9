// Lesson 11 - LoRA: fine-tuning a few million numbers instead of all of them (Hu et al. 2021),
// as Hugging Face PEFT defines it.
//
// Shapes: x (S..., in), W (out, in) frozen, A (r, in), B (out, r), r << min(in, out).
//
// Full fine-tuning learns an update dW for every weight matrix. LoRA bets that the update a task
// needs has low rank, and learns it as a product:
//
//     y = x W^T + (dropout(x) A^T B^T) * s          s = alpha / r   (rsLoRA: alpha / sqrt(r))
//
// W stays frozen; only A and B train: r (in + out) numbers per adapted matrix instead of in * out
// (r = 8 on a 256 x 256 projection: 4,096 instead of 65,536). PEFT's choices, followed here:
//
//   - A is initialised as nn.Linear is (Kaiming-uniform, a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))),
//     B is zeros, so the adapted model starts as exactly the base model (dW = B A = 0).
//   - Dropout applies to the LoRA branch's input only; the frozen path sees x unchanged.
//   - s = alpha / r keeps the update's size from depending on r when alpha is fixed; rsLoRA
//     (Kalajdzievski 2023) argues alpha / sqrt(r) keeps its *learning* stable as r grows.
//   - merge: W += s B A, after which the branch is skipped (inference at the base model's cost);
//     unmerge subtracts it again (exact in fp32 up to rounding; not exactly reversible in bf16).
//   - The adapters are saved alone (adapter_model.safetensors + adapter_config.json), under the
//     names PEFT writes: "base_model.model." + the layer's name + ".lora_A.weight" / ".lora_B.weight".
//
// With a 4-bit base (QLoRA, nf4.h) the frozen product is the NF4 layer's; the branch is the same.
//
// Reference: peft/tuners/lora/layer.py (update_layer, reset_lora_parameters, Linear.forward,
// get_delta_weight, merge, unmerge), peft/tuners/lora/config.py (LoraConfig defaults),
// peft/utils/save_and_load.py (get_peft_model_state_dict: the saved names).
#pragma once

#include <llm/common/files.h>
#include <llm/common/safetensors.h>
#include <llm/common/todo.h>
#include <llm/model/linear.h>
#include <llm/peft/nf4.h>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace llm {

// PEFT's LoraConfig defaults: r 8, lora_alpha 8, lora_dropout 0, use_rslora false. target_modules
// names the last component of a layer's name ("q_proj" matches model.layers.3.self_attn.q_proj).
struct LoraConfig {
  int64_t r = 8;
  double alpha = 8;
  double dropout = 0.0;
  bool use_rslora = false;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};

  double scaling() const {
    return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
  }
  void validate() const {
    TORCH_CHECK(r > 0, "LoRA: r must be a positive integer, got ", r);
    TORCH_CHECK(alpha > 0, "LoRA: alpha must be positive, got ", alpha);
    TORCH_CHECK(dropout >= 0 && dropout < 1, "LoRA: dropout must be in [0, 1), got ", dropout);
    TORCH_CHECK(!target_modules.empty(), "LoRA: target_modules is empty; name at least one layer, e.g. q_proj");
  }
};

// The projections of lessons 03-04's Llama under Hugging Face's names: what target_modules can name.
inline const std::vector<std::string>& llama_projections() {
  static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

// The branch attached to one Linear. lora_A and lora_B are registered on the layer itself, so its
// parameters are "<layer>.lora_A.weight" and "<layer>.lora_B.weight" in the model's tree.
struct LoraAdapter : LinearAdapter {
  Linear lora_A{nullptr};  // (r, in)
  Linear lora_B{nullptr};  // (out, r)
  double scaling = 1;
  double dropout = 0;
  bool merged = false;
  std::shared_ptr<LinearAdapter> base;  // the frozen product if it is not x W^T (a 4-bit weight)

  // result = frozen(x) + lora_B(lora_A(dropout(x))) * scaling; only the frozen part when merged.
  torch::Tensor forward(const torch::Tensor& x, LinearImpl& layer) override {
    // 1. result = base ? base->forward(x, layer) : linear_no_bias(x, layer.weight).
    // 2. Merged: return result (W already holds s B A).
    // 3. h = dropout(x) with probability `dropout` while layer.is_training(), else x.
    // 4. return result + lora_B(lora_A(h)) * scaling, in result's dtype.
    LLM_TODO("lesson11: LoraAdapter::forward(): the frozen product plus the scaled low-rank branch");
  }

  // dW = s B A (out, in), in fp32 (PEFT computes it in fp32 on CPU for half-precision weights).
  torch::Tensor delta_weight() const {
    LLM_TODO("lesson11: LoraAdapter::delta_weight(): B A times the scaling");
  }
};

// The LoRA adapter of a layer, or nullptr.
inline LoraAdapter* lora_of(LinearImpl& layer) {
  return dynamic_cast<LoraAdapter*>(layer.adapter.get());
}

// Attaches a fresh LoRA branch to `layer` (which may already hold a 4-bit weight) and returns it.
inline LoraAdapter& add_lora(LinearImpl& layer, const LoraConfig& config) {
  config.validate();
  TORCH_CHECK(lora_of(layer) == nullptr, "add_lora: the layer already has a LoRA adapter");
  // 1. lora_A = Linear(in, r) (its own init is PEFT's Kaiming-uniform, a = sqrt(5)),
  //    lora_B = Linear(r, out) with its weight zeroed: the adapted layer starts equal to the base.
  // 2. Register both on the layer as "lora_A" and "lora_B"; keep the previous adapter (a 4-bit
  //    weight, or none) as the frozen `base`; scaling = config.scaling(), dropout = config.dropout.
  auto adapter = std::make_shared<LoraAdapter>();
  LLM_TODO("lesson11: add_lora(): A Kaiming-uniform, B zeros, both registered on the layer");
  layer.adapter = adapter;
  return *adapter;
}

// W += s B A, and the branch is skipped from then on. (A 4-bit base cannot absorb the update:
// merge_and_unload dequantises it instead.)
inline void merge_lora(LinearImpl& layer) {
  auto* lora = lora_of(layer);
  TORCH_CHECK(lora != nullptr, "merge_lora: the layer has no LoRA adapter");
  TORCH_CHECK(!lora->base, "merge_lora: the base weight is 4-bit; use merge_and_unload, which dequantises it");
  if (lora->merged) return;
  LLM_TODO("lesson11: merge_lora(): add the delta weight to W");
}

// W -= s B A: the layer is the base plus its branch again.
inline void unmerge_lora(LinearImpl& layer) {
  auto* lora = lora_of(layer);
  TORCH_CHECK(lora != nullptr, "unmerge_lora: the layer has no LoRA adapter");
  if (!lora->merged) return;
  LLM_TODO("lesson11: unmerge_lora(): subtract the delta weight from W");
}

// ---- a whole model ----

// Every Linear whose last name component is a target, by name, in the module tree's order.
inline std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> find_linears(
    torch::nn::Module& model, const std::vector<std::string>& targets) {
  std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> found;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (!linear) continue;
    const auto& name = item.key();
    const auto last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), last) != targets.end()) found.emplace_back(name, linear);
  }
  return found;
}

// Freezes every parameter of the model, then adds LoRA to each target layer (its A and B are the
// only trainable parameters left). Returns the adapted layers' names. An unmatched target is an error.
inline std::vector<std::string> apply_lora(torch::nn::Module& model, const LoraConfig& config) {
  config.validate();
  // 1. Find the target layers (find_linears); every name in target_modules must match at least one,
  //    or throw naming it and the names that exist, e.g. "apply_lora: no Linear layer is called
  //    'qkv_proj'; the model's projections are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
  //    down_proj". Check them all before changing anything: a rejected config leaves the model as it was.
  // 2. requires_grad_(false) on every parameter of the model.
  // 3. add_lora on each target (its new A and B require gradients).
  LLM_TODO("lesson11: apply_lora(): freeze everything, then a LoRA branch on every target layer");
}

// The adapters' tensors under PEFT's saved names: "base_model.model.<layer>.lora_A.weight", ...
inline TensorMap lora_state_dict(torch::nn::Module& model) {
  TensorMap out;
  for (const auto& item : model.named_modules("", false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (!linear || !lora_of(*linear)) continue;
    auto* lora = lora_of(*linear);
    out["base_model.model." + item.key() + ".lora_A.weight"] = lora->lora_A->weight.detach();
    out["base_model.model." + item.key() + ".lora_B.weight"] = lora->lora_B->weight.detach();
  }
  return out;
}

// PEFT's adapter_config.json for this configuration.
inline nlohmann::json lora_config_json(const LoraConfig& config, const std::string& base_model) {
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"r", config.r},
          {"lora_alpha", config.alpha},
          {"lora_dropout", config.dropout},
          {"target_modules", config.target_modules},
          {"use_rslora", config.use_rslora},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"init_lora_weights", true},
          {"inference_mode", true},
          {"modules_to_save", nullptr},
          {"base_model_name_or_path", base_model}};
}

inline LoraConfig lora_config_from_json(const nlohmann::json& j, const std::string& where) {
  auto require = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw std::runtime_error(where + ": missing \"" + key + "\"");
    return j.at(key);
  };
  if (j.value("peft_type", "") != "LORA")
    throw std::runtime_error(where + ": peft_type is \"" + j.value("peft_type", "") + "\"; only \"LORA\" is supported");
  if (j.value("bias", "none") != "none" || j.value("fan_in_fan_out", false))
    throw std::runtime_error(where +
                             ": only bias \"none\" and fan_in_fan_out false are supported (Llama has no biases)");
  LoraConfig c;
  c.r = require("r").get<int64_t>();
  c.alpha = require("lora_alpha").get<double>();
  c.dropout = j.value("lora_dropout", 0.0);
  c.use_rslora = j.value("use_rslora", false);
  c.target_modules = require("target_modules").get<std::vector<std::string>>();
  c.validate();
  return c;
}

// Writes <dir>/adapter_model.safetensors and <dir>/adapter_config.json (each atomically). An
// existing folder is refused: an adapter is never overwritten.
inline void save_lora_adapter(const std::string& dir, torch::nn::Module& model, const LoraConfig& config,
                              const std::string& base_model = "") {
  namespace fs = std::filesystem;
  auto tensors = lora_state_dict(model);
  TORCH_CHECK(!tensors.empty(), "save_lora_adapter: the model has no LoRA adapters");
  if (fs::exists(dir))
    throw std::runtime_error("save_lora_adapter: " + dir + " already exists; refusing to overwrite it");
  const std::string tmp = dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (auto& [name, t] : tensors) t = t.to(torch::kFloat32);
  save_safetensors(tmp + "/adapter_model.safetensors", tensors);
  write_file_atomically(tmp + "/adapter_config.json", lora_config_json(config, base_model).dump(2) + "\n");
  fs::rename(tmp, dir);
}

// Reads an adapter folder (ours or PEFT's) onto `model`: applies LoRA as its config says, then
// copies A and B in. Every tensor must name an adapted layer and have its shape; none may be missing.
// Everything is checked before the model is touched: a bad folder leaves the model as it was.
inline LoraConfig load_lora_adapter(const std::string& dir, torch::nn::Module& model) {
  const auto config_path = dir + "/adapter_config.json";
  LoraConfig config = lora_config_from_json(nlohmann::json::parse(read_file(config_path)), config_path);
  auto file = load_safetensors(dir + "/adapter_model.safetensors");
  std::map<std::string, std::vector<int64_t>> expected;  // saved name -> shape
  for (const auto& [name, layer] : find_linears(model, config.target_modules)) {
    TORCH_CHECK(lora_of(*layer) == nullptr, "load_lora_adapter: ", name, " already has a LoRA adapter");
    expected["base_model.model." + name + ".lora_A.weight"] = {config.r, layer->in_features};
    expected["base_model.model." + name + ".lora_B.weight"] = {layer->out_features, config.r};
  }
  for (const auto& [name, shape] : expected) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) throw std::runtime_error(dir + ": adapter_model.safetensors has no tensor " + name);
    if (it->second.sizes().vec() != shape)
      throw std::runtime_error(dir + ": " + name + " has shape " + c10::str(it->second.sizes()) + ", the model needs " +
                               c10::str(c10::IntArrayRef(shape)) + " (a different r or model size)");
  }
  for (const auto& [name, t] : file.tensors)
    if (!expected.count(name)) throw std::runtime_error(dir + ": " + name + " names no adapted layer of this model");
  apply_lora(model, config);
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : lora_state_dict(model)) target.copy_(file.tensors.at(name));
  return config;
}

// Folds every adapter into its layer and removes it: W = base (dequantised if 4-bit) + s B A, the
// lora_A / lora_B modules unregistered, the layer a plain Linear again (trainable as before).
inline void merge_and_unload(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_modules("", false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (!linear || !linear->adapter) continue;
    auto* lora = lora_of(*linear);
    auto base = lora ? lora->base : linear->adapter;
    torch::Tensor w;
    if (auto* nf4 = dynamic_cast<Nf4LinearAdapter*>(base.get())) {
      w = dequantize_nf4(nf4->weight);
    } else {
      w = linear->weight.detach().to(torch::kFloat32);
    }
    if (lora && !lora->merged) w = w + lora->delta_weight();
    if (lora) {
      linear->unregister_module("lora_A");
      linear->unregister_module("lora_B");
    }
    linear->weight.set_(w.to(linear->weight.numel() > 0 ? linear->weight.scalar_type() : torch::kFloat32).contiguous());
    linear->adapter = nullptr;
  }
  for (auto& p : model.parameters()) p.requires_grad_(true);
}

// Parameters that will train (requires_grad) and all of them.
inline std::pair<int64_t, int64_t> count_parameters(const torch::nn::Module& model) {
  int64_t trainable = 0, total = 0;
  for (const auto& p : model.parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  return {trainable, total};
}

}  // namespace llm
