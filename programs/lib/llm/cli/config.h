// A stage's configuration: YAML sections (model, train, dpo, ...) read into lesson 01's config
// structs, with command-line overrides that go through exactly the same checks.
//
//   llm pretrain --config configs/quick.yaml --set train.learning_rate=3e-4 --set model.num_hidden_layers=6
//
// Precedence: the structs' defaults < the YAML file < each --set, in order. Every key must exist:
// an unknown section or key is an error that names the nearest valid one (lesson 01's
// apply_yaml), never a silently ignored typo (TRL refuses unknown YAML keys the same way:
// trl/scripts/utils.py, TrlParser.parse_args_and_config). The resolved
// configuration is printed at the start and saved in the run folder, so a folder always says how
// it was made.
#pragma once

#include <llm/config/fields.h>
#include <llm/config/model_config.h>

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <vector>

namespace llm::cli {

class ConfigSections {
 public:
  // Registers a section backed by `config` (a struct with fields() and validate()).
  template <typename Config>
  void add(const std::string& name, Config& config) {
    sections_.push_back({name, [&config, name](const YAML::Node& node) { apply_yaml(config, node, name); },
                         [&config] { return to_yaml(config); }, [&config] { config.validate(); }, nullptr});
  }

  // The model section also accepts `preset: tiny|small|medium`, applied before its other keys.
  void add_model(const std::string& name, ModelConfig& config) {
    add(name, config);
    sections_.back().preset = [&config](const std::string& preset) { config = ModelConfig::preset(preset); };
  }

  // Applies the YAML file (empty path: none) and then the overrides "section.key=value", and
  // validates every section. Throws ConfigError naming the file or the override and the problem.
  //
  // `dtype: auto` (in any section, from the file or --set) is decided here, before lesson 01's
  // validation sees it: bfloat16 (autocast, fp32 master weights) on a CPU with bf16 instructions,
  // float32 on any other. Without them LibTorch still runs bf16, but each bf16 matmul converts its
  // operands to fp32 and back: measured on a 2-core AVX2 machine (no AVX512-BF16, no AMX) on
  // 2026-12-07, the quick preset trained at 310-360 tokens/s in bf16 against 5,300-5,900 in fp32
  // (17x). The decision is kept in notes() and printed at the top of the resolved configuration.
  void load(const std::string& yaml_path, const std::vector<std::string>& overrides);

  // Every section with every field: the resolved configuration, after a "# " line per note.
  std::string to_yaml_string() const;

  // What load() decided on the user's behalf, e.g. "train.dtype: auto -> float32 (...)".
  const std::vector<std::string>& notes() const { return notes_; }

  std::vector<std::string> names() const;

 private:
  struct Section {
    std::string name;
    std::function<void(const YAML::Node&)> apply;
    std::function<YAML::Node()> emit;
    std::function<void()> validate;
    std::function<void(const std::string&)> preset;
  };
  std::vector<Section> sections_;
  std::vector<std::string> notes_;
};

// Whether this CPU has bf16 arithmetic instructions (the avx512_bf16 or amx_bf16 flag of
// /proc/cpuinfo), and the flag or the reason in `why`.
bool cpu_has_bf16_instructions(std::string* why);

}  // namespace llm::cli
