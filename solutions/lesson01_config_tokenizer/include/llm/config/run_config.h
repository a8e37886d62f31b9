// Lesson 01 - a run's YAML file: the model and the training settings, loaded and saved together.
//
//     model:
//       preset: tiny            # optional: start from a named size...
//       num_hidden_layers: 6    # ...and override single fields
//     train:
//       batch_size: 32
//
// Loading applies, in order: the defaults, the preset (if any), the keys given; then validates.
// Saving writes every field (no preset key), so a saved file reproduces the run on its own.
#pragma once

#include <llm/common/files.h>
#include <llm/common/todo.h>
#include <llm/config/fields.h>
#include <llm/config/model_config.h>
#include <llm/config/train_config.h>

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>

namespace llm {

struct RunConfig {
  ModelConfig model;
  TrainConfig train;

  void validate() const {
    model.validate();
    train.validate();
  }
};

// Parses YAML text. `source` names it in errors (a file path, or "<string>").
inline RunConfig parse_run_config(const std::string& yaml_text, const std::string& source = "<string>") {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source + ": not valid YAML: " + e.what());
  }
  RunConfig config;
  if (!root || root.IsNull()) return config;  // an empty file means "all defaults"
  if (!root.IsMap()) throw ConfigError(source + ": expected a mapping with the sections 'model' and 'train'");
  for (const auto& entry : root) {
    const std::string key = detail::key_text(entry.first, source);
    if (key != "model" && key != "train") {
      throw ConfigError(source + ": unknown section '" + key + "'; did you mean '" +
                        nearest_name(key, {"model", "train"}) + "'? valid sections: model, train");
    }
  }
  try {
    YAML::Node model = root["model"];
    if (model && model.IsMap() && model["preset"]) {
      config.model =
          ModelConfig::preset(detail::parse_scalar<std::string>(model["preset"], "model.preset", "a string"));
      model.remove("preset");
    }
    apply_yaml(config.model, model, "model");
    apply_yaml(config.train, root["train"], "train");
    config.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(source + ": " + e.what());
  }
  return config;
}

inline RunConfig load_run_config(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const std::runtime_error&) {
    throw ConfigError("cannot read config file '" + path + "'");
  }
  return parse_run_config(text, path);
}

inline std::string to_yaml_string(const RunConfig& config) {
  YAML::Node root;
  root["model"] = to_yaml(config.model);
  root["train"] = to_yaml(config.train);
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

// Writes to a temporary file next to `path` and renames it into place, so a crash never leaves a
// half-written config; refuses to replace an existing file unless `overwrite`.
inline void save_run_config(const RunConfig& config, const std::string& path, bool overwrite = false) {
  namespace fs = std::filesystem;
  if (!overwrite && fs::exists(path)) {
    throw ConfigError("'" + path + "' already exists; refusing to overwrite it (pass overwrite / --force)");
  }
  try {
    write_file_atomically(path, to_yaml_string(config));
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
}

}  // namespace llm
